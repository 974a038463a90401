"""No request waits on the database on the event loop: while one request waits for a read
that a lock holds up, the same process keeps answering others.

Each test holds an ACCESS EXCLUSIVE lock on the table a path reads (from a connection of
its own), sends a request that needs that table, and checks that a request needing
nothing (TrentService.Noop) is still answered at once. Had the waiting read run on the
event loop, the Noop would wait for the lock too. The service runs as ``keyledger run``
runs it: the writer (whose commands run synchronously) on the HTTP server's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import uvicorn
from botocore.exceptions import ClientError

from app.bootstrap import Runtime
from app.entrypoints.server.asgi import KeyLedgerApp
from app.entrypoints.server.http_protocol import CoalescingHttpToolsProtocol
from app.infrastructure.vault import STOCK_LOW
from app.settings import load_settings
from app.usecases.authorization import PRINCIPAL_REFRESH_SECONDS
from tests.conftest import ACCESS_KEY_ID, ACCOUNT_ID, SECRET_ACCESS_KEY, Service
from tests.support.databases import drop, fresh_database
from tests.support.waiting import eventually

PROMPT_SECONDS = 1.0  # a Noop takes milliseconds; a blocked loop holds it for the lock
HELD_SECONDS = 0.3  # how long the waiting request is given to reach the lock
EVENT_TABLES = ("keyledger_events", "keyledger_snapshots")


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A service of its own (these tests lock its tables), its writer on the server's loop."""
    tmp = Path(tmp_path_factory.mktemp("loop"))
    url = fresh_database("embedded")
    settings = load_settings(
        database_url=url,
        data_dir=tmp,
        test_clock=True,
        scheduler_interval_seconds=3600,
        bootstrap_access_key_id=ACCESS_KEY_ID,
        bootstrap_secret_access_key=SECRET_ACCESS_KEY,
        root_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    runtime = Runtime.build(settings)
    runtime.start(writer_on_own_loop=False)  # KeyLedgerApp's lifespan starts it
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(
            KeyLedgerApp(runtime, on_started=runtime.bootstrap),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            http=CoalescingHttpToolsProtocol,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert eventually(lambda: server.started, timeout=30), "uvicorn did not start"
        endpoint = f"http://127.0.0.1:{port}"
        yield Service(runtime, endpoint, ACCESS_KEY_ID, SECRET_ACCESS_KEY, tmp / "service.log")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        runtime.stop()
        drop(url)


@pytest.fixture
def background() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@contextlib.contextmanager
def locked(service: Service, *tables: str) -> Iterator[None]:
    """Whoever reads or writes ``tables`` waits until the block ends."""
    with psycopg.connect(service.runtime.database_url) as conn, conn.transaction():
        conn.execute(f"LOCK TABLE {', '.join(tables)} IN ACCESS EXCLUSIVE MODE")
        yield


def noop_seconds(service: Service) -> float:
    """How long the service takes to answer a request that needs nothing."""
    started = time.monotonic()
    response = httpx.post(
        service.endpoint + "/",
        content=b"{}",
        headers={
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "TrentService.Noop",
        },
        timeout=PROMPT_SECONDS * 3,
    )
    assert response.status_code == 200
    return time.monotonic() - started


def answered_while_waiting(
    service: Service,
    background: ThreadPoolExecutor,
    tables: tuple[str, ...],
    call: Callable[[], Any],
) -> Future[Any]:
    """Start ``call`` while ``tables`` are locked; check the loop answers meanwhile."""
    with locked(service, *tables):
        waiting = background.submit(call)
        time.sleep(HELD_SECONDS)
        assert not waiting.done(), "the request did not wait for the lock: nothing was tested"
        try:
            assert noop_seconds(service) < PROMPT_SECONDS
        except httpx.TimeoutException:
            pytest.fail("the event loop waited on the database")
    return waiting


def test_an_unknown_access_key_is_looked_up_without_blocking_the_event_loop(service, background):
    stranger = service.client("kms", access_key_id="AKLG" + uuid.uuid4().hex[:16].upper())

    waiting = answered_while_waiting(service, background, EVENT_TABLES, stranger.list_keys)

    with pytest.raises(ClientError, match="UnrecognizedClientException"):
        waiting.result(timeout=30)


def test_a_wrapping_key_read_for_a_decrypt_does_not_block_the_event_loop(service, background):
    kms = service.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"kept")["CiphertextBlob"]
    vault = service.runtime.vault
    vault._wrapping_keys.clear()  # what a process that never used the key holds: nothing
    vault._materials.clear()

    waiting = answered_while_waiting(
        service, background, ("wrapping_keys",), lambda: kms.decrypt(CiphertextBlob=blob)
    )

    assert waiting.result(timeout=30)["Plaintext"] == b"kept"


def test_a_wrapping_key_made_for_a_rotation_does_not_block_the_event_loop(service, background):
    kms = service.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    service.runtime.vault._wrapping_keys.clear()

    waiting = answered_while_waiting(
        service, background, ("wrapping_keys",), lambda: kms.rotate_key_on_demand(KeyId=key_id)
    )

    waiting.result(timeout=30)
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"after rotation")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"after rotation"


