"""Every error the API answers is ``application/problem+json`` (RFC 9457).

A problem has ``type``, ``title``, ``status``, ``detail`` and our stable ``code``; validation
problems add ``errors``, one entry per field with where it was (``in``: body, query, header,
path), the field path (``field``, dotted) and a JSON pointer into the body (``pointer``).

The handlers registered by :func:`install_handlers` cover, in this order of specificity:
:class:`~tillbridge.errors.BridgeError` (status and code from the class),
FastAPI's :class:`RequestValidationError`, Starlette's ``HTTPException`` (unknown routes,
wrong methods, the body limit), and anything else (500 with a generic message; the exception is
logged with the request id but never shown to the client).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from tillbridge.errors import (
    AuthError,
    BridgeError,
    Forbidden,
    SchemaOutOfDate,
    SecretUnavailable,
    StoreError,
)

log = structlog.get_logger("tillbridge.api")

PROBLEM_JSON: Final = "application/problem+json"
# Not a locator on purpose: no documentation site is promised. The stable part is ``code``.
TYPE_BASE: Final = "urn:tillbridge:problem:"
#: Seconds a client should wait before retrying when the database is unavailable.
RETRY_AFTER_STORE_S: Final = 2
RETRY_AFTER_SCHEMA_S: Final = 30

# Codes for the HTTP errors Starlette raises itself (routing, body limit).
_HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response of the API carries them."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response:
    """Build a problem+json response; ``extra`` becomes extension members."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + code,
        "title": _title(status),
        "status": status,
        "detail": detail,
        "code": code,
    }
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    if errors is not None:
        body["errors"] = list(errors)
    content = json.dumps(body, separators=(",", ":"), default=str).encode()
    return Response(content, status_code=status, media_type=PROBLEM_JSON, headers=headers)


#: Titles as RFC 9110 names the statuses, fixed here: Python's own phrases changed between
#: versions ("Unprocessable Entity" became "Unprocessable Content" in 3.13), and what the server
#: sends must not depend on the interpreter it runs on.
_TITLES: Final = {
    413: "Content Too Large",
    422: "Unprocessable Content",
}


