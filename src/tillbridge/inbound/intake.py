"""Webhook intake: verify a delivery over its raw bytes, store it durably, answer.

The order of checks, and why:

1. unknown source or account: 404 before reading the body (nothing to verify against);
2. body larger than the limit: 413 while it streams in (never buffered beyond the limit);
3. empty body: 400; a ``Content-Type`` that is not JSON: 415;
4. signature and timestamp (constant-time compare, any active secret, window both ways): 401
   with one generic message; the exact reason goes to the audit log. An address that keeps
   failing gets 429 instead (see :mod:`tillbridge.inbound.failures`). An account whose
   configured secrets none can be read (unset, missing, the wrong shape) answers 503 with
   ``Retry-After``: the sender retries while the operator fixes it, nothing is lost;
5. the verified body must be a JSON object naming each member once: 400 otherwise (nothing is
   stored; ``{"amount": 1, "amount": 2}`` is ambiguous, see :mod:`tillbridge.strictjson`). Its
   *content* is not judged here: a body with a bad amount is stored and acknowledged, and
   processing marks it ``invalid``, because the sender cannot fix it by sending it again;
6. mask card data in what is stored (:func:`stored_body`): only *after* the raw bytes verified,
   so the signature is always checked over exactly what the sender signed. Processing, replay
   and the admin views all read the masked body; the dedupe key is computed over it too, so
   nothing derived from a card number is kept;
7. store the row and its processing job in one transaction, then answer 200. Concurrent
   deliveries share that transaction (group commit, :mod:`tillbridge.inbound.writer`).

Guarantees: a 200 means the delivery is committed (design invariant 3). A repeat of the same
delivery (same event id, or the same raw body when the scheme has no id) gets the same 200 with
the same id and causes nothing new. Secrets are never logged or stored; neither is a signature,
nor card data beyond a masked PAN (DESIGN 2.6).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import structlog

from tillbridge import strictjson
from tillbridge.audit.log import record as audit_record
from tillbridge.config import SecretRef
from tillbridge.errors import (
    ConfigError,
    DuplicateJsonKey,
    EmptyBody,
    MalformedBody,
    SecretUnavailable,
    SignatureRejected,
    StoreError,
    TooManyFailures,
    UnknownEndpoint,
    UnsupportedMediaType,
)
from tillbridge.inbound import inbox
from tillbridge.inbound.failures import FailureWindow
from tillbridge.inbound.settings import InboundSettings
from tillbridge.inbound.verifiers import VerifiedEvent, VerifierRegistry
from tillbridge.inbound.writer import InboxWriter
from tillbridge.observability.cards import mask_card_data, mask_card_data_json
from tillbridge.observability.redaction import Redactor
from tillbridge.outbound.redact import redact_headers
from tillbridge.store.db import Database

log = structlog.get_logger("tillbridge.inbound")

#: Headers kept with a stored delivery (plus any named after the scheme: ``xentral-*``, ...).
KEPT_HEADERS: Final = frozenset(
    {"content-type", "content-length", "user-agent", "x-request-id", "x-forwarded-for"}
)
_SCHEME_PREFIXES: Final = ("xentral-", "webhook-", "svix-")
_MAX_HEADER_CHARS: Final = 300


@dataclass(frozen=True, slots=True)
class Accepted:
    """A stored delivery. ``created`` is False for a repeat (same answer, no new effect)."""

    inbox_id: int
    created: bool


@dataclass
class SecretSource:
    """Resolves an account's secret references, re-reading them after ``ttl_s`` seconds.

    Re-reading lets an operator rotate a file-based secret without a restart. A reference that
    cannot be resolved is skipped (and logged by name, never by value).
    """

    refs: Sequence[SecretRef]
    ttl_s: float
    clock: Callable[[], float] = time.monotonic
    _cached: list[str] = field(default_factory=list)
    _at: float | None = None

    def get(self) -> list[str]:
        now = self.clock()
        if self._at is not None and now - self._at < self.ttl_s:
            return self._cached
        values: list[str] = []
        for ref in self.refs:
            try:
                values.append(ref.resolve())
            except ConfigError as exc:
                log.error("webhook.secret_unavailable", source=ref.describe(), error=exc.message)
        self._cached, self._at = values, now
        return values


def dedupe_key(event_id: str | None, raw_body: bytes) -> str:
    """``id:<event id>`` when the scheme has one; else the SHA-256 of the raw body."""
    if event_id:
        return f"id:{event_id}"[:200]
    return "sha256:" + hashlib.sha256(raw_body).hexdigest()


def stored_body(raw_body: bytes) -> bytes:
    """What is stored of a verified JSON body: card data masked (see
    :func:`~tillbridge.observability.cards.mask_card_data_json`), still valid JSON with the
    same structure. A body without card data is stored as the exact bytes received."""
    text = raw_body.decode(json.detect_encoding(raw_body))
    masked = mask_card_data_json(text)
    return raw_body if masked is text else masked.encode("utf-8")


def is_json_media(content_type: str | None) -> bool:
    """A missing type is accepted (some senders omit it); otherwise JSON or ``+json`` only."""
    if not content_type:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def kept_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers stored with a delivery, secrets redacted, values bounded."""
    chosen = []
    for k, v in headers.items():
        name = k.lower()
        if name in KEPT_HEADERS or name.startswith(_SCHEME_PREFIXES):
            chosen.append((name, mask_card_data(v[:_MAX_HEADER_CHARS])))
    return redact_headers(chosen)


