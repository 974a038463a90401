"""Replay for auditors: rebuild every read model from the event store and compare.

``replay`` takes one consistent snapshot of the live views (and the position each
projection had reached), rebuilds every projection from the first event up to that same
position into a scratch schema, and compares the two table by table. Any row that is not
in both, or differs, is reported: a view altered by hand (or by a bug) shows up here,
because the ledger, not the views, is the source of truth.

With ``until``, only events recorded at or before that time are replayed: the views are
rebuilt as they stood then, and the append-only ones (the audit trail, the hourly usage of
the hours before ``until``) are compared with the live ones over that period.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import orjson
import psycopg
from eventsourcing.application import Application
from psycopg.sql import SQL, Composed, Identifier
from psycopg_pool import ConnectionPool

from projections import key_directory
from projections.audit_trail import AuditTrailProjection
from projections.batched import BatchedProjection

log = logging.getLogger("keyledger.replay")

READ_MODELS: dict[str, tuple[str, ...]] = {
    key_directory.PROJECTION_NAME: (
        "kms_keys", "kms_aliases", "kms_rotations", "alias_names", "kms_key_materials",
        "kms_grants",
    ),
    AuditTrailProjection.name: (
        "audit_keys", "audit_key_materials", "audit_key_policies", "audit_key_grants",
        "audit_key_states", "audit_principals", "audit_principal_policies",
        "audit_access_keys", "audit_alias_targets", "audit_key_last_usage", "audit_events",
        "audit_usage_hourly",
    ),
}  # fmt: skip
# Append-only views compared over a period (``until``): table -> its time column.
PERIOD_TABLES = {"audit_events": "event_time", "audit_usage_hourly": "hour"}


# The live projection runs unchanged into the scratch schema.
KeyDirectoryReplay = key_directory.KeyDirectoryProjection


@dataclass
class Difference:
    table: str
    kind: str  # "changed", "only in the live view", "only in the replay"
    key: dict[str, Any]  # the row's primary key
    detail: dict[str, Any]  # changed columns (live, replay), or the whole row

    def describe(self) -> str:
        key = ", ".join(f"{k}={v}" for k, v in self.key.items())
        if self.kind == "changed":
            columns = "; ".join(
                f"{name}: live {_show(live)} != replay {_show(replayed)}"
                for name, (live, replayed) in self.detail.items()
            )
            return f"{self.table} [{key}] changed: {columns}"
        return f"{self.table} [{key}] {self.kind}: {_show(self.detail)}"


@dataclass
class ReplayResult:
    schema: str
    positions: dict[str, int]
    until: datetime | None
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: (live, replay)
    differences: list[Difference] = field(default_factory=list)
    difference_counts: dict[str, int] = field(default_factory=dict)
    not_compared: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not self.difference_counts

    def report(self) -> str:
        lines = [
            "Replayed " + ", ".join(f"{n} up to event {p}" for n, p in self.positions.items())
            + (f", events until {self.until.isoformat()}" if self.until else "")
        ]  # fmt: skip
        for table, (live, replayed) in self.rows.items():
            count = self.difference_counts.get(table, 0)
            verdict = "identical" if count == 0 else f"{count} difference(s)"
            lines.append(f"  {table}: {live} live row(s), {replayed} replayed: {verdict}")
        for table in self.not_compared:
            lines.append(f"  {table}: rebuilt as of the replay time, not compared (live is now)")
        for difference in self.differences:
            lines.append("  - " + difference.describe())
        shown = len(self.differences)
        total = sum(self.difference_counts.values())
        if total > shown:
            lines.append(f"  ... and {total - shown} more")
        lines.append("NO DIFFERENCES" if self.identical else f"{total} DIFFERENCE(S)")
        return "\n".join(lines)


def _show(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 300 else text[:297] + "..."


def _migrations() -> list[str]:
    files = resources.files("migrations")
    names = sorted(p.name for p in files.iterdir() if p.name.endswith(".sql"))
    return [(files / name).read_text() for name in names]


def _primary_key(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = conn.execute(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s::regclass AND i.indisprimary"
        " ORDER BY array_position(i.indkey, a.attnum)",
        (f'"{schema}"."{table}"',),
    ).fetchall()
    return [row[0] for row in rows]


def replay(
    ledger: Application,
    database_url: str,
    *,
    until: datetime | None = None,
    keep: bool = False,
    batch_size: int = 2000,
    shown: int = 50,
) -> ReplayResult:
    """Rebuild every read model into a scratch schema and compare it with the live views."""
    suffix = f"{os.getpid()}_{secrets.token_hex(4)}"
    scratch, live = f"keyledger_replay_{suffix}", f"keyledger_live_{suffix}"
    tables = [table for names in READ_MODELS.values() for table in names]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(scratch)))
        conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(live)))
        # One snapshot of the live views and of how far each projection had got.
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            rows = conn.execute(
                "SELECT projection_name, notification_id FROM projection_tracking"
            ).fetchall()
            positions = {name: 0 for name in READ_MODELS}
            positions.update({name: int(pos) for name, pos in rows if name in READ_MODELS})
            for table in tables:
                conn.execute(
                    SQL("CREATE TABLE {}.{} AS TABLE public.{}").format(
                        Identifier(live), Identifier(table), Identifier(table)
                    )
                )
        conn.execute(SQL("SET search_path TO {}").format(Identifier(scratch)))
        for sql in _migrations():
            conn.execute(sql.encode())
    result = ReplayResult(scratch, positions, until)
    try:
        pool = ConnectionPool(
            database_url, min_size=1, max_size=2, open=True,
            kwargs={"options": f"-c search_path={scratch}"},
        )  # fmt: skip
        try:
            projections: list[BatchedProjection] = [
                KeyDirectoryReplay(ledger, pool, database_url, batch_size=batch_size),
                AuditTrailProjection(ledger, pool, database_url, batch_size=batch_size),
            ]
            for projection in projections:
                projection.until = until
                projection.catch_up_to(positions[projection.name])
        finally:
            pool.close()
        with psycopg.connect(database_url, autocommit=True) as conn:
            for table in tables:
                _compare(conn, live, scratch, table, until, result, shown)
    finally:
        if not keep:
            with psycopg.connect(database_url, autocommit=True) as conn:
                for schema in (scratch, live):
                    conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))
    return result


def _compare(
    conn: psycopg.Connection[Any],
    live: str,
    scratch: str,
    table: str,
    until: datetime | None,
    result: ReplayResult,
    shown: int,
) -> None:
    period: SQL | Composed = SQL("")
    params: tuple[Any, ...] = ()
    if until is not None:
        column = PERIOD_TABLES.get(table)
        if column is None:
            result.not_compared.append(table)
            return
        period = SQL(" WHERE {} <= %s").format(Identifier(column))
        # The hour that contains ``until`` is complete only in the live view.
        params = (until - timedelta(hours=1) if table == "audit_usage_hourly" else until,)
    live_rows = SQL("SELECT * FROM {}.{}").format(Identifier(live), Identifier(table)) + period
    replayed = SQL("SELECT * FROM {}.{}").format(Identifier(scratch), Identifier(table)) + period
    counts = [
        conn.execute(SQL("SELECT count(*) FROM ({}) t").format(q), params).fetchone()
        for q in (live_rows, replayed)
    ]
    result.rows[table] = (int(counts[0][0]), int(counts[1][0]))  # type: ignore[index]
    only: dict[str, list[dict[str, Any]]] = {}
    total = 0
    for label, first, second in (("live", live_rows, replayed), ("replay", replayed, live_rows)):
        diff = SQL("({}) EXCEPT ALL ({})").format(first, second)
        found = conn.execute(
            SQL("SELECT count(*) FROM ({}) d").format(diff), params + params
        ).fetchone()
        total += int(found[0]) if found else 0
        only[label] = [
            row[0]
            for row in conn.execute(
                SQL("SELECT row_to_json(d) FROM ({}) d LIMIT %s").format(diff),
                (*params, *params, shown),
            ).fetchall()
        ]
    if total == 0:
        return
    key_columns = _primary_key(conn, scratch, table)
    replay_by_key = {tuple(r.get(c) for c in key_columns): r for r in only["replay"]}
    differences: list[Difference] = []
    changed = 0
    for row in only["live"]:
        key = tuple(row.get(c) for c in key_columns)
        twin = replay_by_key.pop(key, None) if key_columns else None
        if twin is not None:
            changed += 1
            detail = {c: (row[c], twin.get(c)) for c in row if row[c] != twin.get(c)}
            differences.append(
                Difference(table, "changed", dict(zip(key_columns, key, strict=True)), detail)
            )
        else:
            differences.append(
                Difference(table, "only in the live view", _key(row, key_columns), row)
            )
    for row in replay_by_key.values():
        differences.append(Difference(table, "only in the replay", _key(row, key_columns), row))
    result.difference_counts[table] = total - changed
    room = max(0, shown - len(result.differences))
    result.differences.extend(differences[:room])


def _key(row: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    return {c: row.get(c) for c in columns} if columns else {}
