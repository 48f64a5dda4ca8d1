"""Fixtures of the API acceptance tests (helpers live in ``support.api``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from support.api import Api, client_for, make_keys
from tillbridge import testing
from tillbridge.api import create_app


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    runtime = testing.make_runtime(db_url)
    app = create_app(runtime)
    tokens, ids = await make_keys(runtime.db)
    async with client_for(app) as client:
        yield Api(client=client, runtime=runtime, app=app, keys=tokens, key_ids=ids)
    await runtime.close()