class HeaderList(Mapping[str, str]):
    """Request headers decoded once, every value kept (a repeated header stays visible, which
    the verifiers need to refuse ambiguous signatures). ``[name]`` gives the first value."""

    __slots__ = ("_items",)

    def __init__(self, items: Sequence[tuple[str, str]]) -> None:
        self._items = [(k.lower(), v) for k, v in items]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return self._items

    def __getitem__(self, name: str) -> str:
        wanted = name.lower()
        for k, v in self._items:
            if k == wanted:
                return v
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)


class WebhookIntake:
    """The intake of one process: accounts, verifiers, the failure window, the database.

    ``accounts[source][account]`` resolves that account's active secrets. ``wall_clock`` (unix
    seconds) is injectable so tests can check the replay window without waiting.
    """

    def __init__(
        self,
        db: Database,
        *,
        verifiers: VerifierRegistry,
        accounts: Mapping[str, Mapping[str, SecretSource]],
        settings: InboundSettings,
        redactor: Redactor,
        failures: FailureWindow | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.verifiers = verifiers
        self.accounts = accounts
        self.settings = settings
        self.redactor = redactor
        self.failures = failures or FailureWindow(
            threshold=settings.fail_threshold, window_s=settings.fail_window_s
        )
        self.wall_clock = wall_clock
        self.writer = InboxWriter(db)

    def check_endpoint(self, source: str, account: str) -> None:
        """Raise :class:`UnknownEndpoint` unless ``source``/``account`` is configured."""
        if source not in self.verifiers or account not in self.accounts.get(source, {}):
            raise UnknownEndpoint()

    async def receive(
        self,
        source: str,
        account: str,
        raw_body: bytes,
        headers: Mapping[str, str],
        remote_addr: str | None,
    ) -> Accepted:
        """Verify and store one delivery; see the module docstring for the checks and answers."""
        self.check_endpoint(source, account)
        headers = HeaderList(list(headers.items()))  # decode once, not once per lookup
        if not raw_body:
            raise EmptyBody()
        if not is_json_media(headers.get("content-type")):
            raise UnsupportedMediaType()
        verified = await self._verify(source, account, raw_body, headers, remote_addr)
        try:
            parsed = strictjson.loads(raw_body)
        except DuplicateJsonKey as exc:
            # Which of two amounts did the sender mean? Refused, never guessed (nothing stored).
            raise MalformedBody(f"The request body is ambiguous: {exc}.") from None
        except (ValueError, UnicodeDecodeError):
            raise MalformedBody() from None
        if not isinstance(parsed, dict):
            raise MalformedBody()
        now = datetime.fromtimestamp(self.wall_clock(), UTC)
        body = stored_body(raw_body)  # verified above: from here on, only the masked bytes
        event_id = mask_card_data(verified.event_id) if verified.event_id else None
        new = inbox.NewDelivery(
            source=source,
            account=account,
            dedupe_key=dedupe_key(event_id, body),
            event_id=event_id,
            raw_body=body,
            headers=kept_headers(headers),
            verification={
                "scheme": verified.scheme,
                "timestamp": verified.timestamp,
                "secret_index": verified.secret_index,
            },
            remote_addr=remote_addr[:64] if remote_addr else None,
            received_at=now,
        )
        inbox_id, created = await self.writer.store(new)
        if not created:
            log.info("webhook.duplicate", source=source, account=account, inbox_id=inbox_id)
        return Accepted(inbox_id, created)

    async def _verify(
        self,
        source: str,
        account: str,
        raw_body: bytes,
        headers: Mapping[str, str],
        remote_addr: str | None,
    ) -> VerifiedEvent:
        keys = self.accounts[source][account]
        secrets = keys.get()
        if not secrets and keys.refs:
            # Configured, but none can be read (an unset variable, a missing file): our problem,
            # not the sender's. 503 makes the sender retry instead of giving the delivery up.
            log.error("webhook.no_secret_available", source=source, account=account)
            raise SecretUnavailable(
                f"the signature key of {source}/{account} cannot be read; the bridge's operator "
                "must provide it (tillbridge config check)"
            )
        verifier = self.verifiers.get(source)
        try:
            return verifier.verify(raw_body, headers, secrets, self.wall_clock())
        except SignatureRejected as exc:
            address = remote_addr or "unknown"
            throttled = self.failures.retry_after(address)
            self.failures.record(address)
            if throttled is not None:
                raise TooManyFailures(max(1.0, throttled)) from None
            await self._audit_rejection(source, account, raw_body, headers, address, exc.reason)
            if self.failures.retry_after(address) is not None:
                log.warning("webhook.address_throttled", source=source, remote_addr=address)
            raise

    async def _audit_rejection(
        self,
        source: str,
        account: str,
        raw_body: bytes,
        headers: Mapping[str, str],
        address: str,
        reason: str,
    ) -> None:
        # Evidence for the operator: why, from where, which bytes (by hash), which headers
        # (redacted). Never the signature or a secret. A database outage must not turn a 401
        # into a 5xx: the rejection stands, the evidence goes to the log instead.
        payload: dict[str, Any] = {
            "reason": reason,
            "remote_addr": address,
            "body_sha256": hashlib.sha256(raw_body).hexdigest(),
            "body_bytes": len(raw_body),
            "headers": kept_headers(headers),
        }
        log.warning("webhook.rejected", source=source, account=account, **payload)
        try:
            async with self.db.write() as conn:
                await audit_record(
                    conn,
                    action="webhook.rejected",
                    actor=f"webhook:{source}",
                    subject_type="webhook_account",
                    subject_id=f"{source}/{account}",
                    payload=payload,
                    redactor=self.redactor,
                )
        except StoreError as exc:
            log.error("webhook.rejection_not_audited", error=exc.message)
