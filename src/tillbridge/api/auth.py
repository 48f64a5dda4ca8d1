"""Bearer authentication and scopes for the API.

``Authorization: Bearer tb_<prefix>_<secret>``. A missing, malformed, unknown or revoked key
is 401 (with ``WWW-Authenticate: Bearer``); a valid key without the route's scope is 403.

Verified keys are cached in this process for ``cache_ttl_s`` seconds (default 5), keyed by the
SHA-256 of the whole token, so the hot path does not hit the database on every request. The
cost of the cache: a key revoked by another process (``tillbridge apikey revoke``) keeps
working here for at most ``cache_ttl_s`` seconds; :meth:`Authenticator.invalidate` drops it at
once in this process. Failed verifications are not cached (an attacker could fill the cache).

``last_used_at`` is written at most once per ``touch_every_s`` per key and process, in its own
small transaction, best effort: bookkeeping must never fail a payment.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Final

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tillbridge.errors import AuthError, BridgeError, Forbidden
from tillbridge.services import apikeys
from tillbridge.services.apikeys import ApiKey
from tillbridge.store.db import Database

log = structlog.get_logger("tillbridge.api")

DEFAULT_CACHE_TTL_S: Final = 5.0
DEFAULT_TOUCH_EVERY_S: Final = 300.0
_MAX_CACHE_ENTRIES: Final = 4096

_bearer = HTTPBearer(auto_error=False, description="An API key: `tb_<prefix>_<secret>`.")


class Authenticator:
    """Verifies bearer tokens against the ``api_keys`` table, with a short in-process cache."""

    def __init__(
        self,
        db: Database,
        *,
        cache_ttl_s: float = DEFAULT_CACHE_TTL_S,
        touch_every_s: float = DEFAULT_TOUCH_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.cache_ttl_s = cache_ttl_s
        self.touch_every_s = touch_every_s
        self.clock = clock
        self._cache: dict[bytes, tuple[ApiKey, float]] = {}
        self._touched: dict[str, float] = {}

    def invalidate(self, key_id: str | None = None) -> None:
        """Forget cached verifications (of one key, or all)."""
        if key_id is None:
            self._cache.clear()
            return
        for digest in [d for d, (k, _) in self._cache.items() if k.id == key_id]:
            del self._cache[digest]

    async def authenticate(self, token: str | None) -> ApiKey:
        """The key behind ``token``; raises :class:`AuthError` (401) if there is none."""
        if not token:
            raise AuthError(
                "missing API key: send `Authorization: Bearer <api key>`", code="missing_api_key"
            )
        now = self.clock()
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        hit = self._cache.get(digest)
        if hit is not None and now - hit[1] < self.cache_ttl_s:
            return hit[0]
        async with self.db.read() as conn:
            key = await apikeys.verify(conn, token)
        if len(self._cache) >= _MAX_CACHE_ENTRIES:
            self._cache.clear()  # crude but bounded; a full cache only costs re-verifications
        self._cache[digest] = (key, now)
        await self._maybe_touch(key, now)
        return key

    async def _maybe_touch(self, key: ApiKey, now: float) -> None:
        last = self._touched.get(key.id)
        if last is not None and now - last < self.touch_every_s:
            return
        self._touched[key.id] = now
        try:
            async with self.db.write() as conn:
                await apikeys.touch(conn, key.id)
        except BridgeError as exc:
            log.warning("api.key_touch_failed", key_id=key.id, error=exc.message)


def require_scope(scope: str) -> Callable[..., Awaitable[ApiKey]]:
    """A FastAPI dependency: the caller's :class:`ApiKey`, which must grant ``scope``."""

    async def dependency(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> ApiKey:
        auth: Authenticator = request.app.state.auth
        if credentials is None and request.headers.get("authorization"):
            raise AuthError(
                "malformed Authorization header: use `Bearer <api key>`", code="invalid_api_key"
            )
        key = await auth.authenticate(credentials.credentials if credentials else None)
        if not key.allows(scope):
            raise Forbidden(f"this API key lacks the scope {scope!r}", scope=scope)
        structlog.contextvars.bind_contextvars(api_key_id=key.id)
        return key

    dependency.__name__ = f"require_{scope.replace(':', '_')}"
    return dependency
