"""Fixtures of the outgoing webhook tests: the webhook bridge (``support.webhooks``)."""

from __future__ import annotations

from support.webhooks import bridge  # noqa: F401 - the fixture, shared with the other webhook dirs