def test_a_new_key_id_from_the_vault_has_its_wrapping_key_stored_already(service, background):
    vault = service.runtime.vault
    vault.new_key_id()  # the first asks for a stock
    assert eventually(lambda: len(vault._stock) >= STOCK_LOW, timeout=10)
    key_id = vault.new_key_id()

    def new_material_on_an_event_loop() -> bytes:
        async def on_the_loop() -> bytes:
            material = vault.new_material(
                key_id, version=1, now=datetime.now(UTC), rotation_type=None
            )
            return material.wrapped

        return asyncio.run(on_the_loop())

    with locked(service, "wrapping_keys"):
        made = background.submit(new_material_on_an_event_loop)
        assert made.result(timeout=PROMPT_SECONDS * 3)

    with psycopg.connect(service.runtime.database_url) as conn:
        stored = conn.execute(
            "SELECT wrapped_key IS NOT NULL FROM wrapping_keys WHERE owner_id = %s", (key_id,)
        ).fetchone()
    assert stored == (True,)


def test_a_principal_refreshed_for_authorization_does_not_block_the_event_loop(service, background):
    kms = service.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key_id, Plaintext=b"warm")
    time.sleep(PRINCIPAL_REFRESH_SECONDS + 0.1)  # the next use refreshes the caller

    waiting = answered_while_waiting(
        service, background, EVENT_TABLES, lambda: kms.encrypt(KeyId=key_id, Plaintext=b"x")
    )

    assert waiting.result(timeout=30)["KeyId"].endswith(key_id)


def test_a_denial_rechecked_against_the_store_does_not_block_the_event_loop(service, background):
    kms = service.client("kms")
    key_id = kms.create_key(Description="not theirs")["KeyMetadata"]["KeyId"]
    identity = service.runtime.identity
    nobody = identity.create_principal(ACCOUNT_ID, f"nobody-{uuid.uuid4().hex[:8]}")
    pair = identity.create_access_key(nobody)
    denied = service.client("kms", access_key_id=pair[0], secret_access_key=pair[1])
    with pytest.raises(ClientError, match="AccessDeniedException"):
        denied.encrypt(KeyId=key_id, Plaintext=b"x")  # its credential is cached now

    waiting = answered_while_waiting(
        service, background, EVENT_TABLES, lambda: denied.encrypt(KeyId=key_id, Plaintext=b"x")
    )

    with pytest.raises(ClientError, match="AccessDeniedException"):
        waiting.result(timeout=30)


def test_a_new_key_is_created_without_waiting_on_the_wrapping_keys_table(service, background):
    vault = service.runtime.vault
    vault.new_key_id()  # the first asks for a stock
    assert eventually(lambda: len(vault._stock) >= STOCK_LOW, timeout=10)
    kms = service.client("kms")

    with locked(service, "wrapping_keys"):
        created = background.submit(kms.create_key)
        key_id = created.result(timeout=PROMPT_SECONDS * 3)["KeyMetadata"]["KeyId"]
        assert noop_seconds(service) < PROMPT_SECONDS

    blob = kms.encrypt(KeyId=key_id, Plaintext=b"new")["CiphertextBlob"]
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"new"
