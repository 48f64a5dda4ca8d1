"""configure_logging: one JSON stream for structlog and stdlib loggers, redacted, with ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from pydantic import SecretStr

from tillbridge.observability.logging import configure_logging, reset_logging
from tillbridge.observability.redaction import MARKER, Redactor
from tillbridge.settings import Settings

PAN = "4111111111111111"
SECRET = "sk_live_51HxTopSecretValue"
AUTH = "Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig"


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    structlog.contextvars.clear_contextvars()
    yield
    structlog.contextvars.clear_contextvars()
    reset_logging()


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def _assert_clean(text: str) -> None:
    assert PAN not in text
    assert SECRET not in text
    assert "eyJhbGciOiJIUzI1NiJ9" not in text


def test_structlog_event_is_json_redacted_and_carries_bound_ids() -> None:
    out = io.StringIO()
    configure_logging(log_format="json", log_level="info", secrets=[SECRET], stream=out)
    structlog.contextvars.bind_contextvars(
        request_id="req-1", payment_id="pay_1", job_id=42, terminal_id="t-1"
    )
    log = structlog.get_logger("tillbridge.test")
    log.info(
        f"charging card {PAN}",
        headers={"Authorization": AUTH, "Content-Type": "application/json"},
        note=f"using key {SECRET}",
        password="hunter2",
        body='{"cvv": "123", "pan": "' + PAN + '"}',
    )
    _assert_clean(out.getvalue())
    assert "hunter2" not in out.getvalue()
    [line] = _lines(out)
    assert line["event"] == "charging card 411111******1111"
    assert line["headers"] == {"Authorization": MARKER, "Content-Type": "application/json"}
    assert line["note"] == f"using key {MARKER}"
    assert line["password"] == MARKER
    assert line["body"] == '{"cvv": "[REDACTED]", "pan": "411111******1111"}'
    assert (line["request_id"], line["payment_id"], line["job_id"], line["terminal_id"]) == (
        "req-1",
        "pay_1",
        42,
        "t-1",
    )
    assert line["level"] == "info"
    assert line["logger"] == "tillbridge.test"
    assert line["timestamp"].endswith("Z")


@pytest.mark.parametrize("name", ["uvicorn.access", "sqlalchemy.engine.Engine", "httpx2", "other"])
def test_stdlib_records_go_through_the_same_stream_and_redaction(name: str) -> None:
    out = io.StringIO()
    configure_logging(log_format="json", secrets=[SECRET], stream=out)
    structlog.contextvars.bind_contextvars(request_id="req-9")
    std = logging.getLogger(name)
    std.warning("GET /pay?card=%s&api_key=%s %s", PAN, SECRET, AUTH, extra={"authorization": AUTH})
    _assert_clean(out.getvalue())
    [line] = _lines(out)
    assert line["logger"] == name
    assert line["level"] == "warning"
    assert line["request_id"] == "req-9"
    assert line["event"].startswith("GET /pay?card=411111******1111&api_key=[REDACTED]")
    assert line["authorization"] == MARKER


def test_exceptions_are_rendered_and_redacted() -> None:
    out = io.StringIO()
    configure_logging(log_format="json", secrets=[SECRET], stream=out)
    try:
        raise RuntimeError(f"provider refused card {PAN} with key {SECRET}")
    except RuntimeError:
        structlog.get_logger().exception("capture.failed")
        logging.getLogger("httpx2").exception("stdlib saw it too")
    _assert_clean(out.getvalue())
    first, second = _lines(out)
    assert "RuntimeError: provider refused card 411111******1111" in first["exception"]
    assert "RuntimeError" in second["exception"]


def test_calling_twice_does_not_duplicate_lines() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging(log_format="json", stream=first)
    configure_logging(log_format="json", stream=second)
    structlog.get_logger().info("once")
    logging.getLogger("uvicorn.error").info("once too")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["once", "once too"]


def test_level_filters_structlog_and_stdlib() -> None:
    out = io.StringIO()
    configure_logging(log_format="json", log_level="warning", stream=out)
    structlog.get_logger().info("hidden")
    logging.getLogger("sqlalchemy.engine").info("hidden too")
    structlog.get_logger().warning("shown")
    assert [line["event"] for line in _lines(out)] == ["shown"]


def test_third_party_handlers_are_routed_into_the_one_stream() -> None:
    own = io.StringIO()
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.addHandler(logging.StreamHandler(own))
    uvicorn_access.propagate = False  # what uvicorn's own log config does
    out = io.StringIO()
    configure_logging(log_format="json", stream=out)
    uvicorn_access.info("GET /x %s", AUTH)
    assert own.getvalue() == ""
    assert _lines(out)[0]["event"] == f"GET /x Bearer {MARKER}"


def test_console_format_is_readable_and_redacted() -> None:
    out = io.StringIO()
    configure_logging(log_format="console", secrets=[SECRET], stream=out)
    structlog.contextvars.bind_contextvars(payment_id="pay_7")
    structlog.get_logger().info("payment.captured", card=PAN, key=SECRET)
    text = out.getvalue()
    _assert_clean(text)
    assert "payment.captured" in text
    assert "pay_7" in text
    assert "411111******1111" in text
    assert not text.lstrip().startswith("{")


def test_auto_format_is_json_when_not_a_tty() -> None:
    out = io.StringIO()
    configure_logging(log_format="auto", stream=out)
    structlog.get_logger().info("x")
    assert _lines(out)[0]["event"] == "x"


def test_settings_provide_format_level_and_secret_values() -> None:
    out = io.StringIO()
    settings = Settings(
        log_format="json",
        log_level="debug",
        redact_values=[SecretStr(SECRET)],
        database_url="postgresql://tb:db-password-1@localhost/tb",
    )
    redactor = configure_logging(settings, stream=out)
    structlog.get_logger().debug("connect", url="postgresql://tb:db-password-1@localhost/tb")
    structlog.get_logger().debug("k", value=SECRET)
    text = out.getvalue()
    assert "db-password-1" not in text
    _assert_clean(text)
    # the returned redactor is the one in use: share it with the audit log
    assert redactor.redact_text(SECRET) == MARKER


def test_a_given_redactor_is_used() -> None:
    out = io.StringIO()
    shared = Redactor(["shared-secret-value"])
    assert configure_logging(log_format="json", redactor=shared, stream=out) is shared
    structlog.get_logger().info("x shared-secret-value")
    assert _lines(out)[0]["event"] == f"x {MARKER}"


def test_bad_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging(log_format="xml", stream=io.StringIO())
    with pytest.raises(ValueError, match="log level"):
        configure_logging(log_level="loud", stream=io.StringIO())
