"""Configuration traps of the outside run (issue 13.8 to 13.14): each a clear message, never a
traceback, and the same message at start-up and in ``config check``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tillbridge.app.registry import default_registry
from tillbridge.app.runtime import build_runtime
from tillbridge.config import SecretRef
from tillbridge.connectors.terminals.zvt.connector import ZvtPassword
from tillbridge.erp.xentral.entry import XentralSignatureKey
from tillbridge.errors import ConfigError
from tillbridge.inbound.settings import load_inbound_settings
from tillbridge.settings import load_settings
from tillbridge.webhooks_out.signing import generate_secret

REGISTRY = default_registry()


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tillbridge.toml"
    p.write_text(text, encoding="utf-8")
    return p


# 13.8 ---------------------------------------------------------------------------------------


def test_a_named_config_file_that_does_not_exist_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILLBRIDGE_CONFIG", str(tmp_path / "tilbridge.toml"))  # a typo
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    with pytest.raises(ConfigError, match="does not exist") as caught:
        build_runtime(settings)
    assert "TILLBRIDGE_CONFIG" in caught.value.message
    assert "tilbridge.toml" in caught.value.message


def test_only_the_default_path_may_be_absent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TILLBRIDGE_CONFIG", raising=False)
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}")
    assert settings.config_is_default
    assert REGISTRY.load_config(settings.config) == REGISTRY.default_config()


# 13.9 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref_type", "value", "words"),
    [
        (XentralSignatureKey, "short-key", "20 to 255"),
        (XentralSignatureKey, "k" * 256, "20 to 255"),
        (ZvtPassword, "12345", "six digits"),
        (ZvtPassword, "12345a", "six digits"),
    ],
)
def test_a_secret_of_the_wrong_shape_for_its_source_is_refused(
    monkeypatch: pytest.MonkeyPatch, ref_type: type[SecretRef], value: str, words: str
) -> None:
    monkeypatch.setenv("TB_TEST_SHAPED", value)
    with pytest.raises(ConfigError, match=words) as caught:
        ref_type(env="TB_TEST_SHAPED").resolve()
    assert value not in caught.value.message  # never the value itself
    assert caught.value.details["reason"] == "invalid"


def test_xentral_keys_of_20_to_255_characters_are_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    for n in (20, 255):
        monkeypatch.setenv("TB_TEST_SHAPED", "k" * n)
        assert XentralSignatureKey(env="TB_TEST_SHAPED").resolve() == "k" * n


def test_a_short_xentral_key_in_the_file_is_a_problem_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TB_TEST_TOKEN", "token")
    monkeypatch.setenv("TB_TEST_KEY", "too-short")
    text = (
        '[erp.x]\ntype = "xentral"\nurl = "https://x.example"\n'
        'api_key = { env = "TB_TEST_TOKEN" }\nwebhook_secrets = [{ env = "TB_TEST_KEY" }]\n'
    )
    _cfg, [problem] = REGISTRY.check_config(write(tmp_path, text))
    assert problem.where == "erp.x.webhook_secrets.0" and problem.line == 5
    assert "20 to 255" in problem.message and "correct the secret" in problem.fix


def test_subscriber_secrets_must_be_standard_webhooks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = '[subscribers.s]\nurl = "https://x.example"\nsecret = { env = "TB_TEST_WHSEC" }\n'
    monkeypatch.setenv("TB_TEST_WHSEC", "not-base64!")
    _cfg, [problem] = REGISTRY.check_config(write(tmp_path, text))
    assert "whsec_" in problem.message
    monkeypatch.setenv("TB_TEST_WHSEC", generate_secret())
    assert REGISTRY.check_config(write(tmp_path, text))[1] == []


# 13.10 --------------------------------------------------------------------------------------


def test_two_registers_with_the_same_xentral_project_are_refused(tmp_path: Path) -> None:
    text = (
        '[stores.s]\nname = "S"\n'
        '[registers.r1]\nstore = "s"\nxentral_project = "7"\n'
        '[registers.r2]\nstore = "s"\nxentral_project = "7"\n'
    )
    cfg, problems = REGISTRY.check_config(write(tmp_path, text))
    assert cfg is None
    assert any("registers.r2.xentral_project" in p.message and "r1" in p.message for p in problems)


# 13.11 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("TILLBRIDGE_PORT", "abc", "valid integer"),
        ("TILLBRIDGE_PORT", "70000", "less than or equal to 65535"),
        ("TILLBRIDGE_LOG_FORMAT", "xml", "'auto', 'json' or 'console'"),
        ("TILLBRIDGE_LOG_LEVEL", "loud", "'debug'"),
        ("TILLBRIDGE_WORKER_CONCURRENCY", "0", "greater than or equal to 1"),
        ("TILLBRIDGE_MAX_BODY_BYTES", "-1", "greater than or equal to 1024"),
        ("TILLBRIDGE_IDEMPOTENCY_TTL_S", "-5", "greater than or equal to 60"),
        ("TILLBRIDGE_DATABASE_URL", "mysql://u:pw@h/db", "sqlite:///"),
        ("TILLBRIDGE_DATABASE_URL", "tillbridge.db", "without a scheme"),
    ],
)
def test_a_bad_environment_setting_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    (line,) = caught.value.details["problems"]
    assert line.startswith(f"{variable}=") and words in line
    assert "pw@" not in line  # a database password is never echoed


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("TILLBRIDGE_WEBHOOK_TOLERANCE_S", "-5"),
        ("TILLBRIDGE_WEBHOOK_MAX_BODY_BYTES", "-1"),
        ("TILLBRIDGE_WEBHOOK_FAIL_THRESHOLD", "zero"),
    ],
)
def test_bad_webhook_settings_are_clear_too(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=f"{variable}={value}"):
        load_inbound_settings()
