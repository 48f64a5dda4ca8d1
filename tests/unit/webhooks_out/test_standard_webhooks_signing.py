"""Standard Webhooks v1 signer/verifier, checked against the reference library as an oracle."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime

import pytest
import standardwebhooks
from hypothesis import given, settings
from hypothesis import strategies as st

from tillbridge.errors import ConfigError, SignatureError, SignatureRejected, ValidationError
from tillbridge.webhooks_out import signing

# Published test vector of the Standard Webhooks reference library (gateways.md section 6, #6).
VECTOR_KEY = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

secrets_st = st.binary(min_size=24, max_size=64).map(
    lambda b: "whsec_" + base64.b64encode(b).decode()
)
ids_st = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126, blacklist_characters="."),
    min_size=1,
    max_size=40,
)
# The oracle decodes bodies as UTF-8 text, so the shared property uses text bodies.
bodies_st = st.text(max_size=300).map(lambda t: t.encode("utf-8"))


def test_published_vector() -> None:
    assert signing.sign(VECTOR_KEY, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    msg = signing.verify(
        VECTOR_KEY,
        VECTOR_BODY,
        {
            "webhook-id": VECTOR_ID,
            "webhook-timestamp": str(VECTOR_TS),
            "webhook-signature": VECTOR_SIG,
        },
        now=VECTOR_TS + 10,
    )
    assert (msg.msg_id, msg.timestamp, msg.secret_index) == (VECTOR_ID, VECTOR_TS, 0)


@settings(max_examples=60, deadline=None)
@given(secret=secrets_st, msg_id=ids_st, ts=st.integers(0, 2**33), body=bodies_st)
def test_sign_matches_the_oracle(secret: str, msg_id: str, ts: int, body: bytes) -> None:
    oracle = standardwebhooks.Webhook(secret)
    expected = oracle.sign(msg_id, datetime.fromtimestamp(ts, tz=UTC), body.decode("utf-8"))
    assert signing.sign(secret, msg_id, ts, body) == expected


@settings(max_examples=40, deadline=None)
@given(secret=secrets_st, msg_id=ids_st, body=bodies_st)
def test_oracle_accepts_our_headers_and_we_accept_the_oracles(
    secret: str, msg_id: str, body: bytes
) -> None:
    # The oracle reads the real clock, so the timestamps here are "now".
    now = int(time.time())
    oracle = standardwebhooks.Webhook(secret)
    ours = signing.headers(secret, msg_id, now, body)
    oracle.verify(body, ours, json_parse=False)  # raises if it disagrees

    theirs = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(now),
        "webhook-signature": oracle.sign(
            msg_id, datetime.fromtimestamp(now, tz=UTC), body.decode()
        ),
    }
    assert signing.verify(secret, body, theirs, now=now).msg_id == msg_id


def test_rotation_signs_with_every_secret_and_verifies_with_any() -> None:
    old, new = signing.generate_secret(), signing.generate_secret()
    hdrs = signing.headers([old, new], "msg_1", 1000, b"{}")
    assert len(hdrs["webhook-signature"].split(" ")) == 2
    assert signing.verify([new], b"{}", hdrs, now=1000).secret_index == 0
    unrelated = signing.generate_secret()
    assert signing.verify([unrelated, old], b"{}", hdrs, now=1000).secret_index == 1


def test_garbage_and_unknown_versions_next_to_a_good_signature() -> None:
    secret = signing.generate_secret()
    good = signing.sign(secret, "msg_1", 1000, b"x")
    header = f"v1a,AAAA v1,not*base64 nocomma {good}"
    hdrs = {"webhook-id": "msg_1", "webhook-timestamp": "1000", "webhook-signature": header}
    assert signing.verify(secret, b"x", hdrs, now=1000).msg_id == "msg_1"


def _reason(secret: str, body: bytes, hdrs: dict[str, str], now: float = 1000) -> str:
    with pytest.raises(SignatureRejected) as info:
        signing.verify(secret, body, hdrs, now=now)
    assert isinstance(info.value, SignatureError)
    assert str(info.value) == "webhook signature verification failed"  # same for every cause
    assert info.value.details == {}  # nothing for problem+json to leak
    return info.value.reason


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("tampered_body", "no_matching_signature"),
        ("other_secret", "no_matching_signature"),
        ("too_old", "timestamp_too_old"),
        ("in_future", "timestamp_in_future"),
        ("missing_id", "missing_header:webhook-id"),
        ("missing_signature", "missing_header:webhook-signature"),
        ("float_timestamp", "malformed_timestamp"),
        ("dotted_id", "malformed_id"),
        ("only_v1a", "no_v1_signature"),
    ],
)
def test_rejections_have_precise_internal_reasons(case: str, reason: str) -> None:
    secret = signing.generate_secret()
    body = b'{"a":1}'
    hdrs = signing.headers(secret, "msg_1", 1000, body)
    now: float = 1000
    if case == "tampered_body":
        body = b'{"a":2}'
    elif case == "other_secret":
        secret = signing.generate_secret()
    elif case == "too_old":
        now = 1000 + 301
    elif case == "in_future":
        now = 1000 - 301
    elif case == "missing_id":
        del hdrs["webhook-id"]
    elif case == "missing_signature":
        del hdrs["webhook-signature"]
    elif case == "float_timestamp":
        hdrs["webhook-timestamp"] = "1000.0"
    elif case == "dotted_id":
        hdrs["webhook-id"] = "msg.1"
    elif case == "only_v1a":
        hdrs["webhook-signature"] = "v1a,AAAA"
    assert _reason(secret, body, hdrs, now) == reason


def test_tolerance_edges_both_directions() -> None:
    secret = signing.generate_secret()
    hdrs = signing.headers(secret, "m", 1000, b"")
    signing.verify(secret, b"", hdrs, now=1300)  # exactly 300 s old: accepted
    signing.verify(secret, b"", hdrs, now=700)  # exactly 300 s early: accepted
    signing.verify(secret, b"", hdrs, now=1500, tolerance=600)  # configurable


def test_header_names_are_case_insensitive_and_conflicts_rejected() -> None:
    secret = signing.generate_secret()
    hdrs = {k.title(): v for k, v in signing.headers(secret, "m", 1000, b"").items()}
    signing.verify(secret, b"", hdrs, now=1000)
    hdrs["webhook-id"] = "other"  # same header twice with different values
    assert _reason(secret, b"", hdrs) == "conflicting_header:webhook-id"


def test_secrets_are_validated_without_echoing_them() -> None:
    assert signing.generate_secret().startswith("whsec_")
    assert len(signing.decode_secret(signing.generate_secret(48))) == 48
    for bad in ("whsec_!!notbase64!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ConfigError) as info:
            signing.decode_secret(bad)
        assert bad not in str(info.value)
    with pytest.raises(ConfigError):
        signing.generate_secret(8)
    with pytest.raises(SignatureRejected):
        signing.verify([], b"", {}, now=0)


@pytest.mark.parametrize("msg_id", ["", "a.b", "a b"])
def test_sign_refuses_ids_the_receiver_could_not_parse(msg_id: str) -> None:
    with pytest.raises(ValidationError):
        signing.sign(signing.generate_secret(), msg_id, 1, b"")
    with pytest.raises(ValidationError):
        signing.sign(signing.generate_secret(), "ok", -1, b"")
