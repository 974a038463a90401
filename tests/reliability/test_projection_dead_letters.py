"""A projection that cannot apply an event sets it aside after bounded retries and goes on.

Before, a batch that failed was retried every second for ever: one event stopped the view
(and with the audit trail, every later record) for good, and ``keyledger audit replay``
found nothing wrong since it replayed only up to the stalled position. Now the event is
set aside in ``projection_dead_letters``, later events are applied, the audit trail holds
a record saying one is missing, and replay compares against the ledger's head.

The poison is a projection subclass that refuses one event; the database is real.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.auth.credentials import Caller
from app.bootstrap import Runtime
from app.usecases.keys import CreateKeyRequest
from domain.keys import Key
from projections.audit_trail import UNAVAILABLE_EVENT_NAME, AuditTrailProjection
from projections.key_directory import KeyDirectoryProjection
from projections.replay import replay
from tests.audit.conftest import by_request, records, request_id
from tests.conftest import ACCOUNT_ID, REGION, Service, running_service
from tests.support.waiting import eventually

REPO = Path(__file__).resolve().parents[2]
POISON = "cannot be applied"
ADMIN = Caller(ACCOUNT_ID, f"arn:aws:iam::{ACCOUNT_ID}:user/admin", "AKLGTEST", REGION)


def _poisoned(events: Sequence[Any]) -> bool:
    return any(isinstance(e, Key.DescriptionChanged) and e.description == POISON for e in events)


class PoisonedDirectory(KeyDirectoryProjection):
    """The key directory, unable to apply one event (as a bug or bad data would make it)."""

    retry_delay = 0.01

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.poisoned_attempts = 0

    def apply(
        self, conn: psycopg.Connection[Any], events: Sequence[Any], ids: Sequence[int]
    ) -> None:
        super().apply(conn, events, ids)  # written, then rolled back with the batch
        if _poisoned(events):
            self.poisoned_attempts += 1
            raise RuntimeError("this event cannot be applied")


class PoisonedTrail(AuditTrailProjection):
    retry_delay = 0.01

    def apply(
        self, conn: psycopg.Connection[Any], events: Sequence[Any], ids: Sequence[int]
    ) -> None:
        super().apply(conn, events, ids)
        if _poisoned(events):
            raise RuntimeError("this record cannot be written")


def _history_with_poison(runtime: Runtime) -> dict[str, str]:
    """Keys made before and after an event the poisoned projections refuse."""
    service = runtime.service

    async def write() -> dict[str, str]:
        before = (
            await service.keys.create_key(ADMIN, CreateKeyRequest(description="before"))
        ).key_id
        await service.keys.update_key_description(ADMIN, before, POISON)
        await service.crypto.encrypt(ADMIN, before, b"x", {})
        after = (await service.keys.create_key(ADMIN, CreateKeyRequest(description="after"))).key_id
        await service.keys.disable_key(ADMIN, after)
        return {"before": before, "after": after}

    return asyncio.run(write())


def _poison_notification(runtime: Runtime, key_id: str) -> Any:
    head = runtime.ledger.recorder.max_notification_id() or 0
    found = [
        n
        for n in runtime.ledger.recorder.select_notifications(start=1, limit=head)
        if n.originator_id == uuid.UUID(key_id) and n.topic.endswith("DescriptionChanged")
    ]
    assert len(found) == 1
    return found[0]


def _query(runtime: Runtime, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with runtime.pool.connection() as conn:
        return conn.execute(sql, params).fetchall()


def test_an_event_a_projection_cannot_apply_is_set_aside_after_bounded_retries_and_later_events_are_applied(  # noqa: E501
    quiet_ledger: Runtime,
) -> None:
    keys = _history_with_poison(quiet_ledger)
    poison = _poison_notification(quiet_ledger, keys["before"])
    head = quiet_ledger.ledger.recorder.max_notification_id() or 0
    directory = PoisonedDirectory(quiet_ledger.ledger, quiet_ledger.pool, quiet_ledger.database_url)

    directory.catch_up_to(head)

    assert directory.position() == head
    assert directory.poisoned_attempts == directory.batch_attempts + directory.event_attempts
    (letter,) = _query(
        quiet_ledger,
        "SELECT projection_name, notification_id, originator_id, originator_version, topic,"
        " error_type, error_message, attempts FROM projection_dead_letters",
    )
    assert letter == (
        "key_directory",
        poison.id,
        poison.originator_id,
        poison.originator_version,
        poison.topic,
        "RuntimeError",
        "this event cannot be applied",
        directory.event_attempts,
    )
    later = _query(quiet_ledger, "SELECT key_state FROM kms_keys WHERE key_id = %s", keys["after"])
    assert later == [("Disabled",)]  # events after the poison are in the view
    found = directory.dead_letters()
    assert found.count == 1 and found.newest[0].notification_id == poison.id


# ==== the audit trail ==========================================================================
@pytest.fixture
def service_with_poisoned_trail(tmp_path: Path) -> Iterator[Service]:
    with running_service(tmp_path, run_audit_projection=False) as service:
        runtime = service.runtime
        leader = PoisonedTrail(runtime.ledger, runtime.pool, runtime.database_url)
        leader.pass_interval = leader.idle_interval = 0.02
        leader.start()
        assert eventually(lambda: leader.leading)
        try:
            yield service
        finally:
            leader.stop()


def test_the_audit_trail_holds_a_record_saying_a_set_aside_record_is_missing(
    service_with_poisoned_trail: Service, caplog: pytest.LogCaptureFixture
) -> None:
    service = service_with_poisoned_trail
    kms, cloudtrail = service.client("kms"), service.client("cloudtrail")
    key = kms.create_key(Description="before")["KeyMetadata"]
    kms.update_key_description(KeyId=key["KeyId"], Description=POISON)
    described = kms.describe_key(KeyId=key["KeyId"])
    poison = _poison_notification(service.runtime, key["KeyId"])

    # A call after the poison is recorded: the trail went on.
    with caplog.at_level(logging.ERROR, logger="keyledger.projections"):
        assert by_request(records(cloudtrail, "EventName", "DescribeKey"), request_id(described))
    assert not records(cloudtrail, "EventName", "UpdateKeyDescription")
    (record,) = records(cloudtrail, "EventName", UNAVAILABLE_EVENT_NAME)
    assert record["eventSource"] == "keyledger.amazonaws.com"
    assert record["eventType"] == "AwsServiceEvent"
    assert record["readOnly"] is True
    assert record["resources"] == [
        {"accountId": ACCOUNT_ID, "type": "AWS::KMS::Key", "ARN": key["Arn"]}
    ]
    details = record["serviceEventDetails"]
    assert details["notificationId"] == poison.id
    assert details["originatorId"] == key["KeyId"]
    assert details["topic"] == poison.topic
    assert details["errorType"] == "RuntimeError"
    rows = _query(
        service.runtime,
        "SELECT notification_id FROM audit_events WHERE event_name = %s",
        UNAVAILABLE_EVENT_NAME,
    )
    assert rows == [(poison.id,)]  # where the missing record would sort
    assert any(
        r.levelno == logging.ERROR and f"SET ASIDE event {poison.id}" in r.getMessage()
        for r in caplog.records
    )


# ==== replay compares with the ledger's head ===================================================
def test_replay_reports_a_stalled_projection_as_a_difference(quiet_ledger: Runtime) -> None:
    _history_with_poison(quiet_ledger)  # no projection runs: every view is stalled at 0

    result = replay(quiet_ledger.ledger, quiet_ledger.database_url, wait=0.2)

    assert not result.identical
    head = quiet_ledger.ledger.recorder.max_notification_id() or 0
    assert result.behind == {"key_directory": 0, "audit_trail": 0}
    assert result.positions == {"key_directory": head, "audit_trail": head}
    assert result.rows["audit_events"][0] == 0 < result.rows["audit_events"][1]
    assert "short of the head" in result.report()


def _cli(runtime: Runtime, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": runtime.database_url}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_replay_and_the_dead_letters_command_report_events_set_aside(
    quiet_ledger: Runtime,
) -> None:
    keys = _history_with_poison(quiet_ledger)
    poison = _poison_notification(quiet_ledger, keys["before"])
    ledger, pool, url = quiet_ledger.ledger, quiet_ledger.pool, quiet_ledger.database_url
    PoisonedDirectory(ledger, pool, url).catch_up_to()
    AuditTrailProjection(ledger, pool, url).catch_up_to()

    result = replay(ledger, url, wait=0)
    process = _cli(quiet_ledger, "audit", "replay", "--wait", "0")
    listed = _cli(quiet_ledger, "projections", "dead-letters")

    assert not result.behind
    assert [(d.projection, d.notification_id) for d in result.dead_letters] == [
        ("key_directory", poison.id)
    ]
    assert not result.identical
    assert result.difference_counts == {"kms_keys": 1}  # the description the view lacks
    assert process.returncode == 1, process.stdout + process.stderr
    assert f"event {poison.id}" in process.stdout and "set aside" in process.stdout
    assert listed.returncode == 1, listed.stdout + listed.stderr
    assert "key_directory: 1 event(s) set aside" in listed.stdout
    assert f"event {poison.id}: {poison.topic}" in listed.stdout


def test_readyz_and_metrics_show_the_events_a_view_set_aside(
    service_with_poisoned_trail: Service,
) -> None:
    service = service_with_poisoned_trail
    assert httpx.get(service.endpoint + "/readyz").json() == {"status": "ready"}
    kms = service.client("kms")
    key = kms.create_key(Description="before")["KeyMetadata"]
    kms.update_key_description(KeyId=key["KeyId"], Description=POISON)
    poison = _poison_notification(service.runtime, key["KeyId"])

    def degraded() -> dict[str, Any] | None:
        response = httpx.get(service.endpoint + "/readyz")
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and body["status"] == "degraded" else None

    assert eventually(lambda: degraded() is not None, timeout=30)
    gap = (degraded() or {})["projections"][AuditTrailProjection.name]
    assert gap["events_set_aside"] == 1
    assert gap["newest"][0]["notification_id"] == poison.id
    assert gap["newest"][0]["error_type"] == "RuntimeError"
    metrics = httpx.get(service.endpoint + "/metrics").text
    trail = AuditTrailProjection.name
    assert f'keyledger_projection_events_set_aside{{projection="{trail}"}} 1' in metrics
    assert 'keyledger_projection_events_set_aside{projection="key_directory"} 0' in metrics
