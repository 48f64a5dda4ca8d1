"""The API does what its own OpenAPI document says (issue 13.4): schemathesis over every operation.

schemathesis reads ``/openapi.json`` from the app in-process (ASGI), generates valid and invalid
requests for every operation, sends them with an admin key, and checks each answer: no server
error, a status code the document lists, the documented media type, headers and body schema.
The run is bounded (examples per operation, deterministic, no example database) so it stays a
few tens of seconds inside ``make test``; it runs on SQLite, the API being the same on both
engines (the engines are covered by every other API test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.config._auth import OpenAPIAuthConfig
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from support.api import make_keys
from support.webhooks import XENTRAL_KEY, XENTRAL_TOKEN, make_config
from tillbridge import testing
from tillbridge.api import create_app
from tillbridge.app.runtime import Runtime
from tillbridge.connectors.terminals.sandbox import SandboxTerminalConfig
from tillbridge.store.db import Database
from tillbridge.store.migrate import upgrade

#: Examples per operation and generation mode; with ~25 operations this is a few thousand calls.
MAX_EXAMPLES = 40

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    missing_required_header,
    unsupported_method,
]


@pytest.fixture(scope="module")
def bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, str]]:
    import os

    os.environ.setdefault("TB_TEST_XENTRAL_TOKEN", XENTRAL_TOKEN)
    os.environ.setdefault("TB_TEST_XENTRAL_KEY", XENTRAL_KEY)
    url = f"sqlite:///{tmp_path_factory.mktemp('openapi') / 'tillbridge.db'}"
    upgrade(url)  # migrated, so /readyz is ready
    admin = asyncio.run(_admin_key(url))
    config = make_config().model_copy(
        update={"terminals": {"lane1": SandboxTerminalConfig(store="shop")}}
    )
    runtime = testing.make_runtime(url, config)
    app = create_app(runtime)
    yield app, admin
    # schemathesis serves every ASGI request on one event loop thread; the runtime's database
    # connections live there, so it is closed there too.
    schemathesis_asgi._get_portal().call(_close, runtime)


async def _admin_key(url: str) -> str:
    db = Database(url)
    try:
        tokens, _ids = await make_keys(db)
    finally:
        await db.dispose()
    return tokens["admin"]


async def _close(runtime: Runtime) -> None:
    await runtime.close()


def _document() -> dict[str, Any]:
    """The app's own OpenAPI document. It depends on the routes only, not on a database, so it
    is read from an app around a stand-in runtime (nothing here is ever called)."""
    stand_in: Any = SimpleNamespace(db=None, settings=SimpleNamespace(max_body_bytes=65536))
    document: dict[str, Any] = create_app(stand_in).openapi()
    return document


CONFIG = SchemathesisConfig.from_dict(
    {"generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"}}
)
schema = schemathesis.openapi.from_dict(_document(), config=CONFIG)


@schema.parametrize()
def test_every_operation_answers_as_documented(case: Any, bridge: tuple[FastAPI, str]) -> None:
    app, admin = bridge
    # The document's own security scheme carries the key, so schemathesis knows when a request
    # it generates lacks it on purpose (and then expects the 401).
    schema.config.auth.openapi = OpenAPIAuthConfig(schemes={"HTTPBearer": {"bearer": admin}})
    case.call_and_validate(app=app, checks=CHECKS)
