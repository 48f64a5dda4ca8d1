"""Logging set-up: one structured, redacted stream for structlog and stdlib loggers.

Call :func:`configure_logging` once at start-up (``serve``, ``worker``, CLI commands); calling
it again replaces the previous set-up instead of adding to it. Afterwards::

    log = structlog.get_logger(__name__)
    structlog.contextvars.bind_contextvars(request_id=rid, payment_id=pid)
    log.info("payment.started", amount=1250)

writes one JSON object per line (or a readable line on a terminal) that carries the bound ids.
Records of stdlib loggers (uvicorn, SQLAlchemy, httpx2, Alembic...) go through the same
processors via structlog's ``ProcessorFormatter``, so they get the same timestamp, level, ids and
**the same redaction**: the :class:`~tillbridge.observability.redaction.Redactor` is the last
processor before rendering, over the event text and every value, whatever produced the record.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from tillbridge.observability.redaction import MARKER, Redactor, is_sensitive_key

if TYPE_CHECKING:
    from tillbridge.settings import Settings

__all__ = [
    "CONTEXT_KEYS",
    "ROUTED_LOGGERS",
    "configure_logging",
    "redaction_processor",
    "reset_logging",
]

#: Ids the bridge binds with ``structlog.contextvars.bind_contextvars``; listed for reference.
CONTEXT_KEYS: Final = ("request_id", "payment_id", "job_id", "terminal_id", "provider")

#: Third-party loggers whose own handlers are removed so they propagate into our one stream
#: (uvicorn installs handlers when given a ``log_config``; SQLAlchemy does with ``echo=True``).
ROUTED_LOGGERS: Final = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "sqlalchemy",
    "sqlalchemy.engine",
    "sqlalchemy.engine.Engine",
    "sqlalchemy.pool",
    "httpx2",
    "httpx",
    "httpcore",
    "alembic",
    "aiosqlite",
    "asyncio",
)

_LEVELS: Final = {
    "critical": logging.CRITICAL,
    "error": logging.ERROR,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
}


# Written by our own processors from trusted values: not worth a redaction pass per line.
_OWN_KEYS: Final = frozenset({"timestamp", "level", "logger"})


class _BridgeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our root handler; its class marks it so a second set-up can find and replace it."""


def redaction_processor(redactor: Redactor) -> Processor:
    """A structlog processor masking the event and every value with ``redactor``.

    Values under sensitive keys (``password=...``, ``authorization=...``) are replaced whole;
    everything else goes through :meth:`Redactor.redact`, which turns objects the renderer
    would ``str()``/``repr()`` into redacted strings first, so nothing reaches the renderer
    unredacted.
    """

    def redact_event(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
        for key, value in event_dict.items():
            if value is None or key in _OWN_KEYS:
                continue
            if is_sensitive_key(key):
                event_dict[key] = MARKER
            else:
                event_dict[key] = redactor.redact(value)
        return event_dict

    return redact_event


def _level(value: str | int) -> int:
    if isinstance(value, int):
        return value
    try:
        return _LEVELS[value.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {value!r}; use one of {sorted(_LEVELS)}") from None


def _shared_processors() -> list[Processor]:
    # Run for structlog events (before wrap_for_formatter) and for stdlib records (as the
    # formatter's foreign_pre_chain), so both kinds look the same downstream.
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        # Exceptions become text *before* redaction: a traceback can quote a secret or a PAN.
        structlog.processors.format_exc_info,
        structlog.processors.UnicodeDecoder(),
    ]


def configure_logging(
    settings: Settings | None = None,
    *,
    log_format: str | None = None,
    log_level: str | int | None = None,
    secrets: Iterable[str] | None = None,
    redactor: Redactor | None = None,
    stream: TextIO | None = None,
) -> Redactor:
    """Set up structlog and the stdlib root logger; return the redactor in use.

    **Parameters** (keywords override ``settings``; without either, the defaults apply):

    * ``settings``: takes ``log_format``, ``log_level`` and ``redact_values`` from it.
    * ``log_format``: ``"json"`` (one object per line), ``"console"`` (readable, coloured on a
      TTY) or ``"auto"`` (console on a TTY, JSON otherwise). Default ``"auto"``.
    * ``log_level``: ``"debug"`` ... ``"critical"`` (or a ``logging`` number). Default info.
    * ``secrets``: extra values to mask, added to those of ``settings``.
    * ``redactor``: use this redactor instead of building one (then ``secrets`` and the
      settings' values are ignored): pass the audit log's redactor to share it.
    * ``stream``: where to write. Default ``sys.stderr``.

    Idempotent: a second call removes the handler of the first one, so lines are never
    duplicated. Handlers other code put on the root logger (pytest's capture) are kept.
    """
    fmt = log_format or (settings.log_format if settings is not None else "auto")
    level = _level(
        log_level if log_level is not None else (settings.log_level if settings else "info")
    )
    if redactor is None:
        extra = secrets or ()
        redactor = (
            Redactor.from_settings(settings, extra) if settings is not None else Redactor(extra)
        )
    out = stream if stream is not None else sys.stderr
    renderer = _renderer(fmt, out)

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(), *_shared_processors()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redaction_processor(redactor),  # last before rendering: nothing bypasses it
            renderer,
        ],
    )
    handler = _BridgeHandler(out)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BridgeHandler)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level)
    for name in ROUTED_LOGGERS:
        routed = logging.getLogger(name)
        for own in list(routed.handlers):
            routed.removeHandler(own)
        routed.propagate = True

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,  # skip all work for disabled levels
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        context_class=dict,
        # Safe to cache: everything that depends on this call's arguments lives in the handler,
        # and the structlog-side chain above is the same on every call.
        cache_logger_on_first_use=True,
    )
    return redactor


def reset_logging() -> None:
    """Remove the handler installed by :func:`configure_logging` and restore structlog's
    defaults (for tests and for embedding tillbridge in another application)."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BridgeHandler)]:
        root.removeHandler(old)
        old.close()
    structlog.reset_defaults()


def _renderer(fmt: str, out: TextIO) -> Processor:
    tty = _isatty(out)
    if fmt == "auto":
        fmt = "console" if tty else "json"
    if fmt == "json":
        return structlog.processors.JSONRenderer()
    if fmt == "console":
        return structlog.dev.ConsoleRenderer(colors=tty)
    raise ValueError(f"unknown log format {fmt!r}; use auto, json or console")


def _isatty(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError):  # closed or not a real stream
        return False
