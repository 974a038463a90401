"""The audit trail's read models have no in-memory implementation.

app.ports.AuditStore is served by projections/audit_trail.py, audit_queries.py,
key_views.py, reports.py and time_travel.py: SQL over tables the audit trail projection
fills (audit_events, audit_key_last_usage, audit_alias_targets, ...), reports written as
SQL aggregates. Rewriting them in Python would test a second implementation, not those.
The in-memory runtime gets this store instead: every read says why it cannot answer. The
event history itself (every Used event) is read through the Ledger (app.ports.EventHistory).
"""

from __future__ import annotations

from typing import Any, NoReturn

WHY = (
    "the audit trail's read models (projections/audit_*.py, reports, time travel) exist only "
    "in PostgreSQL; read the event history through the Ledger instead"
)


class AuditTrailNotInMemory(RuntimeError):
    """The in-memory runtime was asked an auditor's query: it has no audit trail by design
    (a second, in-memory copy of the SQL read models would test itself, not them)."""


class NoAuditStore:
    """app.ports.AuditStore that refuses every read (see the module)."""

    def _refuse(self, *_: Any, **__: Any) -> NoReturn:
        raise AuditTrailNotInMemory(WHY)

    wait_for_current = find_events = iter_events = key_as_of = last_usage = _refuse
    usage_by_hour = who_can_decrypt_as_of = report = _refuse
