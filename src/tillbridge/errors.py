"""The one exception tree of tillbridge.

Every error the bridge raises on purpose derives from :class:`BridgeError`. Callers act on the
branch, not on the leaf::

    BridgeError
    ├── ConfigError                  the merchant config or the settings are wrong (fix and restart)
    ├── ValidationError              input that can never succeed as sent (maps to 4xx)
    │   ├── MoneyError               amount not exact for its currency, unknown currency, overflow
    │   ├── NotSupported             the connector's capabilities do not include the operation
    │   └── ProtocolError            a peer sent bytes that do not follow the protocol
    ├── DomainError                  the request breaks a rule of the payment domain
    │   ├── IllegalTransition        a state change the transition table does not allow
    │   ├── RefundExceedsCapture     refunds would exceed what was captured
    │   └── ConcurrentUpdate         optimistic concurrency lost; reload and try again
    ├── NotFound                     the thing asked for does not exist
    ├── AuthError                    missing or bad credentials
    │   ├── Forbidden                credentials valid, scope insufficient
    │   └── SignatureError           a webhook signature or timestamp did not verify
    ├── IdempotencyError             idempotency key reused badly
    │   ├── IdempotencyMismatch      same key, different request body
    │   └── IdempotencyInProgress    same key, first request still running
    ├── StoreError                   the database cannot serve the request
    │   ├── StoreUnavailable         unreachable or locked beyond the busy timeout (retry later)
    │   └── SchemaOutOfDate          migrations are pending: run ``tillbridge db upgrade``
    ├── QueueError                   the durable job queue refused an operation
    ├── TransportError               talking to a counterpart failed (terminal link, HTTP)
    │   ├── NotSent                  provably never reached the other side: safe to retry
    │   └── OutcomeUnknown           may have reached it: recover by asking, never resend
    ├── CircuitOpen (NotSent)        the breaker refused the call before sending
    ├── Declined                     the counterpart refused definitively; no money moved
    └── TerminalBusy                 a terminal link is owned by another session

Each class's docstring is its default message, so a bare ``raise NotFound()`` still explains
itself. Errors carry an optional ``code`` (stable, machine-readable) and ``details`` (evidence
such as a provider request id or an HTTP status), which the API renders as problem+json.
"""

from __future__ import annotations

from typing import Any


class BridgeError(Exception):
    """Something went wrong in tillbridge."""

    code: str = "bridge_error"
    http_status: int = 500

    def __init__(self, message: str | None = None, *, code: str | None = None, **details: Any):
        self.message = message or (self.__doc__ or type(self).__name__).strip().splitlines()[0]
        if code is not None:
            self.code = code
        self.details: dict[str, Any] = details
        super().__init__(self.message)


class ConfigError(BridgeError):
    """The configuration is not valid."""

    code = "config_error"


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


class NotFound(BridgeError):
    """Not found."""

    code = "not_found"
    http_status = 404


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


class QueueError(BridgeError):
    """The job queue refused the operation."""

    code = "queue_error"
    http_status = 409


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


class Declined(BridgeError):
    """The counterpart declined; no money moved."""

    code = "declined"
    http_status = 402


class TerminalBusy(BridgeError):
    """The terminal is busy with another payment."""

    code = "terminal_busy"
    http_status = 409
