"""Bad input to POST /v1/payments: always a clear 4xx problem, never a 500, nothing stored."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from support.api import VALID_BODY, Api, assert_problem
from tillbridge.money import MAX_MINOR

pytestmark = pytest.mark.anyio


def body_with(**changes: Any) -> dict[str, Any]:
    out = {**VALID_BODY, **changes}
    return {k: v for k, v in out.items() if v is not ...}


# (name, body, the field the error must name)
BAD_BODIES: list[tuple[str, Any, str]] = [
    ("zero amount", body_with(amount=0), "amount"),
    ("negative amount", body_with(amount=-5), "amount"),
    ("huge amount", body_with(amount=MAX_MINOR + 1), "amount"),
    ("enormous amount", body_with(amount=10**40), "amount"),
    ("bool amount", body_with(amount=True), "amount"),
    ("float amount", body_with(amount=12.5), "amount"),
    ("integral float amount", body_with(amount=1234.0), "amount"),
    ("string amount", body_with(amount="1234"), "amount"),
    ("null amount", body_with(amount=None), "amount"),
    ("missing amount", body_with(amount=...), "amount"),
    ("missing currency", body_with(currency=...), "currency"),
    ("missing reference", body_with(reference=...), "reference"),
    ("missing connector", body_with(connector=...), "connector"),
    ("unknown currency", body_with(currency="XYZ"), "currency"),
    ("lowercase currency", body_with(currency="eur"), "currency"),
    ("testing currency", body_with(currency="XTS"), "currency"),
    ("long currency", body_with(currency="EURO"), "currency"),
    ("numeric currency", body_with(currency=978), "currency"),
    ("empty reference", body_with(reference=""), "reference"),
    ("long reference", body_with(reference="r" * 201), "reference"),
    ("control chars in reference", body_with(reference="SO\n42"), "reference"),
    ("unknown field", body_with(amout=5), "amout"),
    ("metadata not an object", body_with(metadata=[1, 2]), "metadata"),
    ("metadata too many keys", body_with(metadata={f"k{i}": i for i in range(51)}), "metadata"),
    ("metadata too big", body_with(metadata={"blob": "x" * 5000}), "metadata"),
    ("metadata too deep", body_with(metadata={"a": {"b": {"c": {"d": 1}}}}), "metadata"),
    ("metadata long key", body_with(metadata={"k" * 41: 1}), "metadata"),
]


@pytest.mark.parametrize(("name", "body", "field"), BAD_BODIES, ids=[b[0] for b in BAD_BODIES])
async def test_invalid_body_is_422_naming_the_field(
    api: Api, name: str, body: Any, field: str
) -> None:
    r = await api.create(body, idem=f"k-{name}")
    problem = assert_problem(r, 422, "validation_error")
    fields = {e["field"].split(".")[0] for e in problem["errors"]}
    assert field in fields, problem
    for e in problem["errors"]:
        assert e["in"] == "body" and e["pointer"].startswith("/")
        assert "input" not in e  # the client's data is not echoed back
    assert await api.payments() == 0
    assert await api.idempotency_rows() == 0


@pytest.mark.parametrize(
    "raw",
    [b"{bad json", b"", b'{"amount": 1234,', b"\xff\xfe", b"[1, 2", b"null"],
    ids=["garbage", "empty", "truncated", "not utf8", "unclosed array", "null"],
)
async def test_malformed_json_is_a_4xx_problem(api: Api, raw: bytes) -> None:
    r = await api.client.post(
        "/v1/payments",
        content=raw,
        headers=api.headers(idem="k-raw", **{"Content-Type": "application/json"}),
    )
    assert r.status_code in (400, 422), r.text
    assert_problem(r, r.status_code)
    assert await api.payments() == 0


async def test_json_that_is_not_an_object_is_422(api: Api) -> None:
    for raw in (b"[1,2]", b"42", b'"text"'):
        r = await api.client.post("/v1/payments", content=raw, headers=api.headers(idem="k-arr"))
        assert_problem(r, 422, "validation_error")
    assert await api.payments() == 0


async def test_wrong_content_type_is_415(api: Api) -> None:
    r = await api.client.post(
        "/v1/payments",
        content=json.dumps(VALID_BODY).encode(),
        headers=api.headers(idem="k-ct", **{"Content-Type": "text/plain"}),
    )
    assert_problem(r, 415, "unsupported_media_type")
    assert await api.payments() == 0


def oversized() -> bytes:
    return json.dumps(body_with(metadata={"pad": "x" * 70_000})).encode()


async def test_oversized_body_with_honest_content_length_is_413(api: Api) -> None:
    raw = oversized()
    r = await api.client.post("/v1/payments", content=raw, headers=api.headers(idem="k-big"))
    assert_problem(r, 413, "payload_too_large")
    assert await api.payments() == 0


async def test_oversized_body_with_a_lying_content_length_is_413(api: Api) -> None:
    raw = oversized()
    headers = api.headers(idem="k-liar", **{"Content-Length": "100"})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 8192):
            yield raw[i : i + 8192]

    r = await api.client.post("/v1/payments", content=chunks(), headers=headers)
    assert_problem(r, 413, "payload_too_large")
    assert await api.payments() == 0


async def test_oversized_chunked_body_without_content_length_is_413(api: Api) -> None:
    raw = oversized()

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(raw), 4096):
            yield raw[i : i + 4096]

    r = await api.client.post("/v1/payments", content=chunks(), headers=api.headers(idem="k-chunk"))
    assert "content-length" not in r.request.headers
    assert_problem(r, 413, "payload_too_large")
    assert await api.payments() == 0


async def test_body_exactly_at_the_limit_is_accepted(api: Api) -> None:
    limit = api.runtime.settings.max_body_bytes
    base = json.dumps(VALID_BODY).encode()
    pad = limit - len(base)
    raw = base[:-1] + b" " * pad + b"}"
    assert len(raw) == limit
    r = await api.client.post("/v1/payments", content=raw, headers=api.headers(idem="k-edge"))
    assert r.status_code == 201, r.text


async def test_bad_query_parameters_are_422_problems(api: Api) -> None:
    for query in ("limit=0", "limit=101", "limit=abc", "state=bogus", "created_from=yesterday"):
        r = await api.client.get(f"/v1/payments?{query}", headers=api.headers())
        problem = assert_problem(r, 422, "validation_error")
        assert problem["errors"][0]["in"] == "query"
    r = await api.client.get("/v1/payments?cursor=not-a-cursor", headers=api.headers())
    assert_problem(r, 422, "invalid_cursor")


def _cursor_of(values: Any) -> str:
    """A payments cursor as the bridge spells one, with any values (to forge bad ones)."""
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "values",
    [
        ["2026-01-01T00:00:00", "pay_x"],  # naive: the timestamp column refuses it (was a 500)
        ["2026-01-01T00:00:00+00:00", "pay\u0000x"],  # NUL: PostgreSQL text refuses it
        ["0001-01-01T00:00:00+01:00", "pay_x"],  # before year 1 once moved to UTC
        ["yesterday", "pay_x"],
        [1767225600, "pay_x"],  # a timestamp must be ISO 8601
        ["2026-01-01T00:00:00+00:00", 42],  # payment ids are strings
        ["2026-01-01T00:00:00+00:00"],  # wrong shape
        [2**63],
    ],
)
async def test_a_forged_payments_cursor_is_invalid_cursor_never_a_500(
    api: Api, values: Any
) -> None:
    r = await api.client.get(
        "/v1/payments", params={"cursor": _cursor_of(values)}, headers=api.headers()
    )
    assert_problem(r, 422, "invalid_cursor")


async def test_a_well_formed_payments_cursor_from_elsewhere_is_just_a_position(api: Api) -> None:
    far = _cursor_of(["2999-01-01T00:00:00+02:00", "pay_zzz"])
    r = await api.client.get("/v1/payments", params={"cursor": far}, headers=api.headers())
    assert r.status_code == 200 and r.json()["next_cursor"] is None


@pytest.mark.parametrize("amount", [12.34, 1234.0, "1234", "12.34", True])
async def test_an_amount_that_is_not_an_integer_says_minor_units(api: Api, amount: Any) -> None:
    """12.34 gets "amounts are integers in minor units ... 1234", not a bare type error (13.20)."""
    r = await api.create(body_with(amount=amount), idem=f"k-minor-{amount!r}")
    (err,) = assert_problem(r, 422, "validation_error")["errors"]
    assert err["field"] == "amount" and err["type"] == "minor_units"
    assert "minor units" in err["message"] and "1234" in err["message"]


async def test_an_unknown_query_parameter_is_422_not_silently_ignored(api: Api) -> None:
    """``?stat=captured`` (a typo of ``state``) must not list every payment."""
    r = await api.client.get("/v1/payments?stat=captured", headers=api.headers("reader"))
    (err,) = assert_problem(r, 422, "validation_error")["errors"]
    assert (err["in"], err["field"], err["type"]) == ("query", "stat", "extra_forbidden")
    assert "state" in err["message"]  # what the route does take


@pytest.mark.parametrize("value", ["0.5", "1700000000", "yesterday"])
async def test_created_from_is_iso_8601_only(api: Api, value: str) -> None:
    r = await api.client.get(f"/v1/payments?created_from={value}", headers=api.headers("reader"))
    (err,) = assert_problem(r, 422, "validation_error")["errors"]
    assert err["field"] == "created_from" and "ISO 8601" in err["message"]
