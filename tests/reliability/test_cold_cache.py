"""A restarted service starts with an empty cache and reads keys as requests need them.

Requests for keys the writer has not cached wait while everything their batch needs is
read in bulk, then run; none of them fails, and every answer still follows its event.
"""

from __future__ import annotations

import base64
import os
import threading
import uuid
from pathlib import Path

import pytest

from tests.conftest import running_service, start_service
from tests.support.databases import drop, fresh_database

KEYS = 40
SMALL_CACHE = 100  # the smallest key cache the settings allow


def test_cold_service_serves_many_uncached_keys_at_once(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    url = fresh_database("embedded")
    root_key = base64.b64encode(os.urandom(32)).decode()
    warm, server, thread = start_service(
        url, Path(tmp_path_factory.mktemp("warm")), root_key=root_key
    )
    client = warm.client()
    blobs = {}
    for n in range(KEYS):
        key_id = client.create_key()["KeyMetadata"]["KeyId"]
        blobs[key_id] = client.encrypt(KeyId=key_id, Plaintext=f"secret {n}".encode())[
            "CiphertextBlob"
        ]
    server.should_exit = True
    thread.join(timeout=10)
    warm.runtime.stop()

    cold, server, thread = start_service(
        url, Path(tmp_path_factory.mktemp("cold")), root_key=root_key
    )
    try:
        failures: list[str] = []
        plaintexts: dict[str, bytes] = {}

        def decrypt(key_ids: list[str]) -> None:
            own = cold.client()
            for key_id in key_ids:
                try:
                    answer = own.decrypt(CiphertextBlob=blobs[key_id])
                    plaintexts[key_id] = answer["Plaintext"]
                except Exception as error:
                    failures.append(repr(error))

        ids = list(blobs)
        workers = [threading.Thread(target=decrypt, args=(ids[i::8],)) for i in range(8)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

        assert failures == []
        assert len(plaintexts) == KEYS
        assert cold.runtime.writer.stats.loads >= KEYS
        for key_id in ids:
            events = list(cold.runtime.ledger.events.get(uuid.UUID(key_id)))
            assert [type(e).__name__ for e in events][-1] == "Used"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        cold.runtime.stop()
        drop(url)


def test_a_key_cache_smaller_than_the_keys_in_use_stays_bounded_and_answers_right(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = Path(tmp_path_factory.mktemp("small-cache"))
    with running_service(tmp, key_cache_size=SMALL_CACHE) as service:
        client = service.client()
        keys = [client.create_key()["KeyMetadata"]["KeyId"] for _ in range(SMALL_CACHE + 30)]
        blobs = {
            key_id: client.encrypt(KeyId=key_id, Plaintext=key_id.encode())["CiphertextBlob"]
            for key_id in keys
        }
        loads_before = service.runtime.writer.stats.loads
        for _ in range(2):  # each pass evicts the keys the next one needs first
            for key_id in keys:
                assert client.decrypt(CiphertextBlob=blobs[key_id])["Plaintext"] == key_id.encode()

        writer, vault = service.runtime.writer, service.runtime.vault
        assert writer.stats.loads > loads_before  # evicted keys were read back
        assert len(writer._cache) <= SMALL_CACHE
        assert len(vault._wrapping_keys) <= SMALL_CACHE
        assert len(vault._materials) <= 2 * SMALL_CACHE
        for key_id in keys[:3]:
            operations = [
                e.operation
                for e in service.runtime.ledger.events.get(uuid.UUID(key_id))
                if type(e).__name__ == "Used"
            ]
            assert operations == ["Encrypt", "Decrypt", "Decrypt"]
