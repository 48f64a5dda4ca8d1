"""The one exception tree: every exception class lives in ``tillbridge.errors``, and its
docstring draws the whole hierarchy as it really is."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import tillbridge
from tillbridge import errors

#: Exceptions that stay where they are, and why.
ALLOWED_ELSEWHERE = {
    # A Starlette HTTPException (the body limit), raised and answered inside the ASGI layer;
    # errors.py must not import the web framework.
    "tillbridge.api.middleware.BodyTooLarge",
    # Private control flow of a simulator; simulators are never imported by production code.
    "tillbridge.simulators.zvt.session._Cut",
}


def _public_classes() -> dict[str, type[BaseException]]:
    return {
        name: obj
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
        and not name.startswith("_")
    }


def _drawn_tree() -> dict[str, str]:
    """child -> parent, as drawn in the module docstring."""
    doc = errors.__doc__ or ""
    parents: dict[str, str] = {}
    stack: list[str] = ["Exception"]
    for line in doc.splitlines():
        m = re.search(r"[├└]── (\w+)", line)
        if m is None:
            continue
        depth = m.start() // 4  # every level indents by four characters
        del stack[depth:]
        parents[m[1]] = stack[-1]
        stack.append(m[1])
    return parents


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(tillbridge.__path__, "tillbridge."):
        if ".migrations." in info.name or info.name.endswith("__main__"):
            continue
        names.append(info.name)
    return names


def test_no_exception_class_is_defined_outside_errors() -> None:
    elsewhere = set()
    for name in _modules():
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (
                inspect.isclass(obj)
                and issubclass(obj, BaseException)
                and obj.__module__ == name
                and name != errors.__name__
            ):
                elsewhere.add(f"{name}.{obj.__qualname__}")
    assert elsewhere == ALLOWED_ELSEWHERE


def test_the_docstring_draws_every_class_under_its_real_parent() -> None:
    drawn = _drawn_tree()
    classes = _public_classes()
    assert set(drawn) == set(classes)
    for name, cls in classes.items():
        bases = [b for b in cls.__bases__ if b.__name__ in classes or b is Exception]
        # The private helper base of the two roots is not a branch: they hang off Exception.
        real_parent = bases[0].__name__ if bases else "Exception"
        assert drawn[name] == real_parent, name


def test_job_signals_leave_the_http_tree() -> None:
    for signal in (errors.RetryLater, errors.PermanentFailure):
        assert issubclass(signal, errors.JobSignal)
        assert not issubclass(signal, errors.BridgeError)
        assert not hasattr(signal, "http_status")
    assert not issubclass(errors.JobSignal, errors.BridgeError)


@pytest.mark.parametrize(
    "cls",
    [c for c in _public_classes().values() if c not in (errors.TooManyFailures,)],
)
def test_each_docstring_is_the_default_message(cls: type[BaseException]) -> None:
    first_line = (cls.__doc__ or "").strip().splitlines()[0]
    if cls is errors.SignatureRejected:  # one public message for every cause
        exc = cls("reason")
        assert exc.message == errors.SIGNATURE_REJECTED_MESSAGE  # type: ignore[attr-defined]
        return
    assert cls().message == first_line  # type: ignore[attr-defined]


# (class, code, HTTP status) of the leaves that moved here: unchanged by the move.
MOVED = [
    ("JobNotFound", "job_not_found", 404),
    ("JobStateError", "job_state", 409),
    ("LeaseLost", "lease_lost", 409),
    ("UnknownJobKind", "unknown_job_kind", 409),
    ("UnknownEndpoint", "unknown_webhook_endpoint", 404),
    ("EmptyBody", "empty_body", 400),
    ("MalformedBody", "malformed_body", 400),
    ("UnsupportedMediaType", "unsupported_media_type", 415),
    ("TooManyFailures", "too_many_failures", 429),
    ("InboxNotFound", "inbox_not_found", 404),
    ("InboxBusy", "inbox_busy", 409),
    ("LinkClosed", "zvt_link_closed", 502),
    ("LinkTimeout", "zvt_link_timeout", 502),
    ("FrameRejected", "zvt_frame_rejected", 503),
    ("AckMissing", "zvt_ack_missing", 502),
    ("SignatureRejected", "bad_signature", 401),
    ("DeliveryNotFound", "delivery_not_found", 404),
    ("SubscriberNotFound", "subscriber_not_found", 404),
    ("DeliveryBusy", "delivery_busy", 409),
    ("SubscriberDisabled", "subscriber_disabled", 409),
    ("XentralUnavailable", "xentral_unavailable", 503),
    ("RateLimited", "rate_limited", 503),
]


@pytest.mark.parametrize(("name", "code", "status"), MOVED)
def test_moved_leaves_keep_their_code_and_status(name: str, code: str, status: int) -> None:
    cls = getattr(errors, name)
    assert (cls.code, cls.http_status) == (code, status)


def test_job_signals_keep_their_codes_and_arguments() -> None:
    later = errors.RetryLater("429", after=120, count_attempt=False, status=429)
    assert (later.code, later.after, later.count_attempt) == ("retry_later", 120, False)
    assert later.details == {"status": 429} and str(later) == "429"
    assert errors.PermanentFailure().code == "permanent_failure"


def test_an_invalid_policy_is_a_config_error_and_a_value_error() -> None:
    assert issubclass(errors.InvalidPolicy, errors.ConfigError)
    assert issubclass(errors.InvalidPolicy, ValueError)
