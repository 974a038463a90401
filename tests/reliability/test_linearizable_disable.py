"""DisableKey is linearizable with concurrent Encrypts, in one process and across two.

While 16 clients encrypt, the key is disabled. Afterwards the key's event stream must
show: no ``Used`` event after ``Disabled``; one ``Used`` event per acknowledged Encrypt
(matched by request id) and none for a failed one; and every Encrypt sent after DisableKey
answered failed with DisabledException."""

from __future__ import annotations

import base64
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from app.bootstrap import Runtime
from tests.conftest import Service, start_service
from tests.support.databases import database_backends, drop, fresh_database

THREADS = 16
SUCCESSES_BEFORE_DISABLE = 120
ATTEMPTS_AFTER_DISABLE = 4  # per thread
TIMEOUT = 60


@dataclass
class Outcome:
    started: float
    finished: float
    request_id: str
    error: str | None  # the AWS error code, None for success
    status: int


@dataclass
class Storm:
    outcomes: list[Outcome]
    disable_sent: float
    disable_returned: float


def encrypt_storm(clients: list[Any], key_id: str, disabler: Any) -> Storm:
    """Encrypt from every client until each has sent a few requests after DisableKey
    (sent through ``disabler`` once enough Encrypts succeeded) has returned."""
    outcomes: list[Outcome] = []
    disabled_at: list[float] = []
    successes = threading.Semaphore(0)
    start = threading.Barrier(len(clients) + 1)
    deadline = time.monotonic() + TIMEOUT

    def encrypt_until_done(client: Any) -> None:
        start.wait()
        after = 0
        while after < ATTEMPTS_AFTER_DISABLE and time.monotonic() < deadline:
            started = time.monotonic()
            if disabled_at and started > disabled_at[0]:
                after += 1
            try:
                answer = client.encrypt(KeyId=key_id, Plaintext=secrets.token_bytes(32))
                metadata, error = answer["ResponseMetadata"], None
                successes.release()
            except ClientError as failure:
                metadata = failure.response["ResponseMetadata"]
                error = failure.response["Error"]["Code"]
            outcomes.append(
                Outcome(
                    started,
                    time.monotonic(),
                    metadata["RequestId"],
                    error,
                    metadata["HTTPStatusCode"],
                )
            )

    threads = [threading.Thread(target=encrypt_until_done, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    start.wait()
    for _ in range(SUCCESSES_BEFORE_DISABLE):
        assert successes.acquire(timeout=TIMEOUT), "the encrypts did not get going"
    disable_sent = time.monotonic()
    disabler.disable_key(KeyId=key_id)
    disable_returned = time.monotonic()
    disabled_at.append(disable_returned)
    for thread in threads:
        thread.join(timeout=TIMEOUT)
        assert not thread.is_alive()
    return Storm(outcomes, disable_sent, disable_returned)


def check_linearizable(
    storm: Storm, events: list[Any], ignore: frozenset[str] = frozenset()
) -> None:
    names = [type(event).__name__ for event in events]
    assert names.count("Disabled") == 1, names
    disabled = next(e for e in events if type(e).__name__ == "Disabled")
    used = [e for e in events if type(e).__name__ == "Used" and e.request_id not in ignore]
    versions = [e.originator_version for e in events]
    assert versions == list(range(1, len(events) + 1))  # a gapless, ordered stream

    # 1. No use is recorded after the disable.
    late = [
        e.originator_version for e in used if e.originator_version > disabled.originator_version
    ]
    assert late == [], f"Used events after Disabled (version {disabled.originator_version})"

    # 2. Every acknowledged Encrypt has its durable Used event, and nothing else has one.
    succeeded = [o for o in storm.outcomes if o.error is None]
    failed = [o for o in storm.outcomes if o.error is not None]
    used_ids = [e.request_id for e in used]
    assert all(e.operation == "Encrypt" for e in used)
    assert len(used_ids) == len(set(used_ids))
    assert sorted(used_ids) == sorted(o.request_id for o in succeeded)
    assert not {o.request_id for o in failed} & set(used_ids)
    assert len(succeeded) >= SUCCESSES_BEFORE_DISABLE

    # 3. The only failure is DisabledException, and every Encrypt sent after DisableKey
    # returned got it.
    assert {(o.error, o.status) for o in failed} <= {("DisabledException", 400)}
    after = [o for o in storm.outcomes if o.started > storm.disable_returned]
    assert len(after) >= THREADS * (ATTEMPTS_AFTER_DISABLE - 1)
    assert all(o.error == "DisabledException" for o in after), [o.error for o in after]
    assert all(o.started < storm.disable_returned for o in succeeded)

    # The race was real: Encrypts were in flight while DisableKey was.
    overlapping = [
        o
        for o in storm.outcomes
        if o.started < storm.disable_returned and o.finished > storm.disable_sent
    ]
    assert overlapping


def key_events(runtime: Runtime, key_id: str) -> list[Any]:
    return list(runtime.ledger.events.get(uuid.UUID(key_id)))


# --- one process ---------------------------------------------------------------------------------
def test_disable_is_linearizable_with_concurrent_encrypts(service: Service):
    admin = service.client()
    key_id = admin.create_key(Description="disable under load")["KeyMetadata"]["KeyId"]
    clients = [service.client() for _ in range(THREADS)]

    storm = encrypt_storm(clients, key_id, admin)

    check_linearizable(storm, key_events(service.runtime, key_id))
    assert admin.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Disabled"


# --- two processes on one database ------------------------------------------------------------
@pytest.fixture(scope="module", params=database_backends())
def two_processes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Service, Service]]:
    url = fresh_database(request.param)
    root_key = base64.b64encode(secrets.token_bytes(32)).decode()  # peers must share it
    peers = [
        start_service(url, tmp_path_factory.mktemp(f"peer-{name}"), root_key=root_key)
        for name in "ab"
    ]
    yield peers[0][0], peers[1][0]
    for service, server, thread in peers:
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()
    drop(url)


def test_disable_in_one_process_stops_encrypts_in_the_other(two_processes):
    first, second = two_processes
    key_id = first.client().create_key(Description="shared")["KeyMetadata"]["KeyId"]
    # Both processes have the key hot in their writers' caches before the storm.
    warmups = {
        peer.client().encrypt(KeyId=key_id, Plaintext=b"warm")["ResponseMetadata"]["RequestId"]
        for peer in (first, second)
    }
    conflicts_before = second.runtime.writer.stats.conflicts
    clients = [second.client() for _ in range(THREADS)]

    storm = encrypt_storm(clients, key_id, first.client())

    events = key_events(first.runtime, key_id)
    assert warmups <= {getattr(e, "request_id", None) for e in events}
    check_linearizable(storm, events, ignore=frozenset(warmups))
    # The second process learned of the disable through a version conflict.
    assert second.runtime.writer.stats.conflicts > conflicts_before
    assert key_events(second.runtime, key_id) == events


def test_both_processes_encrypt_while_one_disables(two_processes):
    first, second = two_processes
    key_id = second.client().create_key(Description="shared, both busy")["KeyMetadata"]["KeyId"]
    clients = [(first if n % 2 else second).client() for n in range(THREADS)]

    storm = encrypt_storm(clients, key_id, first.client())

    check_linearizable(storm, key_events(second.runtime, key_id))
    for peer in (first, second):
        state = peer.client().describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"]
        assert state == "Disabled"
