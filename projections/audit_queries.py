"""Queries over the audit trail: what LookupEvents, GET /v1/audit/events and the export read.

Newest first (event time, then ledger order), with keyset paging: a page ends at a
position (event time, notification id, receiving account) and the next one starts after it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

KEY_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SELECT = (
    "SELECT event_time, notification_id, recipient_account_id, event_id, event_name,"
    " read_only, access_key_id, event_source, username, resource_type, resource_arn,"
    " resources, error_code, principal_arn, source_ip, record FROM audit_events"
)
Position = tuple[datetime, int, str]


@dataclass(frozen=True)
class AuditFilter:
    """Every member narrows the result; None means any."""

    recipient_account: str | None = None  # the account whose copy (None: every account's)
    event_id: str | None = None
    event_name: str | None = None
    read_only: bool | None = None
    username: str | None = None
    resource_type: str | None = None
    resource: str | None = None  # a key ARN or key id (or any resource ARN)
    event_source: str | None = None
    access_key_id: str | None = None
    principal_arn: str | None = None
    error_code: str | None = None  # as the record writes it ("AccessDenied"); "*": any failure
    source_ip: str | None = None
    encryption_context_key: str | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # inclusive

    def fingerprint(self) -> str:
        """Identifies the query a paging token belongs to."""
        values = [str(getattr(self, f.name)) for f in fields(self)]
        return uuid.uuid5(uuid.NAMESPACE_OID, "|".join(values)).hex[:16]


@dataclass(frozen=True)
class AuditRow:
    event_time: datetime
    notification_id: int
    recipient_account_id: str
    event_id: uuid.UUID
    event_name: str
    read_only: bool
    access_key_id: str
    event_source: str
    username: str
    resource_type: str | None
    resource_arn: str
    resources: list[str]
    error_code: str | None
    principal_arn: str
    source_ip: str
    record: str  # the CloudTrail record, JSON

    @property
    def position(self) -> Position:
        return (self.event_time, self.notification_id, self.recipient_account_id)


def _where(conn: Any, query: AuditFilter, after: Position | None) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []

    def add(clause: str, *values: Any) -> None:
        clauses.append(clause)
        params.extend(values)

    if query.recipient_account is not None:
        add("recipient_account_id = %s", query.recipient_account)
    if query.event_id is not None:
        try:
            add("event_id = %s", uuid.UUID(query.event_id))
        except ValueError:
            add("false")
    for column, value in (
        ("event_name", query.event_name),
        ("username", query.username),
        ("resource_type", query.resource_type),
        ("event_source", query.event_source),
        ("access_key_id", query.access_key_id),
        ("principal_arn", query.principal_arn),
        ("source_ip", query.source_ip),
    ):
        if value is not None:
            add(f"{column} = %s", value)
    if query.read_only is not None:
        add("read_only = %s", query.read_only)
    if query.resource is not None:
        arns = [query.resource]
        if KEY_ID.match(query.resource):  # a key id: its ARN(s)
            rows = conn.execute(
                "SELECT arn FROM audit_keys WHERE key_id = %s", (query.resource,)
            ).fetchall()
            arns = [row[0] for row in rows] or arns
        # the first resource, or any of a record that names several (ReEncrypt: two keys)
        add(
            "(resource_arn = ANY(%s) OR (cardinality(resources) > 1 AND resources && %s))",
            arns,
            arns,
        )
    if query.error_code == "*":
        add("error_code IS NOT NULL")
    elif query.error_code is not None:
        code = "AccessDenied" if query.error_code == "AccessDeniedException" else query.error_code
        add("error_code = %s", code)
    if query.encryption_context_key is not None:
        add("%s = ANY(encryption_context_keys)", query.encryption_context_key)
    if query.start is not None:
        add("event_time >= %s", query.start)
    if query.end is not None:
        add("event_time <= %s", query.end)
    if after is not None:
        add("(event_time, notification_id, recipient_account_id) < (%s, %s, %s)", *after)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def find_events(
    pool: ConnectionPool, query: AuditFilter, limit: int, after: Position | None = None
) -> list[AuditRow]:
    """At most ``limit`` records matching ``query``, newest first, after ``after``."""
    with pool.connection() as conn:
        where, params = _where(conn, query, after)
        rows = conn.execute(
            f"{SELECT}{where} ORDER BY event_time DESC, notification_id DESC,"
            " recipient_account_id DESC LIMIT %s",
            (*params, limit),
        ).fetchall()
    return [AuditRow(*row) for row in rows]


def iter_events(
    pool: ConnectionPool, query: AuditFilter, *, oldest_first: bool = False, chunk: int = 5000
) -> Iterator[AuditRow]:
    """Every matching record (for exports), streamed in chunks."""
    order = "ASC" if oldest_first else "DESC"
    with pool.connection() as conn:
        where, params = _where(conn, query, None)
        with conn.cursor(name="audit_export") as cursor:
            cursor.itersize = chunk
            cursor.execute(
                f"{SELECT}{where} ORDER BY event_time {order}, notification_id {order},"
                f" recipient_account_id {order}",
                params,
            )
            for row in cursor:
                yield AuditRow(*row)
