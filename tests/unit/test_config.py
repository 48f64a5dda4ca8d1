"""Merchant configuration: strict validation, positions and fixes in every report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tillbridge.config import DEFAULT_CONFIG, check_config, load_config
from tillbridge.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "tillbridge.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tillbridge.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_config_is_valid_once_its_secrets_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in (
        "TILLBRIDGE_ZVT_PASSWORD",
        "TILLBRIDGE_AFTERPAY_SECRET",
        "TILLBRIDGE_SUBSCRIBER_SECRET",
        "TILLBRIDGE_XENTRAL_WEBHOOK_SECRET",
    ):
        monkeypatch.setenv(var, "s3cret-value")
    secret_file = tmp_path / "xentral_api_key"
    secret_file.write_text("k\n")
    text = EXAMPLE.read_text().replace("/run/secrets/xentral_api_key", str(secret_file))
    cfg, problems = check_config(write(tmp_path, text))
    assert problems == []
    assert cfg is not None
    assert cfg.registers["berlin-1"].terminal == "lane1"
    assert "fake" in cfg.connector_names()


def test_missing_file_means_the_builtin_default(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == DEFAULT_CONFIG


@pytest.mark.parametrize(
    ("text", "line", "where", "fix_word"),
    [
        # a typo in a key is an error, not silently ignored
        ('[connectors.fake]\ntype = "fake"\nlatency_msec = 5\n', 3, "latency_msec", "remove"),
        # a value outside the allowed set
        ('[connectors.fake]\ntype = "stripe"\n', 2, "type", "values"),
        # a register naming a store that does not exist
        ('[stores.a]\nname = "A"\n[registers.r1]\nstore = "b"\n', None, "registers.r1.store", ""),
        # a ZVT terminal needs exactly one link
        ('[terminals.t1]\nprotocol = "zvt"\n', 1, "terminals.t1", ""),
        # TOML syntax error reports the line
        ('[connectors.fake]\ntype = "fake\n', 2, "syntax", "syntax"),
        # an inline secret is not a reference
        ('[subscribers.s]\nurl = "https://x.example"\nsecret = "abc"\n', 3, "secret", ""),
    ],
)
def test_problems_carry_position_and_fix(
    tmp_path: Path, text: str, line: int | None, where: str, fix_word: str
) -> None:
    cfg, problems = check_config(write(tmp_path, text))
    assert cfg is None
    assert problems, "an invalid file must report at least one problem"
    p = problems[0]
    assert where in p.where or where in p.message
    if line is not None:
        assert p.line == line
    assert fix_word in p.fix
    assert p.render(Path("c.toml")).startswith("c.toml")


def test_missing_secret_is_reported_without_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOPE_SECRET", raising=False)
    path = write(
        tmp_path,
        '[subscribers.s]\nurl = "https://x.example"\nsecret = { env = "NOPE_SECRET" }\n',
    )
    cfg, problems = check_config(path)
    assert cfg is not None and len(problems) == 1
    assert problems[0].line == 3
    assert "NOPE_SECRET" in problems[0].message
    with pytest.raises(ConfigError):
        load_config(path)
