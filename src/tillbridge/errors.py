"""The one exception tree of tillbridge.

Every error the bridge raises on purpose derives from :class:`BridgeError`; the signals a job
handler raises to steer the queue derive from :class:`JobSignal`. Callers act on the branch, not
on the leaf. The whole tree (a package in brackets: where that group of leaves is raised)::

    Exception
    ├── BridgeError                      something went wrong (the API answers problem+json)
    │   ├── ConfigError                  the merchant config or the settings are wrong (fix it)
    │   │   ├── InvalidPolicy            a retry policy that makes no sense (also a ValueError)
    │   │   └── SecretUnavailable        503: no configured secret of this part can be read
    │   ├── ValidationError              input that can never succeed as sent (422 unless noted)
    │   │   ├── MoneyError               amount not exact for its currency, unknown currency
    │   │   ├── NotSupported             the connector's capabilities do not include the operation
    │   │   ├── ProtocolError            a peer sent bytes that do not follow the protocol
    │   │   ├── InvalidCursor            a paging cursor that is not one of ours (store.keyset)
    │   │   ├── EmptyBody                400: a webhook without a body (inbound.intake)
    │   │   ├── MalformedBody            400: a verified webhook body that is not a JSON object
    │   │   ├── DuplicateJsonKey         400: a JSON object names a member twice (also ValueError)
    │   │   └── UnsupportedMediaType     415: a webhook body that is not JSON
    │   ├── DomainError                  409: the request breaks a rule of the payment domain
    │   │   ├── IllegalTransition        a state change the transition table does not allow
    │   │   ├── RefundExceedsCapture     refunds would exceed what was captured
    │   │   └── ConcurrentUpdate         optimistic concurrency lost; reload and try again
    │   ├── NotFound                     404: the thing asked for does not exist
    │   │   ├── JobNotFound              no job with this id (queue)
    │   │   ├── InboxNotFound            no webhook inbox entry with this id (inbound)
    │   │   ├── UnknownEndpoint          no webhook endpoint for this source and account
    │   │   ├── DeliveryNotFound         no outgoing webhook delivery with this id (webhooks_out)
    │   │   └── SubscriberNotFound       no webhook subscriber with this name
    │   ├── AuthError                    401: missing or bad credentials
    │   │   ├── Forbidden                403: credentials valid, scope insufficient
    │   │   └── SignatureError           a webhook signature or timestamp did not verify
    │   │       └── SignatureRejected    ... with one public message; ``reason`` is for our logs
    │   ├── IdempotencyError             409: idempotency key reused badly
    │   │   ├── IdempotencyMismatch      422: same key, different request body
    │   │   └── IdempotencyInProgress    same key, first request still running
    │   ├── StoreError                   503: the database cannot serve the request
    │   │   ├── StoreUnavailable         unreachable or locked beyond the busy timeout
    │   │   └── SchemaOutOfDate          migrations are pending: run ``tillbridge db upgrade``
    │   ├── QueueError                   409: the durable job queue refused an operation
    │   │   ├── JobStateError            the job's status does not allow it (cancel a running job)
    │   │   ├── LeaseLost                this worker no longer holds the job's lease
    │   │   ├── UnknownJobKind           no handler registered for the kind
    │   │   ├── InboxBusy                the webhook is still queued: no replay yet (inbound)
    │   │   ├── DeliveryBusy             the delivery is still queued: no redelivery yet
    │   │   └── SubscriberDisabled       the subscriber is disabled: enable it first
    │   ├── TransportError               502: talking to a counterpart failed (terminal link, HTTP)
    │   │   ├── NotSent                  503: provably never reached the other side: safe to retry
    │   │   │   ├── CircuitOpen          the breaker refused the call before sending (outbound)
    │   │   │   ├── RateLimited          the client-side rate limit refused it before sending
    │   │   │   └── FrameRejected        the ZVT peer NAKed the serial frame every time
    │   │   ├── OutcomeUnknown           may have reached it: recover by asking, never resend
    │   │   ├── LinkClosed               the ZVT link is closed or broke (connectors.terminals.zvt)
    │   │   ├── LinkTimeout              no ZVT message arrived within the timer
    │   │   ├── AckMissing               the ZVT peer never acknowledged the serial frame
    │   │   └── XentralUnavailable       503: Xentral answered 429/5xx after retries (erp.xentral)
    │   ├── Declined                     402: the counterpart refused definitively; no money moved
    │   ├── TerminalBusy                 409: a terminal link is owned by another session
    │   └── TooManyFailures              429: an address keeps failing webhook verification
    └── JobSignal                        raised BY A JOB HANDLER to steer the queue; never HTTP
        ├── RetryLater                   run this job again later (e.g. honour a Retry-After)
        └── PermanentFailure             dead-letter this job now: retrying cannot help

Each class's docstring is its default message, so a bare ``raise NotFound()`` still explains
itself. Errors carry an optional ``code`` (stable, machine-readable) and ``details`` (evidence
such as a provider request id or an HTTP status), which the API renders as problem+json with the
class's ``http_status`` (500 unless noted above; a leaf inherits its branch's status).

:class:`JobSignal` is not a :class:`BridgeError` on purpose: an ``except BridgeError`` around a
connector or ERP call must not swallow a handler's request to reschedule or dead-letter its job,
and no signal is ever an answer to an HTTP request. The worker reads them (``isinstance``); every
other exception a handler raises is a failed attempt, retried with the kind's backoff.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final


class _Explained(Exception):
    """Shared by the two roots: the class docstring is the default message; ``code``, ``details``.

    Not a branch of the tree: catch :class:`BridgeError` or :class:`JobSignal`, never this.
    """

    code: str = "error"

    def __init__(self, message: str | None = None, *, code: str | None = None, **details: Any):
        self.message = message or (self.__doc__ or type(self).__name__).strip().splitlines()[0]
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details
        super().__init__(self.message)


class BridgeError(_Explained):
    """Something went wrong in tillbridge."""

    code: str = "bridge_error"
    http_status: int = 500


# ----------------------------------------------------------------------------------- config


class ConfigError(BridgeError):
    """The configuration is not valid."""

    code = "config_error"


class InvalidPolicy(ConfigError, ValueError):
    """The retry policy makes no sense."""

    code = "invalid_policy"


class SecretUnavailable(ConfigError):
    """A secret this part of the bridge needs cannot be read; the operator must provide it."""

    code = "secret_unavailable"
    http_status = 503


# ------------------------------------------------------------------------------- validation


class ValidationError(BridgeError):
    """The input is not valid."""

    code = "validation_error"
    http_status = 422


class MoneyError(ValidationError):
    """The amount is not valid for its currency."""

    code = "invalid_amount"


class NotSupported(ValidationError):
    """The connector cannot do this (its capabilities say no)."""

    code = "not_supported"


class ProtocolError(ValidationError):
    """The peer sent data that does not follow the protocol."""

    code = "protocol_error"


class InvalidCursor(ValidationError):
    """The cursor is not valid; start again from the first page (no cursor)."""

    code = "invalid_cursor"


class EmptyBody(ValidationError):
    """The request body is empty."""

    code = "empty_body"
    http_status = 400


class MalformedBody(ValidationError):
    """The request body is not a JSON object."""

    code = "malformed_body"
    http_status = 400


class DuplicateJsonKey(ValidationError, ValueError):
    """A JSON object names the same member twice; which one was meant?"""

    code = "duplicate_json_key"
    http_status = 400

    def __init__(self, key: str | None = None) -> None:
        if key is None:
            super().__init__()
        else:
            super().__init__(f"the member {key[:60]!r} appears twice in one object", key=key[:60])
        self.key = key or ""


class UnsupportedMediaType(ValidationError):
    """Webhook bodies must be JSON."""

    code = "unsupported_media_type"
    http_status = 415


# ----------------------------------------------------------------------------------- domain


class DomainError(BridgeError):
    """The request breaks a rule of the payment domain."""

    code = "domain_error"
    http_status = 409


class IllegalTransition(DomainError):
    """This state change is not allowed."""

    code = "illegal_transition"


class RefundExceedsCapture(DomainError):
    """Refunds would exceed the captured amount."""

    code = "refund_exceeds_capture"


class ConcurrentUpdate(DomainError):
    """The record was changed by someone else; reload and try again."""

    code = "concurrent_update"


# -------------------------------------------------------------------------------- not found


class NotFound(BridgeError):
    """Not found."""

    code = "not_found"
    http_status = 404


class JobNotFound(NotFound):
    """No job with this id."""

    code = "job_not_found"


class InboxNotFound(NotFound):
    """No inbox entry with this id."""

    code = "inbox_not_found"


class UnknownEndpoint(NotFound):
    """No webhook endpoint here."""

    code = "unknown_webhook_endpoint"


class DeliveryNotFound(NotFound):
    """No webhook delivery with this id."""

    code = "delivery_not_found"


class SubscriberNotFound(NotFound):
    """No webhook subscriber with this name."""

    code = "subscriber_not_found"


# ------------------------------------------------------------------------------------- auth


class AuthError(BridgeError):
    """Missing or invalid credentials."""

    code = "unauthorized"
    http_status = 401


class Forbidden(AuthError):
    """The credentials do not grant this operation."""

    code = "forbidden"
    http_status = 403


class SignatureError(AuthError):
    """The signature did not verify."""

    code = "bad_signature"


#: What a sender learns about any failed verification: one message for every cause.
SIGNATURE_REJECTED_MESSAGE: Final = "webhook signature verification failed"


class SignatureRejected(SignatureError):
    """The webhook signature or its timestamp did not verify."""

    def __init__(self, reason: str) -> None:
        # ``reason`` is internal (logs, metrics); it stays out of ``details`` so the API's
        # problem+json rendering never tells a forger which check it passed.
        super().__init__(SIGNATURE_REJECTED_MESSAGE)
        self.reason = reason


# ------------------------------------------------------------------------------ idempotency


class IdempotencyError(BridgeError):
    """The idempotency key was used incorrectly."""

    code = "idempotency_error"
    http_status = 409


class IdempotencyMismatch(IdempotencyError):
    """This Idempotency-Key was already used with a different request."""

    code = "idempotency_key_reused"
    http_status = 422


class IdempotencyInProgress(IdempotencyError):
    """A request with this Idempotency-Key is still being processed."""

    code = "idempotency_key_in_progress"
    http_status = 409


# ------------------------------------------------------------------------------------ store


class StoreError(BridgeError):
    """The database could not serve the request."""

    code = "store_error"
    http_status = 503


class StoreUnavailable(StoreError):
    """The database is not reachable right now; retry later."""

    code = "store_unavailable"
    http_status = 503


class SchemaOutOfDate(StoreError):
    """The database schema is out of date: run `tillbridge db upgrade`."""

    code = "schema_out_of_date"
    http_status = 503


# ------------------------------------------------------------------------------------ queue


class QueueError(BridgeError):
    """The job queue refused the operation."""

    code = "queue_error"
    http_status = 409


class JobStateError(QueueError):
    """The job's status does not allow this operation."""

    code = "job_state"


