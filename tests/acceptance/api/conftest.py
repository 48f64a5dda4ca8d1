"""Fixtures of the API acceptance tests (helpers live in ``api_harness``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from api_harness import Api, client_for, make_keys, make_runtime

from tillbridge.api import create_app


@pytest.fixture
async def api(db_url: str) -> AsyncIterator[Api]:
    runtime = make_runtime(db_url)
    app = create_app(runtime)
    tokens, ids = await make_keys(runtime.db)
    async with client_for(app) as client:
        yield Api(client=client, runtime=runtime, app=app, keys=tokens, key_ids=ids)
    await runtime.close()
