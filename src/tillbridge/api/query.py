"""Unknown query parameters are refused, as unknown body fields are: a typo must not be dropped.

``GET /v1/webhooks/inbox?stauts=dead`` used to list every entry, and ``?before_id=...`` (a
parameter of an older version) was silently ignored. :func:`refuse_unknown_query` is a
dependency of every API route: on ``/v1/...`` a query parameter the route does not declare is a
422 ``validation_error`` whose field error names it (type ``extra_forbidden``), like an unknown
body field. The operational routes (``/healthz``, ``/readyz``, ``/metrics``) stay lenient: a
monitoring system's cache-buster must not fail a probe. The webhook intake is a plain route and
takes no query parameters anyway.
"""

from __future__ import annotations

from typing import Final

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError

_KNOWN: Final[dict[int, frozenset[str]]] = {}


def _query_names(dependant: Dependant) -> frozenset[str]:
    names: set[str] = set()
    todo = [dependant]
    while todo:
        current = todo.pop()
        names.update(field.alias for field in current.query_params)
        todo.extend(current.dependencies)
    return frozenset(names)


async def refuse_unknown_query(request: Request) -> None:
    """Raise a 422 for any query parameter the matched route does not declare."""
    if not request.query_params or not request.url.path.startswith("/v1/"):
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if not isinstance(dependant, Dependant):
        return
    known = _KNOWN.get(id(dependant))
    if known is None:
        known = _KNOWN.setdefault(id(dependant), _query_names(dependant))
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise RequestValidationError(
            [
                {
                    "loc": ("query", name),
                    "msg": "Unknown query parameter"
                    + (f"; this route takes {', '.join(sorted(known))}" if known else ""),
                    "type": "extra_forbidden",
                }
                for name in unknown
            ]
        )
