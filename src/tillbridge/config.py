"""The merchant configuration: stores, registers, terminals, connectors, providers, ERPs, hooks.

One TOML file (``TILLBRIDGE_CONFIG``, default ``./tillbridge.toml``), validated strictly: an unknown
key is an error (a typo must not silently disable a setting). Secrets are never written inline;
they are references, ``{ env = "NAME" }`` or ``{ file = "/run/secrets/name" }``, resolved when the
configuration is loaded. :func:`check_config` reports every problem with its line in the file and
what to do about it; ``tillbridge config check`` prints that report.

Without a file the bridge runs on the built-in default: one ``fake`` connector (a sandbox).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator
from pydantic import ValidationError as PydanticValidationError

from tillbridge.errors import ConfigError

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """Where a secret comes from: an environment variable or a file. Never the value itself."""

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError('give exactly one of env = "VAR" or file = "/path"')
        return self

    def resolve(self) -> str:
        """The secret's value; raises :class:`ConfigError` naming the source (never the value)."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            return self.file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read secret file {self.file}: {exc.strerror}") from exc

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"


class Store(_Strict):
    name: str
    timezone: str = "UTC"


class Terminal(_Strict):
    protocol: Literal["zvt", "fake"]
    store: Name | None = None
    host: str | None = None
    port: int = Field(default=20007, ge=1, le=65535)
    serial: str | None = None
    password: SecretRef | None = None
    currency: str = "EUR"
    charset: Literal["cp437", "latin-1"] = "cp437"

    @model_validator(mode="after")
    def _one_link(self) -> Terminal:
        if self.protocol == "zvt" and (self.host is None) == (self.serial is None):
            raise ValueError('a ZVT terminal needs exactly one of host = "..." or serial = "..."')
        return self


class Register(_Strict):
    store: Name
    terminal: Name | None = None
    #: Xentral project id or number whose POS events belong to this register.
    xentral_project: str | None = None


class Connector(_Strict):
    type: Literal["fake"]
    latency_ms: int = Field(default=0, ge=0, le=60_000)


class Provider(_Strict):
    type: Literal["afterpay", "twocheckout"]
    merchant_id: str
    secret: SecretRef
    sandbox: bool = True


class Erp(_Strict):
    type: Literal["odoo", "xentral"]
    url: HttpUrl
    api_key: SecretRef
    database: str | None = None
    #: Xentral only: the webhook signature key(s). Several during a key rotation; any one that
    #: verifies is accepted. Without any, every delivery to this account is refused (401).
    webhook_secrets: list[SecretRef] = Field(default_factory=list, max_length=5)

    @model_validator(mode="after")
    def _webhook_secrets_only_for_xentral(self) -> Erp:
        if self.webhook_secrets and self.type != "xentral":
            raise ValueError('webhook_secrets is only used by type = "xentral"')
        return self


class Subscriber(_Strict):
    url: HttpUrl
    secret: SecretRef
    events: list[str] = Field(default_factory=lambda: ["*"])


