"""The audit trail writes a use of one key through KMS from its caller's template
(projections.audit_trail._UseTemplate), the record composed when read (migrations/024):
for any caller, key, operation and context, the rows PostgreSQL's audit_events view
shows, and the rollups and last use, are those its general path (Described, _emit)
writes whole."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import projections.audit_trail as trail
from app.bootstrap import migrate
from app.infrastructure.ledger import Ledger
from domain.keys import Key
from tests.support.databases import drop, fresh_database

pytestmark = pytest.mark.postgres

LEDGER = Ledger(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
KEY = uuid.UUID("0b8a4b8e-3a53-4c2e-9a0e-5d3f2f1e4a01")
OWNER = "111122223333"
ARN = f"arn:aws:kms:us-east-1:{OWNER}:key/{KEY}"
# Text with everything COPY's text format and JSON escape, and a NUL.
TEXT = st.text(max_size=6) | st.sampled_from(["\t", "\n", "\\", '"', "\x00", "é"])
ACCOUNT = st.sampled_from([OWNER, "444455556666", ""])
ACTOR = st.fixed_dictionaries(
    {
        "principal_arn": st.sampled_from(
            [
                f"arn:aws:iam::{OWNER}:user/alice",
                "arn:aws:iam::444455556666:user/bob\tx",
                "arn:aws:sts::444455556666:assumed-role/Deployer/s1",
            ]
        ),
        "account_id": ACCOUNT,
        "region": st.sampled_from(["us-east-1", "eu-west-1", ""]),
        "source_ip": TEXT,
        "user_agent": TEXT,
    },
    optional={
        "access_key_id": TEXT,
        "request_id": TEXT,
        "via_service": st.just("ec2.us-east-1.amazonaws.com"),
        "session_created": st.just("2026-03-01T09:00:00Z"),
    },
)


@pytest.fixture(scope="module")
def conn() -> Iterator[psycopg.Connection[Any]]:
    url = fresh_database("embedded")
    migrate(url)
    try:
        with psycopg.connect(url, autocommit=True) as connection:
            yield connection
    finally:
        drop(url)


def _projection() -> trail.AuditTrailProjection:
    projection = trail.AuditTrailProjection(LEDGER, None, "")  # type: ignore[arg-type]
    projection._keys[KEY] = trail.KeyFacts(
        ARN, OWNER, "us-east-1", "SYMMETRIC_DEFAULT", "CUSTOMER", {1: "a" * 64}
    )
    return projection


def _use(
    version: int,
    actor: dict[str, Any],
    operation: str,
    context: dict[str, str],
    parameters: dict[str, Any],
    material_version: int,
    request_id: str,
    offset: timedelta = timedelta(0),
) -> Key.Used:
    moment = datetime(2026, 3, 1, 10, 15, version, 123456, tzinfo=UTC)
    fields: dict[str, Any] = {
        "originator_id": KEY,
        "originator_version": version,
        "timestamp": moment.astimezone(timezone(offset)) if offset else moment,
        "actor": actor,
        "operation": operation,
        "material_version": material_version,
        "encryption_context": context,
        "algorithm": "SYMMETRIC_DEFAULT",
        "request_id": request_id,
        "request_parameters": {"keyId": ARN, **parameters},
    }
    return Key.Used(**fields)


def _stored(
    conn: psycopg.Connection[Any], uses: list[Key.Used], query: str
) -> tuple[list[tuple[Any, ...]], Any, Any]:
    """Write ``uses`` as the trail does (templates, then the rows), and return what
    ``query`` reads of them, the rollups and the last use; the tables are emptied after."""
    projection = _projection()
    rows: list[trail.Row] = []
    rollups: dict[Any, list[Any]] = {}
    last_used: dict[str, tuple[Any, ...]] = {}
    for index, use in enumerate(uses):
        projection._used(use, 100 + index, rows, rollups, last_used)
    with conn.transaction():
        projection.store_templates(conn)
        with conn.cursor() as cursor, cursor.copy(trail.COPY_SQL) as copy:
            copy.write(trail._copy_text(rows))
        found = conn.execute(query).fetchall()
        conn.execute("TRUNCATE audit_event_rows, audit_record_templates")
    return found, rollups, last_used


def _write(
    conn: psycopg.Connection[Any], uses: list[Key.Used]
) -> tuple[list[tuple[Any, ...]], Any, Any]:
    """The rows of ``uses`` as the audit_events view shows them, the rollups, the last use."""
    shown = "SELECT * FROM audit_events ORDER BY notification_id, recipient_account_id"
    return _stored(conn, uses, shown)


CALLS = st.lists(
    st.tuples(
        ACTOR,
        st.sampled_from(sorted(trail.SIMPLE_USES)),
        st.dictionaries(TEXT, TEXT, max_size=3),
        st.dictionaries(TEXT, TEXT, max_size=2),
        st.sampled_from([1, 2]),
        TEXT,
    ),
    min_size=1,
    max_size=4,
)


@settings(deadline=None, max_examples=60)
@given(CALLS, st.sampled_from([timedelta(0), timedelta(hours=2)]))
def test_a_use_is_written_from_its_template_as_the_general_path_writes_it(
    conn: psycopg.Connection[Any],
    calls: list[tuple[dict[str, Any], str, dict[str, str], dict[str, Any], int, str]],
    offset: timedelta,
) -> None:
    # (a time not in UTC is written whole: the view writes eventTime in UTC)
    uses = [
        _use(2 + n, actor, operation, context, parameters, material_version, request_id, offset)
        for n, (actor, operation, context, parameters, material_version, request_id) in (
            enumerate(calls)
        )
    ]
    templated = _write(conn, uses)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(trail, "SIMPLE_USES", frozenset())  # the general path only
        general = _write(conn, uses)
    assert templated == general


def test_the_template_path_stores_each_template_once_and_no_whole_record(
    conn: psycopg.Connection[Any],
) -> None:
    actor = {"principal_arn": f"arn:aws:iam::{OWNER}:user/alice", "account_id": OWNER}
    uses = [_use(2 + n, actor, "Encrypt", {}, {}, 1, f"r{n}") for n in range(5)]
    counts = (
        "SELECT count(*) FILTER (WHERE record IS NULL), count(*),"
        " (SELECT count(*) FROM audit_record_templates) FROM audit_event_rows"
    )
    (stored,), _, _ = _stored(conn, uses, counts)
    assert stored == (5, 5, 1)


def test_a_writer_of_the_version_before_still_writes_whole_records(
    conn: psycopg.Connection[Any],
) -> None:
    """During an upgrade, a process of the version before migrations/024 COPYs whole records
    into audit_events (then a table): they are kept, and read back unchanged."""
    columns = trail.COLUMNS[: trail.COLUMNS.index("record") + 1]
    row: tuple[Any, ...] = (
        7,
        OWNER,
        "b86f17f3-0ddb-54f9-a9e0-9aa69b5709c8",
        None,
        "2026-03-01T10:15:31+00:00",
        "kms.amazonaws.com",
        "Encrypt",
        True,
        OWNER,
        "arn:aws:iam::1:user/a",
        "a",
        "AKIA",
        "192.0.2.1",
        "us-east-1",
        "r",
        None,
        "AWS::KMS::Key",
        ARN,
        [ARN],
        [],
        '{"whole":1}',
    )
    copy_sql = f"COPY audit_events ({', '.join(columns)}) FROM STDIN"
    with conn.transaction():
        with conn.cursor() as cursor, cursor.copy(copy_sql) as copy:
            copy.write_row(row)
        stored = conn.execute(
            "SELECT record, template_id, record_members FROM audit_event_rows"
        ).fetchall()
        shown = conn.execute("SELECT record FROM audit_events").fetchall()
        conn.execute("TRUNCATE audit_event_rows, audit_record_templates")
    assert stored == [('{"whole":1}', None, None)]
    assert shown == [('{"whole":1}',)]


def test_callers_without_a_template_still_keep_the_trails_caches_bounded(
    conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A caller whose text COPY must escape has no template (None is remembered, nothing is
    stored): many such callers must not grow the projection's memory without bound."""
    monkeypatch.setattr(trail, "MAX_CACHED", 3)
    projection = _projection()
    for n in range(5):
        actor = {"principal_arn": f"arn:aws:iam::{OWNER}:user/a", "user_agent": f"ua\t{n}"}
        projection._used(_use(2 + n, actor, "Encrypt", {}, {}, 1, "r"), 100 + n, [], {}, {})
    assert len(projection._templates) == 5 and not projection._stored_templates
    with conn.transaction():
        projection.apply(conn, [], [])
    assert projection._templates == {}
