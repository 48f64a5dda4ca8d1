"""Merchant configuration: strict validation, positions and fixes in every report."""

from __future__ import annotations

from pathlib import Path

import pytest

from tillbridge.app.registry import default_registry
from tillbridge.errors import ConfigError

REGISTRY = default_registry()
check_config = REGISTRY.check_config
load_config = REGISTRY.load_config

EXAMPLE = Path(__file__).resolve().parents[2] / "tillbridge.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tillbridge.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_config_is_valid_once_its_secrets_exist(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tillbridge.webhooks_out.signing import generate_secret

    monkeypatch.setenv("TILLBRIDGE_ZVT_PASSWORD", "123456")  # six digits, as ZVT wants
    monkeypatch.setenv("TILLBRIDGE_SUBSCRIBER_SECRET", generate_secret())  # whsec_...
    monkeypatch.setenv("TILLBRIDGE_XENTRAL_WEBHOOK_SECRET", "x" * 20)  # Xentral: 20-255 chars
    secret_file = tmp_path / "xentral_api_key"
    secret_file.write_text("k\n")
    text = EXAMPLE.read_text().replace("/run/secrets/xentral_api_key", str(secret_file))
    cfg, problems = check_config(write(tmp_path, text))
    assert problems == []
    assert cfg is not None
    assert cfg.registers["berlin-1"].terminal == "lane1"
    assert "fake" in cfg.connector_names()


def test_missing_file_means_the_builtin_default(tmp_path: Path) -> None:
    assert load_config(tmp_path / "absent.toml") == REGISTRY.default_config()


@pytest.mark.parametrize(
    ("text", "line", "where", "fix_word"),
    [
        # a typo in a key is an error, not silently ignored
        ('[connectors.fake]\ntype = "fake"\nlatency_msec = 5\n', 3, "latency_msec", "remove"),
        # a type this build does not implement
        ('[connectors.fake]\ntype = "stripe"\n', 1, "connectors.fake", "types this build"),
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
    # Start-up reads the structure only; the part that needs the secret reports it.
    cfg = load_config(path)
    assert cfg.secret_problems() == [
        ("subscribers.s.secret", "environment variable NOPE_SECRET is not set")
    ]


@pytest.mark.parametrize(
    ("text", "where", "line"),
    [
        # a provider type that is planned but not in this build: refused, never ignored
        ('[providers.x]\ntype = "afterpay"\nmerchant_id = "1"\n', "providers.x", 1),
        # an ERP type this build does not have (yet)
        ('[erp.o]\ntype = "odoo"\nurl = "https://o.example"\n', "erp.o", 1),
        # a terminal protocol nobody wrote
        ('[stores.s]\nname = "S"\n[terminals.t]\ntype = "nexo"\n', "terminals.t", 3),
        # no type at all
        ('[terminals.t]\nhost = "h"\n', "terminals.t", 1),
    ],
)
def test_unknown_types_are_config_errors_with_their_line(
    tmp_path: Path, text: str, where: str, line: int
) -> None:
    cfg, problems = check_config(write(tmp_path, text))
    assert cfg is None and len(problems) == 1
    p = problems[0]
    assert p.where == where and p.line == line
    assert "not available in this build" in p.message or "no type" in p.message
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        load_config(write(tmp_path, text))


def test_an_unknown_type_lists_what_this_build_knows(tmp_path: Path) -> None:
    _cfg, [p] = check_config(write(tmp_path, '[terminals.t]\ntype = "nexo"\n'))
    assert "'nexo'" in p.message
    assert "fake" in p.fix and "zvt" in p.fix


def test_the_old_protocol_key_still_names_a_terminal_type(tmp_path: Path) -> None:
    cfg, problems = check_config(
        write(tmp_path, '[terminals.t]\nprotocol = "zvt"\nhost = "192.0.2.1"\n')
    )
    assert problems == [] and cfg is not None
    assert cfg.terminals["t"].type == "zvt"


def test_connector_names_are_unique_across_sections(tmp_path: Path) -> None:
    text = '[connectors.lane1]\ntype = "fake"\n[terminals.lane1]\ntype = "fake"\n'
    _cfg, [p] = check_config(write(tmp_path, text))
    assert "must be unique" in p.message


def test_a_config_built_in_code_with_an_unregistered_type_fails_at_build(
    tmp_path: Path,
) -> None:
    from tillbridge.app.runtime import build_runtime
    from tillbridge.config import MerchantConfig, ProviderConfig
    from tillbridge.settings import Settings

    cfg = MerchantConfig(providers={"x": ProviderConfig(type="afterpay")})
    with pytest.raises(ConfigError, match="not available in this build"):
        build_runtime(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"), cfg)
