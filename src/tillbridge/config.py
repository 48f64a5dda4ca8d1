"""The merchant configuration: stores, registers, terminals, connectors, providers, ERPs, hooks.

One TOML file (``TILLBRIDGE_CONFIG``, default ``./tillbridge.toml``), validated strictly: an unknown
key is an error (a typo must not silently disable a setting). Secrets are never written inline;
they are references, ``{ env = "NAME" }`` or ``{ file = "/run/secrets/name" }``, resolved when the
configuration is loaded. :func:`check_config` reports every problem with its line in the file and
what to do about it; ``tillbridge config check`` prints that report.

Sections whose entries are plugins (``connectors``, ``terminals``, ``providers``, ``erp``) take a
``type`` that the connector registry (:mod:`tillbridge.app.registry`) maps to the entry's own
model and factory: a type this build does not know is an error with its line, never ignored.
Without a file the bridge runs on the registry's built-in default (the ``fake`` sandbox).
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator
from pydantic import ValidationError as PydanticValidationError

from tillbridge.errors import ConfigError

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[str, Field(pattern=NAME)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Strict):
    """Where a secret comes from: an environment variable or a file. Never the value itself.

    Extension point: a source whose secrets have a shape of their own (a length, a format)
    subclasses this and overrides :meth:`check`; every :meth:`resolve` then enforces it, so
    ``config check``, start-up and the component that uses the secret all apply one rule.
    """

    env: str | None = None
    file: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_plain_ref(cls, data: Any) -> Any:
        """A plain :class:`SecretRef` given where a narrower kind is declared becomes that kind
        (code that builds configs need not know every source's subclass)."""
        if isinstance(data, SecretRef) and not isinstance(data, cls):
            return {"env": data.env, "file": data.file}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError('give exactly one of env = "VAR" or file = "/path"')
        return self

    def check(self, value: str) -> str | None:
        """What is wrong with ``value`` for this kind of secret (never quoting it), or None."""
        return None

    def resolve(self) -> str:
        """The secret's value; raises :class:`ConfigError` naming the source (never the value),
        with ``details["reason"]`` ``missing`` (not set, no file) or ``invalid`` (:meth:`check`).
        """
        if self.env is not None:
            value = os.environ.get(self.env)
            if not value:
                raise ConfigError(f"environment variable {self.env} is not set", reason="missing")
        else:
            assert self.file is not None
            try:
                value = self.file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read secret file {self.file}: {exc.strerror}", reason="missing"
                ) from exc
            if not value:
                raise ConfigError(f"secret file {self.file} is empty", reason="missing")
        problem = self.check(value)
        if problem is not None:
            where = f"environment variable {self.env}" if self.env else f"secret file {self.file}"
            raise ConfigError(f"{where}: {problem}", reason="invalid")
        return value

    def describe(self) -> str:
        return f"env:{self.env}" if self.env else f"file:{self.file}"

    def fix(self, reason: str | None) -> str:
        """How to provide this secret, for a problem report."""
        if reason == "invalid":
            return f"correct the secret in {self._place()}: it must have the shape named above"
        if self.env is not None:
            return (
                f"set the environment variable {self.env} for the bridge's process (the service "
                f'unit, the container, or .env); or check the structure only with "tillbridge '
                'config check --no-secrets"'
            )
        return (
            f"create the file {self.file}, readable by the user the bridge runs as, with the "
            'secret in it; or check the structure only with "tillbridge config check --no-secrets"'
        )

    def _place(self) -> str:
        return f"environment variable {self.env}" if self.env else f"the file {self.file}"


#: Standard Webhooks signing secrets: ``whsec_`` + base64 of 24 to 64 random bytes.
WHSEC_PREFIX: Final = "whsec_"
WHSEC_MIN_BYTES: Final = 24
WHSEC_MAX_BYTES: Final = 64


def decode_whsec(secret: str) -> bytes:
    """The key bytes of a ``whsec_`` secret; raises :class:`ConfigError` if it is unusable.

    The prefix is optional on input (some senders show the bare base64). The error message never
    contains the secret.
    """
    text = secret[len(WHSEC_PREFIX) :] if secret.startswith(WHSEC_PREFIX) else secret
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("webhook secret is not valid base64") from None
    if not WHSEC_MIN_BYTES <= len(key) <= WHSEC_MAX_BYTES:
        raise ConfigError(
            f"webhook secret must be {WHSEC_MIN_BYTES}..{WHSEC_MAX_BYTES} bytes, not {len(key)}"
        )
    return key


