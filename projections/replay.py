"""Replay for auditors: rebuild every read model from the event store and compare.

``replay`` notes the HEAD of the ledger, gives the live projections a moment (``wait``) to
reach it, takes one consistent snapshot of the live views (with the position each
projection had reached and the events each set aside), rebuilds every projection from
the first event up to the head (or further, if a live one got further) into a scratch
schema, and compares the two table by table. Any row that is not in both, or differs, is
reported: a view altered by hand (or by a bug) shows up here, because the ledger, not the
views, is the source of truth. So does a view that stopped short of the head (a stalled
projection: its missing rows show as "only in the replay") and every event a projection
set aside (projection_dead_letters): each is a difference.

With ``until``, only events recorded at or before that time are replayed: the views are
rebuilt as they stood then, and the append-only ones (the audit trail, the hourly usage of
the hours before ``until``) are compared with the live ones over that period.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
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
from projections.batched import DEAD_LETTER_SELECT, BatchedProjection, DeadLetter, wake_channel

log = logging.getLogger("keyledger.replay")

READ_MODELS: dict[str, tuple[str, ...]] = {
    key_directory.PROJECTION_NAME: (
        "kms_keys",
        "kms_aliases",
        "kms_rotations",
        "alias_names",
        "kms_key_materials",
        "kms_grants",
    ),
    AuditTrailProjection.name: (
        "audit_keys",
        "audit_key_materials",
        "audit_key_policies",
        "audit_key_grants",
        "audit_key_states",
        "audit_principals",
        "audit_principal_policies",
        "audit_access_keys",
        "audit_alias_targets",
        "audit_custom_key_stores",
        "audit_custom_key_store_states",
        "audit_key_last_usage",
        "audit_events",
        "audit_usage_hourly",
    ),
}
# Append-only views compared over a period (``until``): table -> its time column.
PERIOD_TABLES = {"audit_events": "event_time", "audit_usage_hourly": "hour"}
WAIT_SECONDS = 30.0  # how long live projections get to reach the head before the snapshot
RENOTIFY_SECONDS = 0.5
MAX_DEAD_LETTERS_SHOWN = 1000


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
    positions: dict[str, int]  # what each projection was rebuilt up to
    until: datetime | None
    head: int = 0  # the ledger's last event when the replay began
    behind: dict[str, int] = field(default_factory=dict)  # live views short of it: position
    dead_letters: list[DeadLetter] = field(default_factory=list)  # set aside, live
    replay_dead_letters: list[DeadLetter] = field(default_factory=list)  # set aside again
    rows: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: (live, replay)
    differences: list[Difference] = field(default_factory=list)
    difference_counts: dict[str, int] = field(default_factory=dict)
    not_compared: list[str] = field(default_factory=list)

    @property
    def gaps(self) -> int:
        """Events some view lacks: views short of the head, events set aside."""
        set_aside = {
            (d.projection, d.notification_id) for d in self.dead_letters + self.replay_dead_letters
        }
        return len(self.behind) + len(set_aside)

    @property
    def identical(self) -> bool:
        return not self.difference_counts and not self.gaps

    def report(self) -> str:
        lines = [
            "Replayed "
            + ", ".join(f"{n} up to event {p}" for n, p in self.positions.items())
            + f" (the ledger's head: {self.head})"
            + (f", events until {self.until.isoformat()}" if self.until else "")
        ]
        for name, position in self.behind.items():
            lines.append(
                f"  {name}: the live view stopped at event {position}, short of the head"
                f" ({self.head - position} event(s) not in it): stalled or not running"
            )
        for label, letters in (("live", self.dead_letters), ("replay", self.replay_dead_letters)):
            for letter in letters:
                lines.append(
                    f"  {letter.projection}: event {letter.notification_id} ({letter.topic} of"
                    f" {letter.originator_id} version {letter.originator_version}) set aside"
                    f" by the {label} projection: {letter.error_type}"
                )
        for table, (live, replayed) in self.rows.items():
            count = self.difference_counts.get(table, 0)
            verdict = "identical" if count == 0 else f"{count} difference(s)"
            lines.append(f"  {table}: {live} live row(s), {replayed} replayed: {verdict}")
        for table in self.not_compared:
            lines.append(f"  {table}: rebuilt as of the replay time, not compared (live is now)")
        for difference in self.differences:
            lines.append("  - " + difference.describe())
        shown = len(self.differences)
        rows = sum(self.difference_counts.values())
        if rows > shown:
            lines.append(f"  ... and {rows - shown} more")
        total = rows + self.gaps
        lines.append("NO DIFFERENCES" if self.identical else f"{total} DIFFERENCE(S)")
        return "\n".join(lines)


def _show(value: Any) -> str:
    text = orjson.dumps(value, default=str).decode()
    return text if len(text) <= 300 else text[:297] + "..."


def _migrations() -> list[str]:
    files = resources.files("migrations")
    names = sorted(p.name for p in files.iterdir() if p.name.endswith(".sql"))
    return [(files / name).read_text() for name in names]


# Views over tables of their own (audit_events composes records: migrations/024): the
# columns that name a row, as their table's primary key does.
VIEW_KEYS = {"audit_events": ["notification_id", "recipient_account_id"]}


def _primary_key(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    if table in VIEW_KEYS:
        return VIEW_KEYS[table]
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
    wait: float = WAIT_SECONDS,
) -> ReplayResult:
    """Rebuild every read model up to the ledger's head into a scratch schema and compare
    it with the live views (which get ``wait`` seconds to reach the head first)."""
    head = ledger.recorder.max_notification_id() or 0
    _wait_for_live_views(database_url, head, wait)
    suffix = f"{os.getpid()}_{secrets.token_hex(4)}"
    scratch, live = f"keyledger_replay_{suffix}", f"keyledger_live_{suffix}"
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            positions, dead_letters = _snapshot(conn, live)
            conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(scratch)))
            conn.execute(SQL("SET search_path TO {}").format(Identifier(scratch)))
            for sql in _migrations():
                conn.execute(sql.encode())
        # Up to the head: a live view short of it is a difference, not the replay's limit.
        targets = {name: max(position, head) for name, position in positions.items()}
        result = ReplayResult(scratch, targets, until, head=head, dead_letters=dead_letters)
        result.behind = {name: p for name, p in positions.items() if p < head}
        result.replay_dead_letters = _rebuild(
            ledger, database_url, scratch, targets, until=until, batch_size=batch_size
        )
        with psycopg.connect(database_url, autocommit=True) as conn:
            for table in _tables():
                _compare(conn, live, scratch, table, until, result, shown)
    finally:
        if not keep:
            with psycopg.connect(database_url, autocommit=True) as conn:
                for schema in (scratch, live):
                    conn.execute(SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(Identifier(schema)))
    return result


def _tables() -> list[str]:
    return [table for names in READ_MODELS.values() for table in names]


def _live_positions(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute("SELECT projection_name, notification_id FROM projection_tracking")
    positions = {name: 0 for name in READ_MODELS}
    positions.update({name: int(pos) for name, pos in rows.fetchall() if name in READ_MODELS})
    return positions


def _wait_for_live_views(database_url: str, head: int, wait: float) -> None:
    """Give the live projections up to ``wait`` seconds to reach ``head``, waking their
    leaders (in whichever process) with a NOTIFY now and then."""
    deadline = time.monotonic() + wait
    notified = float("-inf")
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            lagging = [n for n, p in _live_positions(conn).items() if p < head]
            now = time.monotonic()
            if not lagging or now >= deadline:
                return
            if now - notified >= RENOTIFY_SECONDS:
                for name in lagging:
                    conn.execute(SQL("NOTIFY {}").format(Identifier(wake_channel(name))))
                notified = now
            time.sleep(0.02)


def _snapshot(conn: psycopg.Connection[Any], live: str) -> tuple[dict[str, int], list[DeadLetter]]:
    """Copy the live views into schema ``live`` in ONE snapshot, with the position each
    projection had reached and the events each had set aside."""
    conn.execute(SQL("CREATE SCHEMA {}").format(Identifier(live)))
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        positions = _live_positions(conn)
        dead_letters = _dead_letters(conn)
        for table in _tables():
            conn.execute(
                SQL("CREATE TABLE {}.{} AS TABLE public.{}").format(
                    Identifier(live), Identifier(table), Identifier(table)
                )
            )
    return positions, dead_letters


def _dead_letters(conn: psycopg.Connection[Any]) -> list[DeadLetter]:
    """The events the projections (of the search path's schema) set aside, newest first."""
    found: list[DeadLetter] = []
    for name in READ_MODELS:
        rows = conn.execute(DEAD_LETTER_SELECT, (name, MAX_DEAD_LETTERS_SHOWN)).fetchall()
        found.extend(DeadLetter(*row) for row in rows)
    return found


def _rebuild(
    ledger: Application,
    database_url: str,
    scratch: str,
    targets: dict[str, int],
    *,
    until: datetime | None,
    batch_size: int,
) -> list[DeadLetter]:
    """Run every projection into ``scratch`` up to its target; return what it set aside."""
    pool = ConnectionPool(
        database_url,
        min_size=1,
        max_size=2,
        open=True,
        kwargs={"options": f"-c search_path={scratch}"},
    )
    try:
        projections: list[BatchedProjection] = [
            KeyDirectoryReplay(ledger, pool, database_url, batch_size=batch_size),
            AuditTrailProjection(ledger, pool, database_url, batch_size=batch_size),
        ]
        for projection in projections:
            projection.until = until
            projection.retry_delay = 0.0  # a rebuild's failures repeat: no point waiting
            projection.catch_up_to(targets[projection.name])
        with pool.connection() as conn:
            return _dead_letters(conn)
    finally:
        pool.close()


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
