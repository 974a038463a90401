"""The audit trail's lag (``keyledger_audit_lag_seconds``): how long the oldest event not
yet in the trail has waited, so an idle spell before new traffic is not counted as lag.

The service here runs no audit projection of its own (as the workers of ``keyledger run
--workers N`` don't): the test drives it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import Service, running_service


@pytest.fixture
def service_without_projector(tmp_path: Path) -> Iterator[Service]:
    with running_service(tmp_path, run_audit_projection=False) as service:
        yield service


def test_lag_is_the_age_of_the_oldest_event_not_yet_in_the_trail(
    service_without_projector: Service,
) -> None:
    runtime = service_without_projector.runtime
    kms = service_without_projector.client("kms")
    trail = runtime.audit
    assert trail is not None
    trail.catch_up_to()
    assert trail.lag() == 0.0

    kms.create_key(Description="waits for the trail")
    an_hour_later = runtime.clock.now() + timedelta(hours=1)
    assert 3590 < trail.lag(an_hour_later) < 3610

    trail.catch_up_to()
    assert trail.lag(an_hour_later) == 0.0


def test_an_idle_spell_before_new_traffic_is_not_lag(service_without_projector: Service) -> None:
    runtime = service_without_projector.runtime
    kms = service_without_projector.client("kms")
    trail = runtime.audit
    assert trail is not None
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    trail.catch_up_to()
    idle = 1.5
    time.sleep(idle)  # nothing happens: the trail is current all along

    kms.encrypt(KeyId=key_id, Plaintext=b"after the quiet")
    assert 0.0 < trail.lag() < idle
