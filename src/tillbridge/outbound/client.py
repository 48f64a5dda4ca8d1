"""The one HTTP client every provider connector uses.

:class:`OutboundClient` wraps ``httpx2.AsyncClient`` for one provider account and adds, in this
order for every attempt: circuit breaker check, client-side rate limit, the HTTP exchange with the
call class's timeouts, outcome classification, breaker verdict and the audit hook. Around the
attempts sits a retry loop that only ever repeats calls that are safe to repeat.

Contract of :meth:`OutboundClient.request`:

- returns the ``httpx2.Response`` whenever the provider answered, whatever the status: the
  connector maps declines, validation errors and the rest;
- raises :class:`~tillbridge.errors.NotSent` (including ``CircuitOpen`` and ``RateLimited``) only
  when no attempt can have reached the provider;
- raises :class:`~tillbridge.errors.OutcomeUnknown` when the last attempt (or any earlier one)
  may have reached it without an answer. The caller must then recover by status query and must
  never resend the call with a new identity;
- must never repeat a write that is not marked ``idempotent=True``.

A returned response carries ``response.extensions["tillbridge.attempts"]`` and
``["tillbridge.earlier_unknown"]`` (an earlier attempt went unanswered, so a final 5xx does not
prove that nothing happened).

Every I/O edge is injectable: ``transport`` (``httpx2.MockTransport`` / ``ASGITransport`` in
tests), ``clock`` (monotonic seconds), ``wall_clock`` (unix seconds, for HTTP-date
``Retry-After``), ``sleep`` and ``rng`` (backoff jitter).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Final

import httpx2
import structlog

from tillbridge.errors import CircuitOpen, ConfigError, RateLimited, TransportError
from tillbridge.outbound.audit import AuditHook, ExchangeRecord
from tillbridge.outbound.breaker import BreakerRegistry, CircuitBreaker, Permit
from tillbridge.outbound.classify import (
    AttemptKind,
    Evidence,
    Verdict,
    classify_exception,
    not_sent,
    outcome_unknown,
    verdict_of_status,
)
from tillbridge.outbound.policy import (
    DEFAULT_CALL_CLASSES,
    HTTP_RETRY,
    NO_RETRY,
    RETRY_STATUSES,
    CallClass,
    ResponsePredicate,
    backoff_delay,
    is_safe_to_repeat,
    never,
    retry_after_of,
)
from tillbridge.outbound.ratelimit import AccountRateLimit
from tillbridge.outbound.redact import redact_headers, redact_url, truncate_body
from tillbridge.retry import RetryPolicy

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]

#: Response headers in which providers put their own request id, checked in this order.
DEFAULT_REQUEST_ID_HEADERS: Final = ("x-request-id", "request-id", "x-correlation-id", "cf-ray")


@dataclass(slots=True)
class _Attempt:
    """Result of one attempt: a response, or a classified failure."""

    response: httpx2.Response | None
    kind: AttemptKind
    reason: str = ""
    cause: BaseException | None = None
    status: int | None = None
    provider_request_id: str | None = None
    # False when the failure is our own (unusable request, unexpected exception): repeating it
    # cannot help, whatever the policy says.
    repeatable: bool = True


class OutboundClient:
    """HTTP client for one provider account; see the module docstring for the contract.

    One instance per account and event loop. ``breakers`` and ``rate_limit`` may be shared with
    other clients (the breaker key is ``(account, group)``). ``retry`` bounds the retries of safe
    calls (default :data:`~tillbridge.outbound.policy.HTTP_RETRY`); an answer is worth another
    attempt when its status is in ``retry_statuses`` or ``still_processing`` says so.
    """

    def __init__(
        self,
        *,
        account: str,
        base_url: str = "",
        transport: httpx2.AsyncBaseTransport | None = None,
        call_classes: Mapping[str, CallClass] | None = None,
        retry: RetryPolicy | None = None,
        retry_statuses: frozenset[int] = RETRY_STATUSES,
        still_processing: ResponsePredicate = never,
        breakers: BreakerRegistry | None = None,
        rate_limit: AccountRateLimit | None = None,
        audit: AuditHook | None = None,
        default_headers: Mapping[str, str] | None = None,
        request_id_headers: Sequence[str] = DEFAULT_REQUEST_ID_HEADERS,
        max_audit_body: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not account:
            raise ConfigError("an outbound client needs an account name")
        self.account = account
        self._call_classes = dict(call_classes or DEFAULT_CALL_CLASSES)
        self._retry = retry or HTTP_RETRY
        self._retry_statuses = retry_statuses
        self._still_processing = still_processing
        self._breakers = breakers
        self._rate_limit = rate_limit
        self._audit = audit
        self._request_id_headers = tuple(h.lower() for h in request_id_headers)
        self._max_audit_body = max_audit_body
        self._clock = clock
        self._wall_clock = wall_clock
        self._sleep = sleep
        # Jitter needs no cryptographic randomness, only spread between clients.
        self._rng = rng or random.Random()  # noqa: S311
        headers = {"user-agent": "tillbridge"}
        headers.update(default_headers or {})
        self._http = httpx2.AsyncClient(
            base_url=base_url,
            transport=transport,
            headers=headers,
            # A redirect from a payment API is a misconfiguration; the caller sees the 3xx.
            follow_redirects=False,
            timeout=self._call_classes.get("read", DEFAULT_CALL_CLASSES["read"]).timeout(),
        )

    async def __aenter__(self) -> OutboundClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        call_class: str = "read",
        group: str = "default",
        idempotent: bool = False,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        still_processing: ResponsePredicate | None = None,
    ) -> httpx2.Response:
        """Send one logical call, retrying only if it is safe to repeat.

        ``idempotent=True`` promises that the request carries the provider's idempotency key (or
        is idempotent by nature); only then is a write retried. ``group`` selects the circuit
        breaker (for example ``"payments"`` vs ``"refunds"``). ``still_processing`` overrides the
        client's predicate for answers meaning "same request still running, ask again".
        """
        method = method.upper()
        cls = self._call_classes.get(call_class)
        if cls is None:
            raise ConfigError(f"unknown call class {call_class!r}")
        shown_url = redact_url(str(url))
        evidence = Evidence(self.account, group, cls.name, method, shown_url, attempts=0)
        try:
            req = self._http.build_request(
                method,
                url,
                json=json,
                content=content,
                params=params,
                headers=headers,
                timeout=cls.timeout(),
            )
        except (httpx2.InvalidURL, httpx2.UnsupportedProtocol, TypeError, ValueError) as exc:
            raise not_sent(evidence, f"invalid request: {type(exc).__name__}") from exc
        evidence = Evidence(self.account, group, cls.name, method, redact_url(str(req.url)), 0)
        if req.url.scheme not in ("http", "https") or not req.url.host:
            raise not_sent(evidence, "invalid request: absolute http(s) URL required")

        safe = is_safe_to_repeat(method, idempotent=idempotent)
        policy = self._retry if safe else NO_RETRY
        predicate = still_processing or self._still_processing
        breaker = self._breakers.get(self.account, group) if self._breakers else None
        started = self._clock()
        unknown_seen = False
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._attempt(req, attempt, cls, group, breaker, idempotent)
            except (CircuitOpen, RateLimited) as refusal:
                # Refused before sending. After an earlier unknown attempt the call as a whole
                # is still unknown: that attempt may have moved money.
                sent = replace(evidence, attempts=attempt - 1)
                if unknown_seen:
                    raise outcome_unknown(sent, "earlier attempt unanswered") from refusal
                refusal.details.update(sent.as_details())
                raise
            if result.kind is AttemptKind.UNKNOWN:
                unknown_seen = True
            elif result.response is not None:
                # Keep the last answer as evidence in case a later attempt fails without one.
                evidence = replace(
                    evidence, status=result.status, provider_request_id=result.provider_request_id
                )
            delay = self._retry_delay(result, attempt, policy, predicate)
            budget = policy.max_total
            if (
                delay is not None
                and budget is not None
                and self._clock() - started + delay > budget.total_seconds()
            ):
                delay = None
            if delay is None:
                return self._finish(result, evidence, attempt, unknown_seen)
            log.info(
                "outbound.retry",
                account=self.account,
                group=group,
                method=method,
                url=evidence.url,
                attempt=attempt,
                delay=round(delay, 3),
                status=result.status,
                reason=result.reason or None,
            )
            if result.response is not None:
                await result.response.aclose()
            await self._sleep(delay)

    # one attempt ----------------------------------------------------------------------------------

    async def _attempt(
        self,
        req: httpx2.Request,
        attempt: int,
        cls: CallClass,
        group: str,
        breaker: CircuitBreaker | None,
        idempotent: bool,
    ) -> _Attempt:
        permit: Permit | None = breaker.acquire() if breaker is not None else None
        try:
            if self._rate_limit is not None:
                await self._rate_limit.acquire()
            t0 = self._clock()
            try:
                response = await self._http.send(req)
            except Exception as exc:
                kind, verdict = classify_exception(exc)
                _settle(permit, verdict)
                result = _Attempt(
                    None,
                    kind,
                    reason=_reason(kind, exc),
                    cause=exc,
                    repeatable=verdict is not Verdict.NEUTRAL,
                )
                await self._record(req, result, attempt, cls, group, t0, idempotent)
                return result
            _settle(permit, verdict_of_status(response.status_code))
            result = _Attempt(
                response,
                AttemptKind.RESPONSE,
                status=response.status_code,
                provider_request_id=self._provider_request_id(response),
            )
            await self._record(req, result, attempt, cls, group, t0, idempotent)
            return result
        finally:
            if permit is not None:
                permit.release()  # no-op when settled; frees a half-open probe on cancellation

    def _retry_delay(
        self,
        result: _Attempt,
        attempt: int,
        policy: RetryPolicy,
        predicate: ResponsePredicate,
    ) -> float | None:
        """Seconds to wait before the next attempt, or ``None`` to stop here."""
        if attempt >= policy.max_attempts:
            return None
        if result.response is None:
            if not result.repeatable:
                return None
            return backoff_delay(attempt, policy, self._rng)
        response = result.response
        if response.status_code not in self._retry_statuses and not predicate(response):
            return None
        retry_after = retry_after_of(response, now=self._wall_clock())
        if retry_after is None:
            return backoff_delay(attempt, policy, self._rng)
        # Honour the provider's wish exactly; if it asks for longer than we may wait in-process,
        # hand the answer back so the job can be rescheduled instead.
        cap = policy.max_requested_delay
        return retry_after if cap is None or retry_after <= cap.total_seconds() else None

    def _finish(
        self, result: _Attempt, evidence: Evidence, attempt: int, unknown_seen: bool
    ) -> httpx2.Response:
        if result.response is not None:
            # Let the connector see the history: a 5xx after an unanswered attempt does not
            # settle anything, the earlier attempt may still have moved money.
            result.response.extensions["tillbridge.attempts"] = attempt
            result.response.extensions["tillbridge.earlier_unknown"] = unknown_seen
            return result.response
        final = replace(
            evidence,
            attempts=attempt,
            cause=type(result.cause).__name__ if result.cause else None,
        )
        error: TransportError
        if result.kind is AttemptKind.UNKNOWN:
            error = outcome_unknown(final, result.reason)
        elif unknown_seen:
            error = outcome_unknown(final, f"earlier attempt unanswered, then {result.reason}")
        else:
            error = not_sent(final, result.reason)
        raise error from result.cause

    # audit --------------------------------------------------------------------------------------

    async def _record(
        self,
        req: httpx2.Request,
        result: _Attempt,
        attempt: int,
        cls: CallClass,
        group: str,
        t0: float,
        idempotent: bool,
    ) -> None:
        if self._audit is None:
            return
        response = result.response
        req_body, req_cut = truncate_body(req.content, self._max_audit_body)
        resp_body, resp_cut = ("", False)
        if response is not None:
            resp_body, resp_cut = truncate_body(response.content, self._max_audit_body)
        record = ExchangeRecord(
            account=self.account,
            group=group,
            call_class=cls.name,
            attempt=attempt,
            method=req.method,
            url=redact_url(str(req.url)),
            outcome=result.kind.value,
            duration_ms=round((self._clock() - t0) * 1000.0, 3),
            status=result.status,
            error=type(result.cause).__name__ if result.cause is not None else None,
            provider_request_id=result.provider_request_id,
            idempotent=idempotent,
            request_headers=redact_headers(req.headers.multi_items()),
            response_headers=(
                redact_headers(response.headers.multi_items()) if response is not None else {}
            ),
            request_body=req_body,
            request_body_truncated=req_cut,
            response_body=resp_body,
            response_body_truncated=resp_cut,
        )
        try:
            await self._audit(record)
        except Exception as exc:
            # The exchange already happened; failing it now would misreport its outcome.
            log.error("outbound.audit_hook_failed", account=self.account, error=type(exc).__name__)

    def _provider_request_id(self, response: httpx2.Response) -> str | None:
        for name in self._request_id_headers:
            value = response.headers.get(name)
            if value:
                return value[:200]
        return None


def _settle(permit: Permit | None, verdict: Verdict) -> None:
    if permit is None:
        return
    if verdict is Verdict.SUCCESS:
        permit.success()
    elif verdict is Verdict.FAILURE:
        permit.failure()
    else:
        permit.release()


def _reason(kind: AttemptKind, exc: BaseException) -> str:
    name = type(exc).__name__
    if kind is AttemptKind.NOT_SENT:
        return f"{name} before the request was sent"
    return f"{name} after the request may have been sent"
