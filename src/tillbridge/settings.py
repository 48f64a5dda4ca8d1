"""Process settings: where the database is, where the merchant config is, how to listen.

Read from the environment (prefix ``TILLBRIDGE_``) and a ``.env`` file in the working directory.
Built once at start-up by :func:`load_settings` and passed down; nothing reads settings at import
time. The merchant configuration (stores, terminals, providers...) lives in the TOML file named by
``TILLBRIDGE_CONFIG`` and is loaded by :mod:`tillbridge.config`.

Every value is checked when it is read (a port is 0 to 65535, a log format one of three, a body
limit and a worker concurrency positive, the database SQLite or PostgreSQL). A bad value is a
:class:`~tillbridge.errors.ConfigError` that names the variable, what it holds and what it must
be (:func:`settings_error`), never a traceback; ``tillbridge config check`` reports it too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tillbridge.errors import ConfigError

DEFAULT_DATABASE_URL = "sqlite:///./var/tillbridge.db"
#: The merchant configuration file when ``TILLBRIDGE_CONFIG`` is not set. Only this one may be
#: absent (the bridge then runs on the built-in sandbox); a file named on purpose must exist.
DEFAULT_CONFIG_PATH = Path("./tillbridge.toml")
#: Database URL schemes the bridge runs on (drivers: its own SQLite driver, psycopg 3).
DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "postgresql+psycopg")


class Settings(BaseSettings):
    """Settings of one tillbridge process."""

    model_config = SettingsConfigDict(
        env_prefix="TILLBRIDGE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    config: Path = DEFAULT_CONFIG_PATH
    host: str = Field(default="127.0.0.1", min_length=1)
    #: 0 asks for any free port (``serve`` prints the one it got).
    port: int = Field(default=8000, ge=0, le=65535)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    #: Largest request body the API accepts, in bytes (413 above).
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    #: How long a stored idempotent response is replayed, in seconds.
    idempotency_ttl_s: int = Field(default=24 * 3600, ge=60, le=30 * 24 * 3600)
    #: Days the audit log is kept before the purge job deletes entries.
    audit_retention_days: int = Field(default=400, ge=1)
    #: Secret values to mask wherever they appear in logs and the audit log.
    redact_values: list[SecretStr] = Field(default_factory=list)
    #: Number of jobs one worker runs concurrently.
    worker_concurrency: int = Field(default=8, ge=1, le=256)

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        scheme = value.split("://", 1)[0].lower() if "://" in value else ""
        if scheme not in DATABASE_SCHEMES:
            raise ValueError(
                "use sqlite:///path/to/file.db or postgresql://user:password@host:5432/db "
                f"(not {scheme + '://' if scheme else 'a URL without a scheme'})"
            )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def config_is_default(self) -> bool:
        """True when ``TILLBRIDGE_CONFIG`` names nothing but the default path."""
        return self.config == DEFAULT_CONFIG_PATH


def settings_error(
    exc: PydanticValidationError, prefix: str, secret_fields: frozenset[str] = frozenset()
) -> ConfigError:
    """One :class:`ConfigError` for every bad setting: ``PREFIX_NAME=value: what; fix``.

    The value is shown (it is what the operator typed), except for ``secret_fields``.
    """
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        variable = f"{prefix}{field.upper()}"
        shown = "" if field in secret_fields else f"={_shown(err.get('input'))}"
        lines.append(f"{variable}{shown}: {_plain(err)}")
    noun = "setting is" if len(lines) == 1 else "settings are"
    return ConfigError(
        f"{len(lines)} {noun} not valid:\n  " + "\n  ".join(lines),
        problems=lines,
    )


_URL_PASSWORD = re.compile(r"(://[^/@:]*:)[^/@]*@")


def _shown(value: Any) -> str:
    if isinstance(value, Mapping) or value is None:
        return "(unset)"
    text = _URL_PASSWORD.sub(r"\1***@", str(value))  # a database URL's password stays hidden
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(err: Mapping[str, Any]) -> str:
    message = str(err.get("msg", "invalid"))
    return message.removeprefix("Value error, ")


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment and ``.env``, with explicit overrides on top.

    Raises :class:`~tillbridge.errors.ConfigError` naming every bad variable.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except PydanticValidationError as exc:
        raise settings_error(exc, "TILLBRIDGE_", frozenset({"redact_values"})) from None