def _title(status: int) -> str:
    if status in _TITLES:
        return _TITLES[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _jsonable_details(details: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in details.items():
        if isinstance(v, list | tuple | frozenset) and all(isinstance(i, str | int) for i in v):
            out[k] = sorted(v) if isinstance(v, frozenset) else list(v)
        else:
            out[k] = v if isinstance(v, str | int | float | bool) or v is None else str(v)
    return out


def bridge_error_response(exc: BridgeError) -> Response:
    """Map a :class:`BridgeError` by its ``http_status`` and ``code``.

    The ``details`` of 4xx errors are shown (they are evidence for the client: current state,
    payment id); those of 5xx errors are not (they may carry driver messages or hostnames).
    """
    status = exc.http_status
    headers: dict[str, str] = {}
    if isinstance(exc, Forbidden):
        scope = exc.details.get("scope")
        headers["WWW-Authenticate"] = 'Bearer error="insufficient_scope"' + (
            f', scope="{scope}"' if scope else ""
        )
    elif isinstance(exc, AuthError):
        headers["WWW-Authenticate"] = 'Bearer realm="tillbridge"'
    elif isinstance(exc, StoreError):
        wait = RETRY_AFTER_SCHEMA_S if isinstance(exc, SchemaOutOfDate) else RETRY_AFTER_STORE_S
        headers["Retry-After"] = str(wait)
    elif isinstance(exc, SecretUnavailable):
        headers["Retry-After"] = str(RETRY_AFTER_SCHEMA_S)  # until the operator provides it
    extra = {"details": _jsonable_details(exc.details)} if status < 500 and exc.details else None
    return problem_response(status, exc.code, exc.message, headers=headers, extra=extra)


def field_errors(
    errors: Iterable[Mapping[str, Any]], *, default_in: str = "body"
) -> list[dict[str, Any]]:
    """Turn pydantic / FastAPI error dicts into problem ``errors`` entries (never echo input)."""
    out: list[dict[str, Any]] = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        where = default_in
        if loc and loc[0] in ("body", "query", "header", "path", "cookie"):
            where, loc = loc[0], loc[1:]
        entry: dict[str, Any] = {
            "in": where,
            "field": ".".join(loc),
            "message": str(err.get("msg", "invalid")),
            "type": str(err.get("type", "invalid")),
        }
        if where == "body":
            entry["pointer"] = "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in loc)
        out.append(entry)
    return out


def validation_response(errors: list[dict[str, Any]]) -> Response:
    """422 with field errors, or 400 if the body is not JSON at all."""
    if any(e["type"] == "json_invalid" for e in errors):
        return problem_response(400, "malformed_json", "The request body is not valid JSON.")
    n = len(errors)
    detail = f"The request has {n} invalid field{'s' if n != 1 else ''}."
    return problem_response(422, "validation_error", detail, errors=errors)


def _allowed_methods(request: Request) -> str:
    # Starlette's 405 names only the first route that matched the path; a client deserves
    # every method the path supports. ``app.state.route_methods`` is set by create_app.
    path = request.url.path
    table: list[tuple[re.Pattern[str], set[str]]] = getattr(request.app.state, "route_methods", [])
    methods = {m for regex, ms in table if regex.match(path) for m in ms}
    return ", ".join(sorted(methods))


def install_handlers(app: FastAPI) -> None:
    """Register the problem+json handlers on ``app``."""

    async def on_bridge_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BridgeError)
        if exc.http_status >= 500:
            log.warning("api.bridge_error", code=exc.code, error=exc.message)
        return bridge_error_response(exc)

    async def on_validation(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return validation_response(field_errors(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
        headers = dict(exc.headers or {})
        if exc.status_code == 404 and detail == "Not Found":
            detail = "No such resource."
        elif exc.status_code == 405:
            if detail == "Method Not Allowed":
                detail = "This resource does not support that method."
            headers["Allow"] = _allowed_methods(request) or headers.get("Allow", "")
        return problem_response(exc.status_code, code, detail, headers=headers)

    app.add_exception_handler(BridgeError, on_bridge_error)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def internal_error_response() -> Response:
    """The 500 answer for anything unexpected: generic on purpose (details are in the log)."""
    return problem_response(
        500, "internal_error", "An unexpected error occurred; it has been logged."
    )


def problem_doc(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the given statuses (see :func:`patch_openapi`)."""
    return {s: {"model": Problem, "description": _title(s)} for s in statuses}


#: What every authenticated operation can answer whatever it does: no or a bad key (401), a key
#: without the scope (403), the database unreachable while checking the key (503).
AUTHENTICATED_STATUSES: Final = (401, 403, 503)


def patch_openapi(schema: dict[str, Any]) -> dict[str, Any]:
    """Document every 4xx/5xx response as ``application/problem+json`` with :class:`Problem`.

    FastAPI files a response model under the route's media type (``application/json``) and adds
    its own ``HTTPValidationError`` for 422; both are rewritten here so the document says what
    the server really sends. Every operation with a security requirement also documents
    :data:`AUTHENTICATED_STATUSES`, and every operation with parameters or a body its 422 (an
    unknown query parameter is one), so no route can forget them.
    """
    ref = {"$ref": "#/components/schemas/Problem"}
    for item in schema.get("paths", {}).values():
        for op in item.values():
            responses = op.setdefault("responses", {})
            implied: list[int] = []
            if op.get("security"):
                implied.extend(AUTHENTICATED_STATUSES)
            if op.get("parameters") or op.get("requestBody"):
                implied.append(422)
            for status in implied:
                responses.setdefault(str(status), {"description": _title(status)})
            for status, resp in responses.items():
                if str(status)[0] in "45":
                    resp["content"] = {PROBLEM_JSON: {"schema": ref}}
    comps = schema.setdefault("components", {}).setdefault("schemas", {})
    comps.setdefault(
        "Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    )
    for unused in ("HTTPValidationError", "ValidationError"):
        comps.pop(unused, None)
    return schema
