"""XentralVerifier: the published example, raw-bytes rule, window, headers, rotation."""

from __future__ import annotations

import pytest

from tillbridge.erp.xentral.verifier import XentralVerifier, xentral_signature
from tillbridge.errors import SignatureRejected
from tillbridge.money import Money
from tillbridge.simulators import xentral as sim

# Published example from Xentral's help centre (gateways.md section 3.1, verified there).
EXAMPLE_BODY = (
    b'{"type":"com.xentral.salesOrder.protocolCreated.v1","body":{"createdAt":'
    b'"2024-05-28T17:30:07+02:00","salesOrderId":169,"salesOrderProtocolId":586}}'
)
EXAMPLE_TS = "1716910210"
EXAMPLE_KEY = "e4nRJ04Ss2m3EkQxn19V"
EXAMPLE_SIG = "67b9db5fbe8add6c5b073f42091f593e994de32c83741573015442c154214bcf"
NOW = 1716910210.0


def headers(sig: str = EXAMPLE_SIG, ts: str = EXAMPLE_TS) -> dict[str, str]:
    return {"xentral-signature": sig, "xentral-request-timestamp": ts}


def reason(body: bytes, hdrs: dict[str, str], secrets: list[str], now: float = NOW) -> str:
    with pytest.raises(SignatureRejected) as info:
        XentralVerifier().verify(body, hdrs, secrets, now)
    assert str(info.value) == "webhook signature verification failed"
    return info.value.reason


def test_published_example_signature() -> None:
    assert xentral_signature(EXAMPLE_KEY, EXAMPLE_BODY, EXAMPLE_TS) == EXAMPLE_SIG
    event = XentralVerifier().verify(EXAMPLE_BODY, headers(), [EXAMPLE_KEY], NOW + 30)
    assert (event.scheme, event.event_id, event.timestamp) == ("xentral", None, 1716910210)


def test_upper_case_hex_and_header_case_are_accepted() -> None:
    hdrs = {"Xentral-Signature": EXAMPLE_SIG.upper(), "Xentral-Request-Timestamp": EXAMPLE_TS}
    XentralVerifier().verify(EXAMPLE_BODY, hdrs, [EXAMPLE_KEY], NOW)


def test_signature_is_over_the_raw_bytes() -> None:
    # Same JSON, re-serialised with spaces: a verifier that parses first would wrongly accept.
    reformatted = EXAMPLE_BODY.replace(b'","', b'", "')
    assert reason(reformatted, headers(), [EXAMPLE_KEY]) == "no_matching_signature"


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("wrong_key", "no_matching_signature"),
        ("stale", "timestamp_too_old"),  # 301 s after signing
        ("future", "timestamp_in_future"),  # 301 s before signing
        ("no_signature", "missing_header:xentral-signature"),
        ("no_timestamp", "missing_header:xentral-request-timestamp"),
        ("ms_timestamp", "malformed_timestamp"),  # not unix seconds
        ("iso_timestamp", "malformed_timestamp"),
        ("short_signature", "malformed_signature"),
        ("not_hex", "malformed_signature"),
        ("no_secrets", "no_active_secret"),
        ("timestamp_swapped", "no_matching_signature"),  # the timestamp is part of the MAC
    ],
)
def test_rejections(case: str, expected: str) -> None:
    hdrs, secrets, now = headers(), [EXAMPLE_KEY], NOW
    if case == "wrong_key":
        secrets = ["another-twenty-char-key"]
    elif case == "stale":
        now = NOW + 301
    elif case == "future":
        now = NOW - 301
    elif case == "no_signature":
        del hdrs["xentral-signature"]
    elif case == "no_timestamp":
        del hdrs["xentral-request-timestamp"]
    elif case == "ms_timestamp":
        hdrs["xentral-request-timestamp"] = "1716910210.000"
    elif case == "iso_timestamp":
        hdrs["xentral-request-timestamp"] = "2024-05-28T17:30:10Z"
    elif case == "short_signature":
        hdrs["xentral-signature"] = EXAMPLE_SIG[:-2]
    elif case == "not_hex":
        hdrs["xentral-signature"] = "z" * 64
    elif case == "no_secrets":
        secrets = []
    elif case == "timestamp_swapped":
        hdrs["xentral-request-timestamp"] = "1716910211"
    assert reason(EXAMPLE_BODY, hdrs, secrets, now) == expected


def test_window_edges_and_configurable_tolerance() -> None:
    XentralVerifier().verify(EXAMPLE_BODY, headers(), [EXAMPLE_KEY], NOW + 300)
    XentralVerifier().verify(EXAMPLE_BODY, headers(), [EXAMPLE_KEY], NOW - 300)
    with pytest.raises(SignatureRejected):
        XentralVerifier(tolerance=30).verify(EXAMPLE_BODY, headers(), [EXAMPLE_KEY], NOW + 31)


def test_rotation_accepts_any_active_key_and_reports_which() -> None:
    event = XentralVerifier().verify(
        EXAMPLE_BODY, headers(), ["the-new-key-of-20-chars", EXAMPLE_KEY], NOW
    )
    assert event.secret_index == 1


def test_simulator_knobs_produce_what_a_receiver_must_handle() -> None:
    body = sim.envelope(sim.card_payment_body(Money(2590, "EUR")))
    now = 1_750_000_000
    verifier = XentralVerifier()

    first, again = sim.deliveries(body, now=now, duplicate=True)
    assert first.body == again.body and first.headers != again.headers
    for delivery in (first, again):
        verifier.verify(delivery.body, delivery.headers, [sim.DEFAULT_KEY], now)

    (bad,) = sim.deliveries(body, now=now, bad_signature=True)
    assert reason(bad.body, bad.headers, [sim.DEFAULT_KEY], now) == "no_matching_signature"
    (stale,) = sim.deliveries(body, now=now, stale=True)
    assert reason(stale.body, stale.headers, [sim.DEFAULT_KEY], now) == "timestamp_too_old"
    (future,) = sim.deliveries(body, now=now, timestamp_offset=600)
    assert reason(future.body, future.headers, [sim.DEFAULT_KEY], now) == "timestamp_in_future"
