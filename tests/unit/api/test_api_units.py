"""Pure pieces of the API: body model, problem mapping, request hashing, token parsing, and the
middleware's body limit on a bare ASGI app."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError as PydanticValidationError
from starlette.types import Message, Receive, Scope, Send

from tillbridge.api.middleware import BodyTooLarge, RequestContextMiddleware, route_template
from tillbridge.api.problems import bridge_error_response, field_errors, validation_response
from tillbridge.api.schemas import PaymentCreate, iso_utc
from tillbridge.errors import (
    AuthError,
    Forbidden,
    IllegalTransition,
    SchemaOutOfDate,
    StoreUnavailable,
)
from tillbridge.services import apikeys
from tillbridge.services.idempotency import canonical_json, request_hash

BODY: dict[str, Any] = {"amount": 1, "currency": "EUR", "reference": "r", "connector": "fake"}


def test_payment_create_defaults_and_strictness() -> None:
    model = PaymentCreate.model_validate_json(json.dumps(BODY))
    assert model.metadata == {}
    for bad in (True, 1.0, "1", 0, -1, 10**15 + 1):
        with pytest.raises(PydanticValidationError):
            PaymentCreate.model_validate_json(json.dumps({**BODY, "amount": bad}))
    assert (
        PaymentCreate.model_validate_json(json.dumps({**BODY, "amount": 10**15})).amount == 10**15
    )
    with pytest.raises(PydanticValidationError):
        PaymentCreate.model_validate_json(json.dumps({**BODY, "metadata": {"x": float("nan")}}))


def test_field_errors_name_the_place_and_never_echo_input() -> None:
    try:
        PaymentCreate.model_validate_json(json.dumps({**BODY, "amount": "secret-4111", "x": 1}))
    except PydanticValidationError as exc:
        errors = field_errors(exc.errors(include_input=False))
    assert {e["field"] for e in errors} == {"amount", "x"}
    assert all(e["in"] == "body" and e["pointer"] in ("/amount", "/x") for e in errors)
    assert "secret-4111" not in json.dumps(errors)
    query = field_errors([{"loc": ("query", "limit"), "msg": "too big", "type": "less_than_equal"}])
    assert query == [
        {"in": "query", "field": "limit", "message": "too big", "type": "less_than_equal"}
    ]
    assert (
        validation_response([{"type": "json_invalid", "in": "body", "field": ""}]).status_code
        == 400
    )


def test_bridge_errors_map_to_status_headers_and_hide_5xx_details() -> None:
    r = bridge_error_response(AuthError())
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    r = bridge_error_response(Forbidden(scope="payments:write"))
    assert r.status_code == 403 and 'scope="payments:write"' in r.headers["www-authenticate"]
    r = bridge_error_response(StoreUnavailable(detail="could not connect to 10.0.0.5"))
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    assert b"10.0.0.5" not in r.body
    assert bridge_error_response(SchemaOutOfDate()).headers["retry-after"] == "30"
    r = bridge_error_response(IllegalTransition("no", code="not_cancelable", current="captured"))
    body = json.loads(r.body)
    assert r.status_code == 409 and body["details"] == {"current": "captured"}
    assert r.headers["content-type"] == "application/problem+json"


@given(st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=6))
def test_request_hash_ignores_key_order(d: dict[str, Any]) -> None:
    reordered = dict(reversed(list(d.items())))
    assert canonical_json(d) == canonical_json(reordered)
    assert request_hash("post", "/p", d) == request_hash("POST", "/p", reordered)
    assert request_hash("POST", "/p", d) != request_hash("POST", "/q", d)


def test_iso_utc_always_ends_in_z() -> None:
    cet = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2025, 1, 1, 13, 0, tzinfo=cet)) == "2025-01-01T12:00:00.000000Z"
    assert iso_utc(datetime(2025, 1, 1, 12, 0, 0, 5, tzinfo=UTC)).endswith(".000005Z")


def test_token_parsing_and_scopes() -> None:
    good = "tb_0123456789ab_" + "A" * 43
    assert apikeys.parse_token(good) == ("0123456789ab", "A" * 43)
    for bad in ("", "tb__x", good + "A", good.replace("tb_", "tk_"), "tb_0123456789AB_" + "A" * 43):
        assert apikeys.parse_token(bad) is None
    assert apikeys.normalize_scopes(["admin", " payments:read "]) == {"admin", "payments:read"}
    with pytest.raises(Exception, match="unknown scope"):
        apikeys.normalize_scopes(["root"])
    key = apikeys.ApiKey("key_1", "n", "p", frozenset({"admin"}), datetime.now(UTC))
    assert key.allows("payments:write") and key.allows("payments:read")
    ro = apikeys.ApiKey("key_2", "n", "p", frozenset({"payments:read"}), datetime.now(UTC))
    assert ro.allows("payments:read") and not ro.allows("payments:write")


# The body limit, on a bare ASGI app that reads its whole body -----------------------------------


async def _reading_app(scope: Scope, receive: Receive, send: Send) -> None:
    total = 0
    while True:
        msg = await receive()
        total += len(msg.get("body", b""))
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(total).encode()})


async def _call(
    chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> tuple[int, bytes, Exception | None]:
    sent: list[Message] = []
    pending = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> Message:
        return pending.pop(0)

    async def send(m: Message) -> None:
        sent.append(m)

    scope: Scope = {"type": "http", "method": "POST", "path": "/x", "headers": headers}
    mw = RequestContextMiddleware(_reading_app, max_body_bytes=10, observe=None)
    error: Exception | None = None
    try:
        await mw(scope, receive, send)
    except BodyTooLarge as exc:  # must not happen: the middleware answers 413 itself
        error = exc
    status = next((int(m["status"]) for m in sent if m["type"] == "http.response.start"), 0)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body, error


@pytest.mark.anyio
async def test_body_limit_counts_streamed_bytes_whatever_content_length_says() -> None:
    assert (await _call([b"12345", b"67890"], []))[:2] == (200, b"10")
    status, body, _ = await _call([b"x" * 8], [(b"content-length", b"11")])
    assert status == 413 and b"payload_too_large" in body  # refused up front
    # Lying (too small) and missing Content-Length: the stream itself is counted.
    for headers in ([(b"content-length", b"3")], []):
        status, body, error = await _call([b"x" * 6, b"x" * 6], headers)
        assert (status, error) == (413, None) and b"payload_too_large" in body


def test_route_template_falls_back_for_unmatched() -> None:
    assert route_template({"type": "http"}) == "<unmatched>"