class MerchantConfig(_Strict):
    stores: dict[Name, Store] = Field(default_factory=dict)
    registers: dict[Name, Register] = Field(default_factory=dict)
    terminals: dict[Name, Terminal] = Field(default_factory=dict)
    connectors: dict[Name, Connector] = Field(default_factory=dict)
    providers: dict[Name, Provider] = Field(default_factory=dict)
    erp: dict[Name, Erp] = Field(default_factory=dict)
    subscribers: dict[Name, Subscriber] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> MerchantConfig:
        problems: list[str] = []
        for name, reg in self.registers.items():
            if reg.store not in self.stores:
                problems.append(f"registers.{name}.store: no store named {reg.store!r}")
            if reg.terminal is not None and reg.terminal not in self.terminals:
                problems.append(f"registers.{name}.terminal: no terminal named {reg.terminal!r}")
        for name, term in self.terminals.items():
            if term.store is not None and term.store not in self.stores:
                problems.append(f"terminals.{name}.store: no store named {term.store!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def connector_names(self) -> list[str]:
        """Every name a payment may use as its ``connector``."""
        return sorted({*self.connectors, *self.terminals, *self.providers})

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        refs: list[tuple[str, SecretRef]] = []
        for section in ("terminals", "providers", "erp", "subscribers"):
            for name, item in getattr(self, section).items():
                for field_name in ("password", "secret", "api_key"):
                    ref = getattr(item, field_name, None)
                    if isinstance(ref, SecretRef):
                        refs.append((f"{section}.{name}.{field_name}", ref))
                for i, ref in enumerate(getattr(item, "webhook_secrets", None) or ()):
                    refs.append((f"{section}.{name}.webhook_secrets.{i}", ref))
        return refs


#: What the bridge runs on when no configuration file exists.
DEFAULT_CONFIG = MerchantConfig(connectors={"fake": Connector(type="fake")})


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the file: where, what, and how to fix it."""

    line: int | None
    where: str
    message: str
    fix: str

    def render(self, path: Path) -> str:
        pos = f"{path}:{self.line}" if self.line else str(path)
        return f"{pos}: {self.where}: {self.message}\n    fix: {self.fix}"


_FIXES = {
    "extra_forbidden": "remove it, or check its spelling against the commented example config",
    "missing": "add it",
    "literal_error": "use one of the values named above",
    "string_pattern_mismatch": "use letters, digits, '.', '_' or '-' (at most 64)",
    "url_parsing": "give a full URL such as https://example.com/path",
    "url_scheme": "give a full URL such as https://example.com/path",
}


def _locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort line number of a key path such as ``("terminals", "lane1", "port")``."""
    lines = text.splitlines()
    parts = [str(p) for p in loc]
    # The deepest [table.header] that is a prefix of the path, then the key below it.
    for depth in range(len(parts), 0, -1):
        header = parts[:depth]
        pattern = re.compile(
            r"^\s*\[\s*" + r"\s*\.\s*".join(rf"\"?{re.escape(h)}\"?" for h in header) + r"\s*\]"
        )
        for i, line in enumerate(lines):
            if pattern.match(line):
                if depth == len(parts):
                    return i + 1
                key = re.compile(rf"^\s*\"?{re.escape(parts[depth])}\"?\s*=")
                for j in range(i + 1, len(lines)):
                    if lines[j].lstrip().startswith("["):
                        break
                    if key.match(lines[j]):
                        return j + 1
                return i + 1
    return None


def check_config(path: Path) -> tuple[MerchantConfig | None, list[ConfigProblem]]:
    """Parse and validate the file; return the config (if valid) and every problem found."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [ConfigProblem(None, "file", "does not exist", "create it from the example")]
    except OSError as exc:
        return None, [ConfigProblem(None, "file", str(exc.strerror), "check permissions")]
    try:
        data: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        return None, [
            ConfigProblem(int(m.group(1)) if m else None, "syntax", str(exc), "fix the TOML syntax")
        ]
    try:
        cfg = MerchantConfig.model_validate(data)
    except PydanticValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            where = ".".join(str(p) for p in loc) or "config"
            problems.append(
                ConfigProblem(
                    _locate(text, loc),
                    where,
                    err["msg"],
                    _FIXES.get(err["type"], "correct the value as described"),
                )
            )
        return None, problems
    problems = []
    for where, ref in cfg.secret_refs():
        try:
            ref.resolve()
        except ConfigError as exc:
            problems.append(
                ConfigProblem(
                    _locate(text, tuple(where.split("."))),
                    where,
                    exc.message,
                    f"provide the secret ({ref.describe()}) in the environment of the bridge",
                )
            )
    return cfg, problems


def load_config(path: Path) -> MerchantConfig:
    """The merchant config from ``path``, or :data:`DEFAULT_CONFIG` if the file does not exist.

    Raises :class:`ConfigError` listing every problem if the file is invalid.
    """
    if not path.exists():
        return DEFAULT_CONFIG
    cfg, problems = check_config(path)
    if problems or cfg is None:
        report = "\n".join(p.render(path) for p in problems)
        raise ConfigError(f"invalid configuration:\n{report}", problems=len(problems))
    return cfg
