"""API keys: the service (create, verify, list, revoke) and the 401/403 answers of the API."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from support.api import VALID_BODY, Api, assert_problem, client_for
from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.errors import AuthError, NotFound, ValidationError
from tillbridge.services import apikeys
from tillbridge.store.tables import api_keys

pytestmark = pytest.mark.anyio


async def test_create_key_stores_only_a_hash_of_the_secret(api: Api) -> None:
    async with api.runtime.db.write() as conn:
        record, token = await apikeys.create_key(conn, "pos-1", ["payments:write", "payments:read"])
    prefix, secret = apikeys.parse_token(token) or ("", "")
    assert token == f"tb_{prefix}_{secret}" and record.prefix == prefix
    assert len(secret) == 43  # 32 random bytes, base64url
    async with api.runtime.db.read() as conn:
        row = (
            (await conn.execute(select(api_keys).where(api_keys.c.id == record.id)))
            .mappings()
            .one()
        )
        dump = repr(dict(row))
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert secret not in dump and token not in dump
    assert row["scopes"] == "payments:read payments:write"


async def test_verify_list_and_revoke(api: Api) -> None:
    db = api.runtime.db
    async with db.write() as conn:
        record, token = await apikeys.create_key(conn, "ci", ["payments:read"])
    async with db.read() as conn:
        assert (await apikeys.verify(conn, token)).id == record.id
        prefix, secret = apikeys.parse_token(token) or ("", "")
        wrong = f"tb_{prefix}_{'A' * 43}"
        with pytest.raises(AuthError):
            await apikeys.verify(conn, wrong)
        with pytest.raises(AuthError):
            await apikeys.verify(conn, "tb_000000000000_" + secret)
        listed = await apikeys.list_keys(conn)
    assert record.id in {k.id for k in listed}
    async with db.write() as conn:
        revoked = await apikeys.revoke(conn, record.prefix)
        again = await apikeys.revoke(conn, record.id)
    assert revoked.revoked and again.revoked_at == revoked.revoked_at
    async with db.read() as conn:
        with pytest.raises(AuthError) as info:
            await apikeys.verify(conn, token)
        assert info.value.code == "api_key_revoked"
        active = await apikeys.list_keys(conn, include_revoked=False)
    assert record.id not in {k.id for k in active}
    async with db.write() as conn:
        with pytest.raises(NotFound):
            await apikeys.revoke(conn, "key_nope")
        with pytest.raises(ValidationError):
            await apikeys.create_key(conn, "x", ["payments:everything"])
        with pytest.raises(ValidationError):
            await apikeys.create_key(conn, "  ", ["admin"])


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-key",
        "Bearer tb_0123456789ab_" + "A" * 43,  # well-formed, unknown
        "Token tb_0123456789ab_" + "A" * 43,
    ],
    ids=["missing", "empty", "no token", "basic", "malformed", "unknown", "wrong scheme"],
)
async def test_bad_credentials_are_401_with_www_authenticate(
    api: Api, authorization: str | None
) -> None:
    headers = {"Idempotency-Key": "k-auth"}
    if authorization is not None:
        headers["Authorization"] = authorization
    for r in (
        await api.client.post("/v1/payments", json=VALID_BODY, headers=headers),
        await api.client.get("/v1/payments", headers=headers),
    ):
        assert_problem(r, 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
    assert await api.payments() == 0


async def test_malformed_body_from_an_anonymous_client_is_401_not_400(api: Api) -> None:
    r = await api.client.post("/v1/payments", content=b"{oops", headers={"Idempotency-Key": "k"})
    assert_problem(r, 401)


async def test_wrong_scope_is_403(api: Api) -> None:
    r = await api.create(who="reader", idem="k-scope")
    problem = assert_problem(r, 403, "forbidden")
    assert "payments:write" in problem["detail"]
    assert r.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    r = await api.client.get("/v1/payments", headers=api.headers("write_only"))
    assert_problem(r, 403, "forbidden")
    assert await api.payments() == 0
    # admin implies every scope
    assert (await api.create(who="admin", idem="k-admin")).status_code == 201
    assert (await api.client.get("/v1/payments", headers=api.headers("admin"))).status_code == 200


async def test_revoked_key_is_rejected_once_the_cache_expires(db_url: str) -> None:
    """With the cache off, revocation applies to the next request; with it on, within its TTL
    (here: at once in this process, through ``invalidate``)."""
    runtime = testing.make_runtime(db_url)
    async with runtime.db.write() as conn:
        record, token = await apikeys.create_key(conn, "pos", ["payments:read"])
    headers = {"Authorization": f"Bearer {token}"}
    for ttl in (0.0, 60.0):
        app = create_app(runtime, auth_cache_ttl_s=ttl)
        async with client_for(app) as client:
            if ttl:
                async with runtime.db.write() as conn:
                    record, token = await apikeys.create_key(conn, "pos2", ["payments:read"])
                headers = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/v1/payments", headers=headers)).status_code == 200
            async with runtime.db.write() as conn:
                await apikeys.revoke(conn, record.id)
            if ttl:
                # Cached: still accepted within the TTL by design, until invalidated.
                assert (await client.get("/v1/payments", headers=headers)).status_code == 200
                app.state.auth.invalidate(record.id)
            r = await client.get("/v1/payments", headers=headers)
            problem = assert_problem(r, 401, "api_key_revoked")
            assert token not in r.text and problem["detail"] == "API key revoked"
    await runtime.close()
