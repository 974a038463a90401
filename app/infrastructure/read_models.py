"""The read models over PostgreSQL, as the use cases' ports see them (app.ports.KeyDirectory,
app.ports.AuditStore, app.ports.ActiveAccessKeys): the pool stays here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from eventsourcing.application import Application
from psycopg_pool import ConnectionPool

from projections import queries, reports
from projections.audit_queries import AuditFilter, AuditRow, Position, find_events, iter_events
from projections.audit_trail import AuditTrailProjection
from projections.key_directory import KeyDirectoryProjection
from projections.time_travel import KeyAsOf, TimeTravel


class KeyDirectoryReads:
    """app.ports.KeyDirectory: the key directory projection and its tables."""

    def __init__(self, projection: KeyDirectoryProjection, pool: ConnectionPool) -> None:
        self._projection = projection
        self._pool = pool

    def wait_for_current(self) -> None:
        self._projection.wait_for_current()

    def list_keys(
        self, account_id: str, region: str, after: str | None, limit: int
    ) -> list[tuple[str, str]]:
        return queries.list_keys(self._pool, account_id, region, after, limit)

    def list_aliases(
        self,
        account_id: str,
        region: str,
        key_id: str | None,
        after: str | None,
        limit: int,
    ) -> list[tuple[str, str, datetime, datetime]]:
        return queries.list_aliases(self._pool, account_id, region, key_id, after, limit)

    def keys_due(self, now: datetime) -> list[tuple[uuid.UUID, str]]:
        return queries.keys_due(self._pool, now)

    def retirable_grants(self, principal: str, after: Any, limit: int) -> list[Any]:
        where, params = "retiring_principal = %s", [principal]
        if after is not None:
            where += " AND (key_id, grant_id) > (%s::uuid, %s)"
            params += [after[0], after[1]]
        with self._pool.connection() as conn:
            return conn.execute(
                "SELECT key_id, grant_id, key_arn, name, grantee_principal, retiring_principal,"
                " operations, constraints, issuing_account, creation_date FROM kms_grants"
                f" WHERE {where} ORDER BY key_id, grant_id LIMIT %s",
                (*params, limit),
            ).fetchall()


class AuditReads:
    """app.ports.AuditStore: the audit trail's tables, the reports and time travel."""

    def __init__(
        self, trail: AuditTrailProjection, pool: ConnectionPool, ledger: Application
    ) -> None:
        self._trail = trail
        self._pool = pool
        self._time_travel = TimeTravel(ledger, pool)

    def wait_for_current(self, timeout: float) -> Any:
        return self._trail.wait_for_current(timeout)

    def find_events(
        self, query: AuditFilter, limit: int, after: Position | None = None
    ) -> list[AuditRow]:
        return find_events(self._pool, query, limit, after)

    def iter_events(self, query: AuditFilter, *, oldest_first: bool = False) -> Iterator[AuditRow]:
        return iter_events(self._pool, query, oldest_first=oldest_first)

    def key_as_of(self, key_id: uuid.UUID, at: datetime) -> KeyAsOf | None:
        return self._time_travel.key_as_of(key_id, at)

    def last_usage(self, key_id: uuid.UUID) -> Any:
        with self._pool.connection() as conn:
            return conn.execute(
                "SELECT operation, used_at, event_id, request_id FROM audit_key_last_usage"
                " WHERE key_id = %s",
                (key_id,),
            ).fetchone()

    def who_can_decrypt_as_of(
        self, key_id: uuid.UUID, at: datetime, account: str | None, now: datetime
    ) -> reports.Report | None:
        found = self._time_travel.key_as_of(key_id, at)
        if found is None or (account is not None and found.account_id != account):
            return None
        return reports.who_can_decrypt(self._pool, account, now, str(key_id), as_of=found)

    def usage_by_hour(
        self, key_arn: str, start: datetime, end: datetime, account: str | None
    ) -> list[tuple[datetime, str, int, int]]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT hour, operation, sum(requests)::bigint, sum(errors)::bigint"
                " FROM audit_usage_hourly WHERE key_arn = %s AND hour >= %s AND hour < %s"
                " AND (%s::text IS NULL OR key_account_id = %s)"
                " GROUP BY hour, operation ORDER BY hour, operation",
                (key_arn, start, end, account, account),
            ).fetchall()
        return [
            (hour, operation, int(count), int(failed)) for hour, operation, count, failed in rows
        ]

    def report(
        self,
        name: str,
        account: str | None,
        now: datetime,
        *,
        days: int = 90,
        key: str | None = None,
        month: str | None = None,
        cryptoperiods: Mapping[str, int] | None = None,
    ) -> reports.Report:
        return reports.report(
            name,
            self._pool,
            account,
            now,
            days=days,
            key=key,
            month=month,
            cryptoperiods=cryptoperiods,
        )


def active_access_key_ids(pool: ConnectionPool) -> Callable[[], list[str]]:
    """app.ports.ActiveAccessKeys over ``pool``: the audit views' index of access keys."""

    def read() -> list[str]:
        with pool.connection() as conn:
            rows = conn.execute(
                "SELECT access_key_id FROM audit_access_keys WHERE deactivated_at IS NULL"
            ).fetchall()
        return [row[0] for row in rows]

    return read
