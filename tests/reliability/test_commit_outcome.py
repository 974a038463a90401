"""A commit whose connection breaks is answered by what the database holds, once.

The writer's connection to PostgreSQL breaks at the worst moments: its server process is
terminated (pg_terminate_backend) while Encrypts stream in, or a proxy between the two
(tests/support/pg_proxy.py) cuts it once the commit statement has been sent, either
before the server saw it or after the server committed it and answered.

Specification: a request succeeds if and only if its Used event is durable, exactly one
copy of that event exists, and a connection lost before a commit landed fails no request
that a reconnect could serve.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import psycopg
from botocore.config import Config
from botocore.exceptions import ClientError

from app.bootstrap import Runtime
from app.infrastructure.event_store import WRITER_APPLICATION_NAME
from tests.conftest import REGION, Service, start_service
from tests.support.databases import drop, fresh_database
from tests.support.pg_proxy import PgProxy

THREADS = 8
TERMINATIONS = 5


def kms_client(service: Service) -> Any:
    """A KMS client that never retries: each answer is the service's own."""
    return boto3.client(
        "kms",
        endpoint_url=service.endpoint,
        region_name=REGION,
        aws_access_key_id=service.access_key_id,
        aws_secret_access_key=service.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}),
    )


@contextlib.contextmanager
def service_on(url: str, tmp: Path) -> Iterator[Service]:
    service, server, thread = start_service(url, tmp)
    try:
        yield service
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()


def used_events(runtime: Runtime, key_id: str) -> list[Any]:
    events = runtime.ledger.events.get(uuid.UUID(key_id))
    return [e for e in events if type(e).__name__ == "Used"]


def writer_pid(url: str) -> int | None:
    """The server process of the writer's session, if it has one now."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s",
            (WRITER_APPLICATION_NAME,),
        ).fetchone()
    return int(row[0]) if row else None


def terminate_writer_session(url: str) -> bool:
    pid = writer_pid(url)
    if pid is None:
        return False
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()
    return bool(row and row[0])


def test_terminating_the_writers_session_under_load_fails_no_request(tmp_path: Path) -> None:
    url = fresh_database("embedded")
    try:
        with service_on(url, tmp_path) as service:
            key_id = kms_client(service).create_key()["KeyMetadata"]["KeyId"]
            stop = threading.Event()
            succeeded: list[str] = []
            failed: list[str] = []

            def encrypt() -> None:
                kms = kms_client(service)
                while not stop.is_set():
                    try:
                        answer = kms.encrypt(KeyId=key_id, Plaintext=b"under load")
                        succeeded.append(answer["ResponseMetadata"]["RequestId"])
                    except ClientError as error:
                        failed.append(error.response["Error"]["Code"])

            clients = [threading.Thread(target=encrypt) for _ in range(THREADS)]
            for client in clients:
                client.start()
            terminated = 0
            for _ in range(TERMINATIONS):
                time.sleep(0.4)
                terminated += terminate_writer_session(url)
            time.sleep(0.4)
            stop.set()
            for client in clients:
                client.join(timeout=30)

            assert terminated == TERMINATIONS
            assert failed == []
            assert len(succeeded) > 100
            used = [e.request_id for e in used_events(service.runtime, key_id)]
            assert sorted(used) == sorted(succeeded)  # one durable Used event per success
    finally:
        drop(url)


@contextlib.contextmanager
def service_behind_proxy(tmp: Path) -> Iterator[tuple[Service, PgProxy]]:
    url = fresh_database("embedded")
    proxy = PgProxy(url)
    try:
        with service_on(proxy.url, tmp) as service:
            yield service, proxy
    finally:
        proxy.close()
        drop(url)


def encrypt_through_broken_commit(service: Service, proxy: PgProxy, *, deliver: bool) -> None:
    """Encrypt once while the proxy breaks the writer's connection on the commit that
    carries the key's events; the request must succeed with exactly one Used event."""
    kms = kms_client(service)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    for _ in range(3):  # the commit statement is prepared by now
        kms.encrypt(KeyId=key_id, Plaintext=b"warm")
    before = len(used_events(service.runtime, key_id))
    # The commit sends the key's id as 16 raw bytes (a binary uuid array).
    broken = proxy.break_next(
        uuid.UUID(key_id).bytes, deliver=deliver, application_name=WRITER_APPLICATION_NAME
    )

    answer = kms.encrypt(KeyId=key_id, Plaintext=b"through a broken commit")

    assert broken.is_set(), "the commit's connection was not broken"
    request_id = answer["ResponseMetadata"]["RequestId"]
    used = used_events(service.runtime, key_id)
    assert len(used) == before + 1
    assert [e.request_id for e in used].count(request_id) == 1
    plaintext = kms.decrypt(CiphertextBlob=answer["CiphertextBlob"])["Plaintext"]
    assert plaintext == b"through a broken commit"


def test_a_commit_that_landed_but_whose_answer_was_lost_is_answered_once(tmp_path: Path) -> None:
    with service_behind_proxy(tmp_path) as (service, proxy):
        encrypt_through_broken_commit(service, proxy, deliver=True)
        assert service.runtime.writer.stats.settled == 1  # found in the store, not re-sent


def test_a_commit_lost_before_the_server_saw_it_runs_again_once(tmp_path: Path) -> None:
    with service_behind_proxy(tmp_path) as (service, proxy):
        encrypt_through_broken_commit(service, proxy, deliver=False)
        assert service.runtime.writer.stats.settled == 0
        assert service.runtime.writer.stats.retries >= 1