class LeaseLost(QueueError):
    """This worker no longer holds the job's lease (it expired and the job was reclaimed)."""

    code = "lease_lost"


class UnknownJobKind(QueueError):
    """No handler is registered for this job kind."""

    code = "unknown_job_kind"


class InboxBusy(QueueError):
    """The event is still queued or being processed; wait for it to finish."""

    code = "inbox_busy"


class DeliveryBusy(QueueError):
    """The delivery is already queued or running; wait for it to finish."""

    code = "delivery_busy"


class SubscriberDisabled(QueueError):
    """The subscriber is disabled; enable it before redelivering."""

    code = "subscriber_disabled"


# -------------------------------------------------------------------------------- transport


class TransportError(BridgeError):
    """Talking to the counterpart failed."""

    code = "transport_error"
    http_status = 502


class NotSent(TransportError):
    """The request provably never reached the counterpart; it is safe to retry."""

    code = "not_sent"
    http_status = 503


class OutcomeUnknown(TransportError):
    """The request may have reached the counterpart; recover by asking, never by resending."""

    code = "outcome_unknown"
    http_status = 502


class CircuitOpen(NotSent):
    """The circuit breaker for this counterpart is open; the call was not sent."""

    code = "circuit_open"


class RateLimited(NotSent):
    """The client-side rate limit refused the call before sending; retry later."""

    code = "rate_limited"


