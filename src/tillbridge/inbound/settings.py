"""Tunables of webhook intake, from the environment (prefix ``TILLBRIDGE_WEBHOOK_``).

Kept apart from :class:`~tillbridge.settings.Settings` so the intake can be tuned without
touching the process settings; built once by the runtime, never at import time.

=====================================  =========  =================================================
variable                               default    meaning
=====================================  =========  =================================================
``TILLBRIDGE_WEBHOOK_TOLERANCE_S``     300        signed timestamp may be this far off, both ways
``TILLBRIDGE_WEBHOOK_MAX_BODY_BYTES``  65536      larger bodies get 413 (the API limit also holds)
``TILLBRIDGE_WEBHOOK_FAIL_THRESHOLD``  20         failed verifications from one address ...
``TILLBRIDGE_WEBHOOK_FAIL_WINDOW_S``   60         ... within this window turn its 401s into 429s
``TILLBRIDGE_WEBHOOK_SECRET_TTL_S``    60         resolved secrets are re-read after this long
=====================================  =========  =================================================
"""

from __future__ import annotations

from pydantic import Field
from pydantic import ValidationError as PydanticValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tillbridge.settings import settings_error


class InboundSettings(BaseSettings):
    """See the module docstring."""

    model_config = SettingsConfigDict(
        env_prefix="TILLBRIDGE_WEBHOOK_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    tolerance_s: int = Field(default=300, ge=1, le=86_400)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    fail_threshold: int = Field(default=20, ge=1)
    fail_window_s: float = Field(default=60.0, gt=0)
    secret_ttl_s: float = Field(default=60.0, ge=0)


def load_inbound_settings() -> InboundSettings:
    """The intake's settings from the environment; a bad value is a
    :class:`~tillbridge.errors.ConfigError` naming the variable (never a traceback)."""
    try:
        return InboundSettings()
    except PydanticValidationError as exc:
        raise settings_error(exc, "TILLBRIDGE_WEBHOOK_") from None
