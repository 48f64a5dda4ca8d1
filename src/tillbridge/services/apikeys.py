"""API keys: create, verify, list and revoke the bearer tokens the HTTP API accepts.

A key is shown to its owner exactly once, as ``tb_<prefix>_<secret>``:

- ``prefix`` (12 lower-case hex characters) is public and indexed; it finds the row;
- ``secret`` is 32 random bytes (256 bits), URL-safe base64 without padding (43 characters).

Only ``SHA-256(secret)`` is stored. A slow password hash (bcrypt, argon2) would buy nothing here:
the secret is random with 256 bits of entropy, so it cannot be guessed from its digest, and a
fast hash keeps verification cheap on every request. Verification compares digests with
:func:`hmac.compare_digest` (constant time), and does the same amount of hashing for an unknown
prefix as for a known one.

Scopes are ``payments:read``, ``payments:write`` and ``admin``; ``admin`` implies every scope.
``payments:write`` does not imply ``payments:read``: give both to a client that also reads.

Every function takes the caller's :class:`AsyncConnection`; the CLI opens a ``db.write()`` for
:func:`create_key` and :func:`revoke`, a ``db.read()`` for :func:`list_keys` and :func:`verify`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from tillbridge.clock import utcnow
from tillbridge.domain.payments import new_id
from tillbridge.errors import AuthError, NotFound, ValidationError
from tillbridge.store.tables import api_keys

SCOPE_READ: Final = "payments:read"
SCOPE_WRITE: Final = "payments:write"
SCOPE_ADMIN: Final = "admin"
#: Every scope a key may carry.
SCOPES: Final = frozenset({SCOPE_READ, SCOPE_WRITE, SCOPE_ADMIN})

TOKEN_PREFIX: Final = "tb"  # noqa: S105 - the public marker of our tokens, not a secret
_PREFIX_HEX_CHARS: Final = 12
_SECRET_BYTES: Final = 32
# tb_ + 12 hex + _ + 43 base64url characters. Anything else is malformed before any lookup.
_TOKEN_RE: Final = re.compile(r"^tb_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
# Compared against when the prefix is unknown, so both paths hash and compare once.
_DUMMY_DIGEST: Final = hashlib.sha256(b"tillbridge: no such key").digest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored API key without its secret (safe to print and to log)."""

    id: str
    name: str
    prefix: str
    scopes: frozenset[str]
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def allows(self, scope: str) -> bool:
        """True if this key grants ``scope`` (``admin`` grants everything)."""
        return SCOPE_ADMIN in self.scopes or scope in self.scopes


def hash_secret(secret: str) -> bytes:
    """The stored form of a key's secret part: its SHA-256 digest (32 bytes)."""
    return hashlib.sha256(secret.encode("ascii")).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """Split ``tb_<prefix>_<secret>`` into ``(prefix, secret)``; None if malformed."""
    m = _TOKEN_RE.match(token)
    if m is None:
        return None
    return m.group(1), m.group(2)


def normalize_scopes(
    scopes: list[str] | tuple[str, ...] | frozenset[str] | set[str],
) -> frozenset[str]:
    """Validate scope names; raises :class:`ValidationError` naming the unknown ones."""
    wanted = frozenset(s.strip() for s in scopes if s.strip())
    unknown = sorted(wanted - SCOPES)
    if unknown:
        raise ValidationError(
            f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}",
            code="unknown_scope",
        )
    if not wanted:
        raise ValidationError("an API key needs at least one scope", code="unknown_scope")
    return wanted


def _from_row(r: RowMapping) -> ApiKey:
    # Timestamps come back aware (UTC) from the UTCDateTime columns, on both engines.
    return ApiKey(
        id=r["id"],
        name=r["name"],
        prefix=r["prefix"],
        scopes=frozenset(str(r["scopes"]).split()),
        created_at=r["created_at"],
        revoked_at=r["revoked_at"],
        last_used_at=r["last_used_at"],
    )


async def create_key(
    conn: AsyncConnection,
    name: str,
    scopes: list[str] | tuple[str, ...] | frozenset[str] | set[str],
    *,
    now: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key; returns its record and the plaintext token, which is never stored.

    Raises :class:`ValidationError` for an empty or over-long name or unknown scopes.
    """
    name = name.strip()
    if not 1 <= len(name) <= 100:
        raise ValidationError("an API key name has 1 to 100 characters", code="invalid_name")
    scope_set = normalize_scopes(scopes)
    created = now or utcnow()
    prefix = secrets.token_hex(_PREFIX_HEX_CHARS // 2)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).decode().rstrip("=")
    record = ApiKey(
        id=new_id("key"), name=name, prefix=prefix, scopes=scope_set, created_at=created
    )
    await conn.execute(
        insert(api_keys).values(
            id=record.id,
            name=record.name,
            prefix=prefix,
            secret_hash=hash_secret(secret),
            scopes=" ".join(sorted(scope_set)),
            created_at=created,
        )
    )
    return record, f"{TOKEN_PREFIX}_{prefix}_{secret}"


async def verify(conn: AsyncConnection, token: str) -> ApiKey:
    """The key ``token`` belongs to; raises :class:`AuthError` if malformed, unknown or revoked.

    The message never says which part was wrong, except "revoked" for a key whose secret
    matched (its holder already knows the key existed).
    """
    parsed = parse_token(token)
    if parsed is None:
        raise AuthError("malformed API key", code="invalid_api_key")
    prefix, secret = parsed
    row = (
        (await conn.execute(select(api_keys).where(api_keys.c.prefix == prefix))).mappings().first()
    )
    stored = bytes(row["secret_hash"]) if row is not None else _DUMMY_DIGEST
    matches = hmac.compare_digest(stored, hash_secret(secret))
    if row is None or not matches:
        raise AuthError("invalid API key", code="invalid_api_key")
    key = _from_row(row)
    if key.revoked:
        raise AuthError("API key revoked", code="api_key_revoked")
    return key


async def touch(conn: AsyncConnection, key_id: str, *, now: datetime | None = None) -> None:
    """Record that the key was used (best-effort bookkeeping; callers rate-limit it)."""
    await conn.execute(
        update(api_keys).where(api_keys.c.id == key_id).values(last_used_at=now or utcnow())
    )


async def list_keys(conn: AsyncConnection, *, include_revoked: bool = True) -> list[ApiKey]:
    """Every key, oldest first, without secrets."""
    q = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if not include_revoked:
        q = q.where(api_keys.c.revoked_at.is_(None))
    return [_from_row(r) for r in (await conn.execute(q)).mappings()]


async def revoke(
    conn: AsyncConnection, id_or_prefix: str, *, now: datetime | None = None
) -> ApiKey:
    """Revoke a key by id (``key_...``) or prefix; revoking twice keeps the first time.

    Raises :class:`NotFound`. A process that caches verified keys (the API, see
    :mod:`tillbridge.api.auth`) stops accepting the key within its cache lifetime.
    """
    where = or_(api_keys.c.id == id_or_prefix, api_keys.c.prefix == id_or_prefix)
    await conn.execute(
        update(api_keys)
        .where(where, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now or utcnow())
    )
    row = (await conn.execute(select(api_keys).where(where))).mappings().first()
    if row is None:
        raise NotFound(f"no API key {id_or_prefix!r}", code="api_key_not_found")
    return _from_row(row)
