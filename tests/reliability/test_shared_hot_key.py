"""Several service processes on one database and one hot key.

Specifications for the write path under contention: the versions of a key's stream are
settled inside the event store's table lock, so concurrent writers never surface
conflicts as errors, never lose or duplicate an event, and a state change made through
one process stops every use through the others.
"""

from __future__ import annotations

import base64
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from tests.conftest import Service, start_service
from tests.support.databases import drop, fresh_database

ENCRYPTS_PER_THREAD = 40
THREADS = 8


@pytest.fixture(scope="module")
def two_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service]]:
    url = fresh_database("embedded")
    root_key = base64.b64encode(os.urandom(32)).decode()
    started = [
        start_service(url, Path(tmp_path_factory.mktemp(f"node{i}")), root_key=root_key)
        for i in range(2)
    ]
    yield started[0][0], started[1][0]
    for service, server, thread in started:
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()
    drop(url)


def _encrypt_concurrently(services: tuple[Service, Service], key_id: str) -> tuple[int, list[str]]:
    successes: list[int] = []
    errors: list[str] = []

    def work(service: Service) -> None:
        client = service.client()
        for _ in range(ENCRYPTS_PER_THREAD):
            try:
                client.encrypt(KeyId=key_id, Plaintext=b"hot key")
                successes.append(1)
            except ClientError as error:
                errors.append(error.response["Error"]["Code"])

    threads = [threading.Thread(target=work, args=(services[i % 2],)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(successes), errors


def test_two_processes_share_a_hot_key_without_errors(two_services: tuple[Service, Service]):
    first, _ = two_services
    key_id = first.client().create_key()["KeyMetadata"]["KeyId"]

    succeeded, errors = _encrypt_concurrently(two_services, key_id)

    assert errors == []
    assert succeeded == THREADS * ENCRYPTS_PER_THREAD


def test_shared_hot_key_stream_has_every_use_once_in_contiguous_versions(
    two_services: tuple[Service, Service],
):
    first, _ = two_services
    key_id = first.client().create_key()["KeyMetadata"]["KeyId"]

    succeeded, _ = _encrypt_concurrently(two_services, key_id)

    events = list(first.runtime.ledger.events.get(uuid.UUID(key_id)))
    versions = [event.originator_version for event in events]
    request_ids = [event.request_id for event in events if type(event).__name__ == "Used"]
    assert versions == list(range(1, len(events) + 1))
    assert len(request_ids) == succeeded
    assert len(set(request_ids)) == succeeded


def test_disable_through_one_process_stops_encrypts_through_the_other(
    two_services: tuple[Service, Service],
):
    first, second = two_services
    key_id = first.client().create_key()["KeyMetadata"]["KeyId"]
    first.client().encrypt(KeyId=key_id, Plaintext=b"warm the first process's cache")

    second.client().disable_key(KeyId=key_id)

    with pytest.raises(ClientError) as refused:
        first.client().encrypt(KeyId=key_id, Plaintext=b"must not be used")
    assert refused.value.response["Error"]["Code"] == "DisabledException"
    events = list(first.runtime.ledger.events.get(uuid.UUID(key_id)))
    assert [type(e).__name__ for e in events][-1] == "Disabled"


def test_stale_process_rechecks_state_after_a_conflicting_change(
    two_services: tuple[Service, Service],
):
    first, second = two_services
    key_id = first.client().create_key()["KeyMetadata"]["KeyId"]
    first.client().encrypt(KeyId=key_id, Plaintext=b"cache it in the first process")
    conflicts_before = first.runtime.writer.stats.conflicts

    second.client().schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with pytest.raises(ClientError) as refused:
        first.client().encrypt(KeyId=key_id, Plaintext=b"must not be used")
    assert refused.value.response["Error"]["Code"] == "KMSInvalidStateException"
    assert first.runtime.writer.stats.conflicts == conflicts_before + 1