class SigningSecretRef(SecretRef):
    """A Standard Webhooks signing secret (outgoing webhooks): ``whsec_`` + base64 of 24 to 64
    bytes. ``tillbridge`` generates one with ``python -c "from tillbridge.webhooks_out.signing
    import generate_secret; print(generate_secret())"``."""

    def check(self, value: str) -> str | None:
        try:
            decode_whsec(value)
        except ConfigError as exc:
            return f"{exc.message} (expected whsec_ followed by base64 of 24 to 64 bytes)"
        return None


class Store(_Strict):
    name: str
    timezone: str = "UTC"


class Register(_Strict):
    store: Name
    terminal: Name | None = None
    #: Xentral project id or number whose POS events belong to this register.
    xentral_project: str | None = None


class Subscriber(_Strict):
    url: HttpUrl
    secret: SigningSecretRef
    events: list[str] = Field(default_factory=lambda: ["*"])


class PluginConfig(_Strict):
    """One entry of a pluggable section. ``type`` names the registry entry that validates it
    (with that entry's own model, a subclass of the section's base below) and builds it."""

    type: str


class ConnectorConfig(PluginConfig):
    """``[connectors.NAME]``: sandboxes and generic connectors."""


class TerminalConfig(PluginConfig):
    """``[terminals.NAME]``: a card terminal on the shop floor."""

    store: Name | None = None
    currency: str = "EUR"


class ProviderConfig(PluginConfig):
    """``[providers.NAME]``: an online payment provider."""


class ErpConfig(PluginConfig):
    """``[erp.NAME]``: a system where sales are recorded (a source of payments, a sink)."""


#: The sections whose entries are plugins, with the base class of their models.
PLUGIN_SECTIONS: Final = {
    "connectors": ConnectorConfig,
    "terminals": TerminalConfig,
    "providers": ProviderConfig,
    "erp": ErpConfig,
}
#: Sections whose entry names are connector names (``"connector"`` of a payment).
CONNECTOR_SECTIONS: Final = ("connectors", "terminals", "providers")


class MerchantConfig(_Strict):
    """The merchant configuration. Validate files with the model the registry builds
    (:meth:`tillbridge.app.registry.Registry.config_model`): it knows every ``type``."""

    stores: dict[Name, Store] = Field(default_factory=dict)
    registers: dict[Name, Register] = Field(default_factory=dict)
    terminals: dict[Name, TerminalConfig] = Field(default_factory=dict)
    connectors: dict[Name, ConnectorConfig] = Field(default_factory=dict)
    providers: dict[Name, ProviderConfig] = Field(default_factory=dict)
    erp: dict[Name, ErpConfig] = Field(default_factory=dict)
    subscribers: dict[Name, Subscriber] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _legacy_protocol_key(cls, data: Any) -> Any:
        """``protocol = "zvt"`` was the terminal's type key before every section used ``type``."""
        if isinstance(data, dict) and isinstance(data.get("terminals"), dict):
            terminals = {}
            for name, entry in data["terminals"].items():
                if isinstance(entry, dict) and "protocol" in entry and "type" not in entry:
                    entry = {"type": entry["protocol"], **entry}
                    del entry["protocol"]
                terminals[name] = entry
            data = {**data, "terminals": terminals}
        return data

    @model_validator(mode="after")
    def _references(self) -> MerchantConfig:
        problems: list[str] = []
        for name, reg in self.registers.items():
            if reg.store not in self.stores:
                problems.append(f"registers.{name}.store: no store named {reg.store!r}")
            if reg.terminal is not None and reg.terminal not in self.terminals:
                problems.append(f"registers.{name}.terminal: no terminal named {reg.terminal!r}")
        by_project: dict[str, str] = {}
        for name, reg in self.registers.items():
            project = reg.xentral_project
            if project is None:
                continue
            if project in by_project:
                problems.append(
                    f"registers.{name}.xentral_project: project {project!r} is already the "
                    f"register {by_project[project]}'s; a Xentral project belongs to exactly one "
                    "register (its POS events would have no single terminal)"
                )
            by_project.setdefault(project, name)
        for name, term in self.terminals.items():
            if term.store is not None and term.store not in self.stores:
                problems.append(f"terminals.{name}.store: no store named {term.store!r}")
        seen: dict[str, str] = {}
        for section in CONNECTOR_SECTIONS:
            for name in getattr(self, section):
                if name in seen:
                    problems.append(
                        f"{section}.{name}: the name is already used by {seen[name]}.{name}; a "
                        "payment names its connector, so connector names must be unique across "
                        "connectors, terminals and providers"
                    )
                seen.setdefault(name, section)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def secret_problems(self) -> list[tuple[str, str]]:
        """``(where, what)`` for every secret reference that cannot be resolved now (never the
        value): what start-up reports, part by part."""
        out: list[tuple[str, str]] = []
        for where, ref in self.secret_refs():
            try:
                ref.resolve()
            except ConfigError as exc:
                out.append((where, exc.message))
        return out

    def connector_names(self) -> list[str]:
        """Every name a payment may use as its ``connector``."""
        return sorted({*self.connectors, *self.terminals, *self.providers})

    def secret_refs(self) -> list[tuple[str, SecretRef]]:
        """Every secret reference of the file, with where it is (``erp.shop.api_key``)."""
        refs: list[tuple[str, SecretRef]] = []
        for section in (*PLUGIN_SECTIONS, "subscribers"):
            for name, item in getattr(self, section).items():
                for field_name in type(item).model_fields:
                    value = getattr(item, field_name)
                    where = f"{section}.{name}.{field_name}"
                    if isinstance(value, SecretRef):
                        refs.append((where, value))
                    elif isinstance(value, list | tuple):
                        refs.extend(
                            (f"{where}.{i}", v)
                            for i, v in enumerate(value)
                            if isinstance(v, SecretRef)
                        )
        return refs


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


