"""The HTTP API: FastAPI routers that call the services. Build it with :func:`create_app`."""

from __future__ import annotations

from tillbridge.api.app import create_app

__all__ = ["create_app"]
