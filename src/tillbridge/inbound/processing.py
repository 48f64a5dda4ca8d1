"""Processing inbox rows: the ``webhook.process`` job dispatches to the source's processor.

Processor contract (:class:`InboxProcessor`), for every source:

* ``process(ctx, item)`` runs at least once per job (the queue's contract) and may run again on
  an operator replay, so it must be idempotent: the same row never causes a second effect;
* it must settle the row (:func:`tillbridge.inbound.inbox.settle`) **and** call
  ``ctx.complete_in(conn)`` in the one transaction that makes its effect, so the effect, the
  row's status and the job's completion commit together (exactly once);
* input it can never act on is settled ``invalid`` (not retried); an event type it does not
  handle is settled ``ignored``; a problem only an operator can fix raises
  :class:`~tillbridge.errors.PermanentFailure` (dead letter, replay after the fix); anything else
  raises and is retried with backoff.

The dispatcher below keeps the row's status in step with the job: after a failed attempt the row
is ``retrying`` with the error; when attempts run out (or the failure is permanent) it is
``dead``, with the error, visible to ``tillbridge webhooks list --status dead`` and replayable.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Final, Protocol

import structlog

from tillbridge.errors import InboxNotFound, LeaseLost, PermanentFailure
from tillbridge.inbound import inbox
from tillbridge.inbound.inbox import InboxItem
from tillbridge.inbound.tables import DEAD, RETRYING
from tillbridge.queue import Handler, JobContext
from tillbridge.retry import RetryPolicy
from tillbridge.store.db import Database

log = structlog.get_logger("tillbridge.inbound")

#: Transient failures (database hiccup, a bug fixed by a deploy) get a few spaced-out tries.
PROCESS_RETRY: Final = RetryPolicy(
    max_attempts=8, base_delay=timedelta(seconds=5), max_delay=timedelta(minutes=30)
)


class InboxProcessor(Protocol):
    """Turns stored deliveries of one source into effects; see the module docstring."""

    source: str

    async def process(self, ctx: JobContext, item: InboxItem) -> None: ...


def make_handler(
    db: Database,
    processors: Mapping[str, InboxProcessor],
    retry: RetryPolicy = PROCESS_RETRY,
) -> Handler:
    """The ``webhook.process`` job handler over ``processors`` (by source name)."""

    async def handle(ctx: JobContext) -> None:
        inbox_id = int(ctx.payload["inbox_id"])
        try:
            async with db.read() as conn:
                item = await inbox.get(conn, inbox_id)
        except InboxNotFound as exc:  # deleted by hand: nothing to process, ever
            raise PermanentFailure(exc.message) from None
        try:
            processor = processors.get(item.source)
            if processor is None:
                raise PermanentFailure(f"no processor for webhook source {item.source!r}")
            await processor.process(ctx, item)
        except LeaseLost:
            raise  # another worker owns the job now; it will settle the row
        except Exception as exc:
            dead = isinstance(exc, PermanentFailure) or ctx.attempt >= retry.max_attempts
            error = f"{type(exc).__name__}: {exc}"
            log.warning("webhook.process_failed", inbox_id=inbox_id, dead=dead, error=error[:300])
            async with db.write() as conn:
                await inbox.settle(
                    conn,
                    inbox_id,
                    DEAD if dead else RETRYING,
                    now=ctx.now(),
                    attempt=ctx.attempt,
                    error=error,
                )
            raise

    return handle
