"""When a view's leader takes a pass: woken by the commits it applies and by a reader
waiting for it in any process, not by the hot path's ``Used`` events.

Each test makes the leader's idle pass an hour away, so only a wake-up can move it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.bootstrap import Runtime
from projections import queries
from projections.audit_trail import AuditTrailProjection
from projections.key_directory import KeyDirectoryProjection
from tests.conftest import ACCOUNT_ID, REGION, Service, running_service
from tests.support.waiting import eventually

AN_HOUR = 3600.0


def _head(runtime: Runtime) -> int:
    return runtime.ledger.recorder.max_notification_id() or 0


@pytest.fixture
def service_without_projector(tmp_path: Path) -> Iterator[Service]:
    with running_service(tmp_path, run_audit_projection=False) as service:
        yield service


@pytest.fixture
def sleepy_trail_leader(service_without_projector: Service) -> Iterator[AuditTrailProjection]:
    """The trail's leader, standing for the projector process of ``--workers N``."""
    runtime = service_without_projector.runtime
    leader = AuditTrailProjection(runtime.ledger, runtime.pool, runtime.database_url)
    leader.pass_interval, leader.idle_interval = 0.01, AN_HOUR
    leader.start()
    assert eventually(lambda: leader.leading and leader.position() >= _head(runtime))
    yield leader
    leader.stop()


def test_a_reader_in_another_process_wakes_the_leader_with_a_notify(
    service_without_projector: Service, sleepy_trail_leader: AuditTrailProjection
) -> None:
    runtime = service_without_projector.runtime
    assert runtime.audit is not None and not runtime.audit.leading
    service_without_projector.client().create_key(Description="recorded elsewhere")

    assert runtime.audit.wait_for_current(timeout=5.0)
    assert sleepy_trail_leader.position() >= _head(runtime)


@pytest.fixture
def service_with_sleepy_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Service]:
    monkeypatch.setattr(KeyDirectoryProjection, "idle_interval", AN_HOUR)
    with running_service(tmp_path) as service:
        assert eventually(lambda: service.runtime.directory.leading)
        yield service


def test_used_events_do_not_wake_the_key_directory(
    service_with_sleepy_directory: Service,
) -> None:
    runtime = service_with_sleepy_directory.runtime
    kms = service_with_sleepy_directory.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    assert runtime.directory.wait_for_current(timeout=5.0)
    time.sleep(0.2)  # the wait's last wake-ups may still bring one more pass
    listed_at = runtime.directory.position()

    for _ in range(10):
        kms.encrypt(KeyId=key_id, Plaintext=b"hot path")
    time.sleep(0.3)  # several pass intervals: a wake-up would have been taken by now

    assert _head(runtime) > listed_at
    assert runtime.directory.position() == listed_at


def test_a_key_change_wakes_the_key_directory(service_with_sleepy_directory: Service) -> None:
    runtime = service_with_sleepy_directory.runtime
    kms = service_with_sleepy_directory.client()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key_id, Plaintext=b"hot path")

    kms.create_alias(AliasName="alias/woken", TargetKeyId=key_id)

    # Read the view without waiting for it (a wait would wake it): the commit itself did.
    def listed() -> list[str]:
        rows = queries.list_aliases(runtime.pool, ACCOUNT_ID, REGION, key_id, None, 10)
        return [name for name, *_ in rows]

    assert eventually(lambda: listed() == ["alias/woken"])
