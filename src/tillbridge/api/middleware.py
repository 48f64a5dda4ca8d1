"""The one ASGI middleware of the API: request id, body limit, metrics, last-resort 500.

It is plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: that one runs the app in a
separate task (contextvars bound here would not reach the endpoint) and costs a noticeable
share of a request's time on the hot path.

Per HTTP request it:

1. takes the request id from ``X-Request-Id`` (if it looks like an id: up to 128 characters of
   ``[A-Za-z0-9._:-]``) or generates one, binds it into structlog's contextvars for every log
   line of the request, and echoes it back in ``X-Request-Id``;
2. enforces ``max_body_bytes`` while the body streams in: a declared ``Content-Length`` above
   the limit is answered 413 before reading anything, and a body that turns out larger than
   the limit (a lying or missing ``Content-Length``, chunked uploads) raises :class:`BodyTooLarge`
   from ``receive()`` the moment the limit is crossed, which the problem handlers turn into 413;
3. observes method, route template (never the raw path: ids would explode the label set),
   status and duration through the ``observe`` callback;
4. turns any exception that escaped every handler into a generic 500 problem, logged with the
   request id (never the headers: they carry the API key).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from typing import Final

import structlog
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tillbridge.api.problems import internal_error_response, problem_response

log = structlog.get_logger("tillbridge.api")

_REQUEST_ID_RE: Final = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")
UNMATCHED_ROUTE: Final = "<unmatched>"

#: ``observe(method, route_template, status, seconds)``: where request metrics go.
Observer = Callable[[str, str, int, float], None]


class BodyTooLarge(StarletteHTTPException):
    """The request body crossed ``max_body_bytes`` while streaming in.

    An ``HTTPException`` on purpose: FastAPI re-raises those from body parsing instead of
    wrapping them into a 400, so the problem handler answers 413.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body exceeds the limit of {limit} bytes.")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/v1/payments/{payment_id}``) or ``<unmatched>``."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class RequestContextMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, observe: Observer | None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        raw_id = _header(scope, b"x-request-id")
        if raw_id is not None and _REQUEST_ID_RE.match(raw_id):
            request_id = raw_id.decode("ascii")
        else:
            request_id = uuid.uuid4().hex
        id_header = (b"x-request-id", request_id.encode("ascii"))
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = int(message["status"])
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        limit = self.max_body_bytes
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            declared = _header(scope, b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit:
                # Refuse before reading a byte; the client learns the limit.
                await problem_response(
                    413,
                    "payload_too_large",
                    f"The request body exceeds the limit of {limit} bytes.",
                )(scope, receive, send_with_id)
            else:
                await self.app(scope, receive_limited, send_with_id)
        except BodyTooLarge as exc:
            # Normally answered by the problem handler inside the app; this catches a body read
            # outside FastAPI's handlers (a bare ASGI route, a streaming reader).
            if response_started:
                raise
            await problem_response(413, "payload_too_large", str(exc.detail))(
                scope, receive, send_with_id
            )
        except Exception:
            log.exception(
                "api.unhandled_error", method=scope["method"], route=route_template(scope)
            )
            if response_started:
                raise  # too late for a problem response: let the server drop the connection
            await internal_error_response()(scope, receive, send_with_id)
        finally:
            if self.observe is not None:
                self.observe(
                    scope["method"],
                    route_template(scope),
                    status,
                    time.perf_counter() - started_at,
                )
            structlog.contextvars.reset_contextvars(**tokens)
