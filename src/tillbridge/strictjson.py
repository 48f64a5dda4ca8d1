"""JSON as a money API must read it: a duplicate member name or a non-finite number is an error.

Python's :func:`json.loads` (and pydantic's parser) let the last of two equal names win, so
``{"amount": 100, "amount": 200}`` silently means 200, and another parser on the way (a proxy,
a log pipeline, the client's own test) may read 100. RFC 8259 leaves duplicate names undefined;
on anything that moves money the only safe answer is to refuse them. :func:`check` raises
:class:`~tillbridge.errors.DuplicateJsonKey` (also a ``ValueError``) naming the member, and
also refuses ``NaN`` and ``Infinity``, which are not JSON at all.

Used by the API's body parsing (400 ``duplicate_json_key``) and by the webhook intake on a
verified body (400 ``malformed_body``).
"""

from __future__ import annotations

import json
from typing import Any

from tillbridge.errors import DuplicateJsonKey


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateJsonKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def loads(data: str | bytes) -> Any:
    """:func:`json.loads` that refuses duplicate member names and ``NaN`` / ``Infinity``."""
    return json.loads(data, object_pairs_hook=_pairs, parse_constant=_no_constant)


def check(data: str | bytes) -> None:
    """Raise ``ValueError`` unless ``data`` is JSON without duplicate member names (a repeated
    name: :class:`~tillbridge.errors.DuplicateJsonKey`)."""
    loads(data)
