"""The whole schema in one place: importing this module registers every table on ``metadata``."""

from __future__ import annotations

from sqlalchemy import MetaData

from tillbridge.audit import tables as _audit_tables  # noqa: F401  (registers the audit log)
from tillbridge.connectors.terminals import tables as _terminal_tables  # noqa: F401  (terminal engine)
from tillbridge.erp.xentral import tables as _xentral_tables  # noqa: F401  (POS payment links)
from tillbridge.inbound import tables as _inbound_tables  # noqa: F401  (webhook inbox)
from tillbridge.queue import tables as _queue_tables  # noqa: F401  (registers the job tables)
from tillbridge.store import tables as _tables  # noqa: F401  (registers the domain tables)
from tillbridge.store.metadata import metadata
from tillbridge.webhooks_out import tables as _webhooks_out_tables  # noqa: F401  (deliveries)


def all_tables() -> MetaData:
    """The metadata with every table of the bridge registered."""
    return metadata