def check_config(
    path: Path, model: type[MerchantConfig] = MerchantConfig, *, secrets: bool = True
) -> tuple[MerchantConfig | None, list[ConfigProblem]]:
    """Parse and validate the file with ``model``; return the config (if valid) and every
    problem found. With ``secrets`` every secret reference is resolved too (a missing one is a
    problem); without, only the structure is checked."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [
            ConfigProblem(
                None,
                "file",
                "does not exist",
                "create it (copy tillbridge.example.toml and edit it), or fix the path you gave "
                "(TILLBRIDGE_CONFIG or the command's argument)",
            )
        ]
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
        cfg = model.model_validate(data)
    except PydanticValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = _plain_loc(tuple(err["loc"]))
            where = ".".join(str(p) for p in loc) or "config"
            message, fix = _explain(err)
            problems.append(ConfigProblem(_locate(text, loc), where, message, fix))
        return None, problems
    problems = []
    for where, ref in cfg.secret_refs() if secrets else ():
        try:
            ref.resolve()
        except ConfigError as exc:
            problems.append(
                ConfigProblem(
                    _locate(text, tuple(where.split("."))),
                    where,
                    exc.message,
                    ref.fix(exc.details.get("reason")),
                )
            )
    return cfg, problems


def _plain_loc(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """Drop the union tag pydantic puts into the path of a typed entry:
    ``("terminals", "lane1", "zvt", "port")`` is ``terminals.lane1.port`` in the file."""
    if len(loc) >= 3 and loc[0] in PLUGIN_SECTIONS:
        return (*loc[:2], *loc[3:])
    return loc


def _explain(err: Any) -> tuple[str, str]:
    """A validation error in the merchant's words: what is wrong, and the fix."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "union_tag_invalid":
        known = str(ctx.get("expected_tags", "")).replace("'", "")
        return (
            f"type {ctx.get('tag')!r} is not available in this build",
            f"use one of the types this build knows: {known}"
            if known
            else "remove the section: this build has no types for it yet",
        )
    if kind == "union_tag_not_found":
        return "the entry has no type", 'add type = "..." (see the commented example config)'
    return err["msg"], _FIXES.get(kind, "correct the value as described")


def load_config(
    path: Path, model: type[MerchantConfig] = MerchantConfig, *, secrets: bool = True
) -> MerchantConfig:
    """The merchant config from ``path`` (which must exist), validated with ``model``.

    Raises :class:`ConfigError` listing every problem if the file is invalid (with ``secrets``,
    a secret that cannot be read is one).
    """
    cfg, problems = check_config(path, model, secrets=secrets)
    if problems or cfg is None:
        report = "\n".join(p.render(path) for p in problems)
        raise ConfigError(f"invalid configuration:\n{report}", problems=len(problems))
    return cfg
