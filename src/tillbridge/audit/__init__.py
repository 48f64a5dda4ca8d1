"""The audit log: an append-only record of who did what to which subject, kept for a
retention period and redacted like the logs (design invariant 6).

Write with :func:`record` inside the transaction of the change being recorded; read with
:func:`query`; the periodic :func:`purge_job` enforces ``audit_retention_days``.
"""

from __future__ import annotations

from tillbridge.audit.log import AuditEntry, purge, purge_job, query, record
from tillbridge.audit.tables import audit_log

__all__ = ["AuditEntry", "audit_log", "purge", "purge_job", "query", "record"]
