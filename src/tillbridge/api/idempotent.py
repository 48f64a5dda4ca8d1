"""The one idempotent-create helper of every money route (payments, terminal payments, refunds).

Every route that moves money answers the same way, in this order, before any transaction:

=====  ==================================  ==================================================
400    ``idempotency_key_missing``         no ``Idempotency-Key`` header
400    ``idempotency_key_invalid``         not 1 to 255 printable ASCII characters, or a card
                                           number in it (keys are stored)
401    ``missing_api_key`` ...             (the route's auth dependency, before the body)
403    ``forbidden``                       the key lacks the write scope
415    ``unsupported_media_type``          a ``Content-Type`` that is not JSON
400    ``malformed_json``                  the body is not JSON
400    ``duplicate_json_key``              an object names a member twice (which one counts?)
422    ``validation_error``                fields invalid (per-field ``errors``)
422    route checks                        unknown connector, capability, amount rules
409    ``idempotency_key_in_progress``     the first request with this key still runs
422    ``idempotency_key_reused``          the key was used with a different request
=====  ==================================  ==================================================

The body is read and validated here (``model_validate_json``) instead of by a FastAPI body
parameter: authentication then runs *before* the body is parsed (an anonymous client learns
nothing about our validation), and parsing once in pydantic-core is cheaper. The OpenAPI request
body is declared by :func:`body_doc` and filled in by the app's ``openapi()``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

from fastapi import Request
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from tillbridge import strictjson
from tillbridge.api.problems import field_errors, problem_response, validation_response
from tillbridge.errors import DuplicateJsonKey
from tillbridge.observability.cards import has_card_data
from tillbridge.services.apikeys import ApiKey
from tillbridge.services.idempotency import (
    IdempotencyScope,
    StoredResponse,
    request_hash,
    run_idempotent,
)

JSON: Final = "application/json"
# Printable ASCII, 1-255 characters (Starlette has already stripped surrounding whitespace).
_IDEMPOTENCY_KEY_RE: Final = re.compile(r"^[\x20-\x7e]{1,255}$")

#: Request-body models declared with :func:`body_doc`, added to the OpenAPI components.
BODY_MODELS: Final[dict[str, type[BaseModel]]] = {}

M = TypeVar("M", bound=BaseModel)

IDEMPOTENCY_KEY_DOC: Final = (
    "Required. 1-255 printable ASCII characters, unique per intent. A repeat within 24 h "
    "replays the first response (header `Idempotent-Replayed`)."
)


#: The header as the OpenAPI document declares it: required, 1-255 printable ASCII characters.
#: (The route reads it itself, so a missing or invalid one is our 400, not FastAPI's 422.)
IDEMPOTENCY_KEY_SCHEMA: Final = {
    "type": "string",
    "minLength": 1,
    "maxLength": 255,
    "pattern": "^[\\x20-\\x7e]+$",
}


def document_idempotency_key(schema: dict[str, Any]) -> None:
    """Mark every ``Idempotency-Key`` header parameter of ``schema`` required, with its rules."""
    for item in schema.get("paths", {}).values():
        for op in item.values():
            for param in op.get("parameters", ()):
                if param.get("in") == "header" and param.get("name") == "Idempotency-Key":
                    param["required"] = True
                    param["schema"] = {**IDEMPOTENCY_KEY_SCHEMA, "title": "Idempotency-Key"}


def body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` declaring ``model`` as the route's required JSON body."""
    BODY_MODELS[model.__name__] = model
    return {
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


def is_json_media(content_type: str | None) -> bool:
    if not content_type:
        return True  # lenient: a client that sends JSON without saying so still works
    media = content_type.split(";", 1)[0].strip().lower()
    return media == JSON or (media.startswith("application/") and media.endswith("+json"))


async def validated_body(request: Request, model: type[M]) -> M | Response:
    """The request's JSON body validated as ``model``, or the problem to answer: 415 for a
    media type that is not JSON, 400 for a body that is not JSON or names a member twice
    (``{"amount": 100, "amount": 200}`` is refused, never read as 200), 422 per field."""
    if not is_json_media(request.headers.get("content-type")):
        return problem_response(415, "unsupported_media_type", "Send the body as application/json.")
    raw = await request.body()
    try:
        strictjson.check(raw)
    except DuplicateJsonKey as exc:
        return problem_response(
            400,
            "duplicate_json_key",
            f"The request body is ambiguous: {exc}. Send every member once.",
            extra={"member": exc.key[:60]},
        )
    except ValueError:
        return problem_response(400, "malformed_json", "The request body is not valid JSON.")
    try:
        return model.model_validate_json(raw)
    except PydanticValidationError as exc:
        return validation_response(field_errors(exc.errors(include_input=False)))


def json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(body, status_code=status, media_type=JSON, headers=headers)


def actor_of(key: ApiKey) -> str:
    """Who the audit log names for a change made through the API."""
    return f"api_key:{key.id}"


async def idempotent_create(
    request: Request,
    key: ApiKey,
    idempotency_key: str | None,
    model: type[M],
    work: Callable[[AsyncConnection, M], Awaitable[StoredResponse]],
    *,
    check: Callable[[M], None] | None = None,
) -> Response:
    """Validate the request (see the module docstring), then run ``work`` at most once per key.

    ``check`` raises for a request that can never succeed (a 4xx before any transaction);
    ``work`` runs in the transaction that claims the key and returns the response to store and
    replay. It must only write through its connection (persist, and let a job send).
    """
    if idempotency_key is None:
        return problem_response(
            400, "idempotency_key_missing", "The Idempotency-Key header is required."
        )
    if not _IDEMPOTENCY_KEY_RE.match(idempotency_key):
        return problem_response(
            400,
            "idempotency_key_invalid",
            "The Idempotency-Key header must be 1 to 255 printable ASCII characters.",
        )
    if has_card_data(idempotency_key):
        return problem_response(
            400,
            "idempotency_key_invalid",
            "The Idempotency-Key header looks like it holds a card number; keys are stored, "
            "card numbers never are: use an order or register reference instead.",
        )
    body = await validated_body(request, model)
    if isinstance(body, Response):
        return body
    if check is not None:
        check(body)
    rt = request.app.state.runtime
    path = request.url.path
    scope = IdempotencyScope(
        api_key_id=key.id,
        key=idempotency_key,
        method=request.method,
        path=path,
        request_hash=request_hash(request.method, path, body.model_dump(mode="json")),
    )

    async def run(conn: AsyncConnection) -> StoredResponse:
        return await work(conn, body)

    stored, replayed = await run_idempotent(
        rt.db, scope, run, now=rt.payments.clock(), ttl_s=rt.settings.idempotency_ttl_s
    )
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return json_response(stored.body, stored.status_code, headers)
