"""Shared fixtures: a real PostgreSQL (embedded, and the local server when present), a
real uvicorn server in a thread, and real AWS clients pointed at it."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import pytest
import uvicorn
from botocore.config import Config

from app.bootstrap import Runtime
from app.entrypoints.server.asgi import KeyLedgerApp
from app.entrypoints.server.http_protocol import CoalescingHttpToolsProtocol
from app.settings import load_settings
from tests.support.databases import database_backends, drop, fresh_database

ACCOUNT_ID = "111122223333"
REGION = "us-east-1"
ACCESS_KEY_ID = "AKLGTESTADMIN0000001"
SECRET_ACCESS_KEY = "test-secret-" + "x" * 28


@dataclass
class Service:
    runtime: Runtime
    endpoint: str
    access_key_id: str
    secret_access_key: str
    log_path: Path

    def client(self, service: str = "kms", **overrides: str):  # type: ignore[no-untyped-def]
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=overrides.get("region", REGION),
            aws_access_key_id=overrides.get("access_key_id", self.access_key_id),
            aws_secret_access_key=overrides.get("secret_access_key", self.secret_access_key),
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_service(
    database_url: str, tmp: Path, *, port: int | None = None, **settings: object
) -> tuple[Service, uvicorn.Server, threading.Thread]:
    """A runtime and its server on loopback HTTP (on ``port``, when a setting must name it
    before the service starts)."""
    log_path = tmp / "service.log"
    if settings.get("root_key_provider", "file") == "file":
        settings.setdefault("root_key", base64.b64encode(secrets.token_bytes(32)).decode())
    config = load_settings(
        database_url=database_url,
        data_dir=tmp,
        test_clock=True,
        scheduler_interval_seconds=3600,
        bootstrap_access_key_id=ACCESS_KEY_ID,
        bootstrap_secret_access_key=SECRET_ACCESS_KEY,
        **settings,
    )
    runtime = Runtime.build(config)
    runtime.start()
    runtime.when_unsealed(runtime.bootstrap)  # at once, unless the root key is sealed
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            KeyLedgerApp(runtime),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            http=CoalescingHttpToolsProtocol,
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    service = Service(
        runtime, f"http://127.0.0.1:{port}", ACCESS_KEY_ID, SECRET_ACCESS_KEY, log_path
    )
    return service, server, thread


@contextlib.contextmanager
def running_service(tmp: Path, backend: str = "embedded", **settings: object) -> Iterator[Service]:
    """A service of its own on a fresh database, stopped and the database dropped after."""
    url = fresh_database(backend)
    service, server, thread = start_service(url, tmp, **settings)
    try:
        yield service
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()
        drop(url)


@pytest.fixture(scope="session", params=database_backends())
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """One running KeyLedger per database backend, shared by the session's tests."""
    url = fresh_database(request.param)
    tmp = tmp_path_factory.mktemp(f"keyledger-{request.param}")
    svc, server, thread = start_service(url, tmp)
    yield svc
    server.should_exit = True
    thread.join(timeout=10)
    svc.runtime.stop()
    drop(url)


@pytest.fixture(params=database_backends()[:1])
def quiet_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A ledger of its own, written by a runtime that runs no projection (tests that
    drive projections, or their runner, themselves)."""
    url = fresh_database(request.param)
    settings = load_settings(
        database_url=url,
        data_dir=tmp_path,
        root_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    runtime = Runtime.build(settings)
    runtime.writer.start()
    runtime.bootstrap()
    try:
        yield runtime
    finally:
        runtime.stop()
        drop(url)


@pytest.fixture
def kms(service: Service):  # type: ignore[no-untyped-def]
    return service.client("kms")


@pytest.fixture
def key_id(kms) -> str:  # type: ignore[no-untyped-def]
    return str(kms.create_key(Description="test key")["KeyMetadata"]["KeyId"])


os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
# Tests create keys faster than AWS's CreateKey quota (5 a second) allows: the services they
# start run without request quotas, except tests/aws/test_quotas.py's own.
os.environ.setdefault("KEYLEDGER_QUOTAS", "off")


# --- tiers (docs/testing.md) ---------------------------------------------------------------
# Directories whose tests run in memory: marked "memory" here unless marked "postgres" or
# "e2e" themselves. Elsewhere a test is in the memory tier only if it says so.
MEMORY_TIER_DIRS = frozenset({"domain", "unit", "usecases"})
# Fixtures that need PostgreSQL (or a running service): a memory test may not ask for them.
DATABASE_FIXTURES = frozenset({"service", "kms", "key_id", "postgres_backend", "workdir"})


@pytest.hookimpl(tryfirst=True)  # before -m selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        if item.get_closest_marker("postgres") or item.get_closest_marker("e2e"):
            continue
        parts = Path(item.path).relative_to(tests_dir).parts
        if parts[0] in MEMORY_TIER_DIRS:
            item.add_marker(pytest.mark.memory)
        if item.get_closest_marker("memory"):
            needs = DATABASE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if needs:
                raise pytest.UsageError(
                    f"{item.nodeid} is in the memory tier but asks for {sorted(needs)}: "
                    "mark it postgres (or move it out of tests/domain, tests/unit, tests/usecases)"
                )
