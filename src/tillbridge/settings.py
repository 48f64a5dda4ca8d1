"""Process settings: where the database is, where the merchant config is, how to listen.

Read from the environment (prefix ``TILLBRIDGE_``) and a ``.env`` file in the working directory.
Built once at start-up by :func:`load_settings` and passed down; nothing reads settings at import
time. The merchant configuration (stores, terminals, providers...) lives in the TOML file named by
``TILLBRIDGE_CONFIG`` and is loaded by :mod:`tillbridge.config`.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite:///./var/tillbridge.db"


class Settings(BaseSettings):
    """Settings of one tillbridge process."""

    model_config = SettingsConfigDict(
        env_prefix="TILLBRIDGE_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = DEFAULT_DATABASE_URL
    config: Path = Path("./tillbridge.toml")
    host: str = "127.0.0.1"
    port: int = 8000
    log_format: str = Field(default="auto", pattern="^(auto|json|console)$")
    log_level: str = "info"
    #: Largest request body the API accepts, in bytes (413 above).
    max_body_bytes: int = 64 * 1024
    #: How long a stored idempotent response is replayed, in seconds.
    idempotency_ttl_s: int = 24 * 3600
    #: Days the audit log is kept before the purge job deletes entries.
    audit_retention_days: int = 400
    #: Secret values to mask wherever they appear in logs and the audit log.
    redact_values: list[SecretStr] = Field(default_factory=list)
    #: Number of jobs one worker runs concurrently.
    worker_concurrency: int = 8


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment and ``.env``, with explicit overrides on top."""
    return Settings(**overrides)  # type: ignore[arg-type]
