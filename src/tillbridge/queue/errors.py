"""Queue leaves of the exception tree (:mod:`tillbridge.errors`)::

NotFound
└── JobNotFound            no job with this id
QueueError
├── JobStateError          the job's status does not allow the operation (cancel a running job)
├── LeaseLost              this worker no longer holds the job's lease
├── UnknownJobKind         no handler registered for the kind
├── RetryLater             raised BY A HANDLER: reschedule this job (e.g. honour Retry-After)
└── PermanentFailure       raised BY A HANDLER: dead-letter this job now, retrying cannot help
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tillbridge.errors import NotFound, QueueError


class JobNotFound(NotFound):
    """No job with this id."""

    code = "job_not_found"


class JobStateError(QueueError):
    """The job's status does not allow this operation."""

    code = "job_state"


class LeaseLost(QueueError):
    """This worker no longer holds the job's lease (it expired and the job was reclaimed)."""

    code = "lease_lost"


class UnknownJobKind(QueueError):
    """No handler is registered for this job kind."""

    code = "unknown_job_kind"


class RetryLater(QueueError):
    """The handler asked to run the job again later.

    ``after`` is a delay (seconds or a timedelta) or an absolute aware datetime; ``None`` means the
    kind's backoff. With ``count_attempt=False`` the attempt is given back, so a counterpart that
    keeps answering 429 does not exhaust the job's attempts (use with care: it can retry forever).
    """

    code = "retry_later"

    def __init__(
        self,
        message: str | None = None,
        *,
        after: float | timedelta | datetime | None = None,
        count_attempt: bool = True,
        **details: Any,
    ) -> None:
        super().__init__(message, **details)
        self.after = after
        self.count_attempt = count_attempt


class PermanentFailure(QueueError):
    """The job can never succeed; it goes to the dead letter state without further attempts."""

    code = "permanent_failure"