class FrameRejected(NotSent):
    """The peer refused the serial frame with NAK on every attempt: it did not take it."""

    code = "zvt_frame_rejected"


class LinkClosed(TransportError):
    """The terminal link is closed or broke."""

    code = "zvt_link_closed"


class LinkTimeout(TransportError):
    """No message arrived from the peer within the timer."""

    code = "zvt_link_timeout"


class AckMissing(TransportError):
    """The peer never acknowledged the serial frame: it may or may not have taken it."""

    code = "zvt_ack_missing"


class XentralUnavailable(TransportError):
    """Xentral answered 429 or 5xx after the in-process retries; retry the write-back later."""

    code = "xentral_unavailable"
    http_status = 503


# ------------------------------------------------------------------------ counterpart said no


class Declined(BridgeError):
    """The counterpart declined; no money moved."""

    code = "declined"
    http_status = 402


class TerminalBusy(BridgeError):
    """The terminal is busy with another payment."""

    code = "terminal_busy"
    http_status = 409


class TooManyFailures(BridgeError):
    """Too many failed deliveries from this address; try again later."""

    code = "too_many_failures"
    http_status = 429

    def __init__(self, retry_after: float) -> None:
        super().__init__()
        self.retry_after = retry_after


# ------------------------------------------------------------------------------ job signals


class JobSignal(_Explained):
    """A job handler asked the queue to treat this job specially."""

    code: str = "job_signal"


class RetryLater(JobSignal):
    """The handler asked to run the job again later.

    ``after`` is a delay (seconds or a timedelta) or an absolute aware datetime; ``None`` means the
    kind's backoff. With ``count_attempt=False`` the attempt is given back, so a counterpart that
    keeps answering 429 does not exhaust the job's attempts (use with care: it can retry forever).
    """

    code = "retry_later"

    def __init__(
        self,
        message: str | None = None,
        *,
        after: float | timedelta | datetime | None = None,
        count_attempt: bool = True,
        **details: Any,
    ) -> None:
        super().__init__(message, **details)
        self.after = after
        self.count_attempt = count_attempt


class PermanentFailure(JobSignal):
    """The job can never succeed; it goes to the dead letter state without further attempts."""

    code = "permanent_failure"
