"""The whole schema in one place: importing this module registers every table on ``metadata``."""

from __future__ import annotations

from sqlalchemy import MetaData

from tillbridge.audit import tables as _audit_tables  # noqa: F401  (registers the audit log)
from tillbridge.queue import tables as _queue_tables  # noqa: F401  (registers the job tables)
from tillbridge.store import tables as _tables  # noqa: F401  (registers the domain tables)
from tillbridge.store.metadata import metadata


def all_tables() -> MetaData:
    """The metadata with every table of the bridge registered."""
    return metadata
