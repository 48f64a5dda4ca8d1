"""The error codes in docs/api.md are the ones the code sends (issue 13.18): no drift.

The codes are read from the source itself: every class of the exception tree, every
``code="..."`` given to one where it is raised, every ``problem_response(status, "code", ...)``
and the HTTP layer's own codes. Codes that never reach an HTTP client are listed below with the
reason; every other one must be in the table of docs/api.md with its status, and the table must
hold nothing else. The other pages' "`404 unknown_terminal`" mentions and every example title
are checked too.
"""

from __future__ import annotations

import ast
import inspect
import re
from http import HTTPStatus
from pathlib import Path

import pytest

from tillbridge import errors
from tillbridge.api import problems

ROOT = Path(__file__).resolve().parents[3]
SRC = ROOT / "src" / "tillbridge"
DOCS = ROOT / "docs"

#: Codes that exist but are never an HTTP answer, and why.
NOT_HTTP: dict[str, str] = {
    # branches of the tree: their leaves carry the codes clients see
    "bridge_error": "branch",
    "domain_error": "branch",
    "idempotency_error": "branch",
    "queue_error": "branch",
    "store_error": "branch",
    "unauthorized": "branch",
    "transport_error": "branch",
    # raised inside jobs and workers: they end as a payment's outcome, a retry or a dead job
    "lease_lost": "worker",
    "unknown_job_kind": "worker",
    "declined": "connector outcome",
    "terminal_busy": "connector outcome",
    "not_sent": "connector outcome",
    "outcome_unknown": "connector outcome",
    "circuit_open": "outbound client",
    "rate_limited": "outbound client",
    "xentral_unavailable": "write-back job",
    "protocol_error": "terminal protocol",
    # command line only
    "job_not_found": "tillbridge jobs",
    "job_state": "tillbridge jobs",
    "api_key_not_found": "tillbridge apikey revoke",
    "invalid_name": "tillbridge apikey create",
    "unknown_scope": "tillbridge apikey create",
    "not_unknown": "tillbridge payments resolve",
    # configuration, refused before anything serves
    "config_error": "start-up",
    "invalid_policy": "start-up",
    # the HTTP layer's fallback for a status it has no code for (none today)
    "http_error": "fallback",
}


def _bridge_classes() -> dict[str, type[errors.BridgeError]]:
    return {
        name: cls
        for name, cls in vars(errors).items()
        if inspect.isclass(cls) and issubclass(cls, errors.BridgeError)
    }


def codes_in_source() -> dict[str, set[int]]:
    """code -> the statuses it is sent with, read from the source."""
    classes = _bridge_classes()
    found: dict[str, set[int]] = {}
    for cls in classes.values():
        found.setdefault(cls.code, set()).add(cls.http_status)
    for status, code in problems._HTTP_CODES.items():
        found.setdefault(code, set()).add(status)
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(("simulators/", "store/migrations/")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            args = node.args
            if name == "problem_response" and len(args) >= 2:
                if isinstance(args[0], ast.Constant) and isinstance(args[1], ast.Constant):
                    found.setdefault(str(args[1].value), set()).add(int(args[0].value))
            for kw in node.keywords:
                if kw.arg == "code" and isinstance(kw.value, ast.Constant) and name in classes:
                    found.setdefault(str(kw.value.value), set()).add(classes[name].http_status)
    # Terminal protocol details (zvt_*) stay inside the connector: they end as outcomes.
    return {c: s for c, s in found.items() if not c.startswith("zvt_")}


def documented() -> dict[str, int]:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    table = text.split("<!-- error-codes:start -->", 1)[1].split("<!-- error-codes:end -->", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| (\d{3}) \|", table, re.MULTILINE)
    assert rows, "the error-code table of docs/api.md is missing"
    out: dict[str, int] = {}
    for code, status in rows:
        assert code not in out, f"{code} is listed twice"
        out[code] = int(status)
    return out


def test_the_table_lists_every_code_the_api_sends_and_nothing_else() -> None:
    source = codes_in_source()
    api = {c: s for c, s in source.items() if c not in NOT_HTTP}
    table = documented()
    missing = sorted(set(api) - set(table))
    extra = sorted(set(table) - set(api))
    assert not missing, f"codes the server sends that docs/api.md does not list: {missing}"
    assert not extra, f"codes docs/api.md lists that the server never sends: {extra}"
    for code, status in table.items():
        assert status in api[code], f"{code}: documented as {status}, sent as {sorted(api[code])}"
    stale = sorted(set(NOT_HTTP) - set(source) - {"http_error"})
    assert not stale, f"NOT_HTTP names codes that no longer exist: {stale}"


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_status_and_code_mentions_in_the_docs_are_real(page: str) -> None:
    source = codes_in_source()
    text = (DOCS / page).read_text(encoding="utf-8")
    for status, code in re.findall(r"`(\d{3}) ([a-z][a-z_]+)`", text):
        assert code in source, f"{page}: `{status} {code}` is not a code the bridge has"
        assert int(status) in source[code], f"{page}: `{status} {code}` is sent as {source[code]}"


def test_titles_in_examples_are_what_the_server_sends() -> None:
    for page in DOCS.glob("*.md"):
        text = page.read_text(encoding="utf-8")
        for title, status in re.findall(r'"title": "([^"]+)",\s*"status": (\d{3})', text):
            assert title == problems._title(int(status)), (page.name, title, status)
    # and they do not depend on the Python version the bridge runs on
    assert problems._title(422) == "Unprocessable Content"
    assert problems._title(413) == "Content Too Large"
    assert problems._title(404) == HTTPStatus(404).phrase
