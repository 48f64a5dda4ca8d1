"""The pure pieces behind intake and delivery: failure window, schedule, event mapping, config."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest
import typer
from pydantic import ValidationError as PydanticValidationError

from tillbridge.cli.simulate import parse_rate
from tillbridge.config import SecretRef, Subscriber
from tillbridge.domain.payments import Payment
from tillbridge.domain.states import PaymentState
from tillbridge.erp.xentral.entry import XentralConfig
from tillbridge.errors import ConfigError
from tillbridge.inbound.failures import FailureWindow
from tillbridge.inbound.intake import SecretSource, dedupe_key, is_json_media, kept_headers
from tillbridge.money import Money
from tillbridge.webhooks_out.delivery import MAX_ATTEMPTS, SCHEDULE, retry_delay
from tillbridge.webhooks_out.events import event_type_for, subscriptions_from_config


class Tick:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_failure_window_throttles_after_threshold_and_forgets_after_window() -> None:
    tick = Tick()
    w = FailureWindow(threshold=3, window_s=60, clock=tick)
    for _ in range(2):
        w.record("a")
    assert w.retry_after("a") is None
    w.record("a")
    assert w.retry_after("a") == 60
    assert w.retry_after("b") is None  # per address
    tick.t = 59.5
    assert w.retry_after("a") == pytest.approx(0.5)
    tick.t = 60.0
    assert w.retry_after("a") is None


def test_failure_window_memory_is_bounded() -> None:
    w = FailureWindow(threshold=1, window_s=60, max_addresses=2, clock=Tick())
    for addr in ("a", "b", "c"):
        w.record(addr)
    assert w.retry_after("a") is None  # evicted, least recently seen
    assert w.retry_after("c") is not None


def test_schedule_is_the_standard_webhooks_example() -> None:
    assert SCHEDULE == (0, 5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
    assert MAX_ATTEMPTS == 10
    rng = random.Random(7)
    for attempt in range(1, MAX_ATTEMPTS):
        for _ in range(50):
            d = retry_delay(attempt, rng)
            assert d is not None and SCHEDULE[attempt] * 0.9 <= d <= SCHEDULE[attempt] * 1.1
    assert retry_delay(MAX_ATTEMPTS, rng) is None


def test_retry_after_is_a_floor_with_a_cap() -> None:
    rng = random.Random(1)
    assert retry_delay(1, rng, retry_after=3600) == 3600  # asked for longer than the schedule
    d = retry_delay(3, rng, retry_after=1)
    assert d is not None and d >= SCHEDULE[3] * 0.9  # asked for shorter: the schedule wins
    assert retry_delay(1, rng, retry_after=10**9) == 86400


def _payment(state: PaymentState) -> Payment:
    now = datetime.now(UTC)
    return Payment("pay_1", Money(100, "EUR"), "r", "fake", state, now, now)


@pytest.mark.parametrize(
    ("state", "previous", "event"),
    [
        (PaymentState.CAPTURED, PaymentState.IN_PROGRESS, "payment.succeeded"),
        (PaymentState.CAPTURED, PaymentState.UNKNOWN, "payment.succeeded"),
        (PaymentState.DECLINED, PaymentState.IN_PROGRESS, "payment.declined"),
        (PaymentState.UNKNOWN, PaymentState.IN_PROGRESS, "payment.unknown"),
        (PaymentState.PARTIALLY_REFUNDED, PaymentState.CAPTURED, "payment.refunded"),
        (PaymentState.REFUNDED, PaymentState.PARTIALLY_REFUNDED, "payment.refunded"),
        (PaymentState.IN_PROGRESS, PaymentState.CREATED, None),
        (PaymentState.CREATED, None, None),
        (PaymentState.FAILED, PaymentState.IN_PROGRESS, None),
        (PaymentState.CAPTURED, PaymentState.CAPTURED, None),  # a repeat emits nothing
    ],
)
def test_state_changes_map_to_events(
    state: PaymentState, previous: PaymentState | None, event: str | None
) -> None:
    assert event_type_for(_payment(state), previous) == event


def test_unknown_subscriber_events_are_config_errors() -> None:
    ref = SecretRef(env="X")
    ok = {"a": Subscriber(url="https://a.example/h", secret=ref, events=["*"])}  # type: ignore[arg-type]
    assert subscriptions_from_config(ok)["a"].events is None
    bad = {"a": Subscriber(url="https://a.example/h", secret=ref, events=["payment.captured"])}  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"payment\.captured"):
        subscriptions_from_config(bad)


def test_dedupe_key_prefers_the_event_id() -> None:
    assert dedupe_key("evt_1", b"{}") == "id:evt_1"
    a, b = dedupe_key(None, b'{"a":1}'), dedupe_key(None, b'{"a": 1}')
    assert a.startswith("sha256:") and a != b  # raw bytes, never re-serialised JSON


@pytest.mark.parametrize(
    ("ctype", "ok"),
    [
        (None, True),
        ("application/json", True),
        ("application/json; charset=utf-8", True),
        ("application/cloudevents+json", True),
        ("text/plain", False),
        ("application/x-www-form-urlencoded", False),
    ],
)
def test_json_media_types(ctype: str | None, ok: bool) -> None:
    assert is_json_media(ctype) is ok


def test_kept_headers_drop_secrets_and_unrelated_headers() -> None:
    kept = kept_headers(
        {
            "Content-Type": "application/json",
            "Xentral-Signature": "ab" * 32,
            "xentral-request-timestamp": "1716910210",
            "Authorization": "Bearer x",
            "Cookie": "s=1",
        }
    )
    assert kept == {
        "content-type": "application/json",
        "xentral-signature": "[redacted]",
        "xentral-request-timestamp": "1716910210",
    }


def test_secret_source_rereads_after_its_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    tick = Tick()
    monkeypatch.setenv("TB_T_KEY", "first-key-value")
    src = SecretSource([SecretRef(env="TB_T_KEY"), SecretRef(env="TB_T_MISSING")], 60, tick)
    assert src.get() == ["first-key-value"]  # an unresolvable reference is skipped
    monkeypatch.setenv("TB_T_KEY", "second-key-value")
    assert src.get() == ["first-key-value"]
    tick.t = 61
    assert src.get() == ["second-key-value"]


def test_erp_webhook_secrets_are_optional_and_only_for_xentral() -> None:
    key = SecretRef(env="K")
    plain = XentralConfig(url="https://x.example", api_key=key)  # type: ignore[arg-type]
    assert plain.webhook_secrets == []
    with pytest.raises(PydanticValidationError, match="Extra inputs are not permitted"):
        XentralConfig(url="https://x.example", api_key=key, database="odoo")  # type: ignore[arg-type, call-arg]


@pytest.mark.parametrize(("text", "rate"), [("20/s", 20.0), ("5", 5.0), ("0.5/s", 0.5)])
def test_parse_rate(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["fast", "0/s", "-1"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_rate(text)


def test_webhook_secrets_are_secret_refs_for_redaction_and_config_check() -> None:
    from tillbridge.config import MerchantConfig

    key = SecretRef(env="K")
    cfg = MerchantConfig(
        erp={
            "x": XentralConfig(url="https://x.example", api_key=key, webhook_secrets=[key, key])  # type: ignore[arg-type]
        }
    )
    assert [w for w, _ in cfg.secret_refs()] == [
        "erp.x.api_key",
        "erp.x.webhook_secrets.0",
        "erp.x.webhook_secrets.1",
    ]
