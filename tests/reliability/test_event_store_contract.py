"""The group-commit write path keeps the event store's contract with the library.

The writer appends through its own asynchronous path and the recorder settles versions
inside the table lock; the rows must stay exactly what eventsourcing's readers and
subscribers expect: decodable by the application's mapper, notification ids gap-free in
commit order, and every event delivered to a library subscription.
"""

from __future__ import annotations

import threading
import uuid

from tests.conftest import Service


def _encrypt_from_threads(service: Service, key_id: str, threads: int, each: int) -> None:
    def work() -> None:
        client = service.client()
        for _ in range(each):
            client.encrypt(KeyId=key_id, Plaintext=b"contract")

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_library_repository_rebuilds_the_key_the_writer_committed(service: Service) -> None:
    key_id = service.client().create_key()["KeyMetadata"]["KeyId"]
    _encrypt_from_threads(service, key_id, threads=4, each=10)

    rebuilt = service.runtime.ledger.repository.get(uuid.UUID(key_id))

    assert rebuilt.version == 41
    assert rebuilt.last_used_operation == "Encrypt"
    assert rebuilt.state == "Enabled"


def test_notification_ids_are_gap_free_and_follow_each_stream(service: Service) -> None:
    recorder = service.runtime.ledger.recorder
    start = (recorder.max_notification_id() or 0) + 1
    key_id = service.client().create_key()["KeyMetadata"]["KeyId"]
    _encrypt_from_threads(service, key_id, threads=4, each=10)

    notifications = recorder.select_notifications(start=start, limit=10_000)

    ids = [n.id for n in notifications]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    ours = [n.originator_version for n in notifications if str(n.originator_id) == key_id]
    assert ours == list(range(1, 42))


def test_library_subscription_delivers_every_committed_event(service: Service) -> None:
    recorder = service.runtime.ledger.recorder
    head = recorder.max_notification_id() or 0
    key_id = service.client().create_key()["KeyMetadata"]["KeyId"]
    _encrypt_from_threads(service, key_id, threads=2, each=5)
    expected = (recorder.max_notification_id() or 0) - head

    received = []
    with recorder.subscribe(gt=head) as subscription:
        for notification in subscription:
            received.append(notification.id)
            if len(received) == expected:
                break

    assert received == list(range(head + 1, head + expected + 1))
