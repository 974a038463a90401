"""When the database goes away, requests fail fast; when it comes back, they succeed again.

A running service talks to PostgreSQL through a TCP proxy the test controls
(tests/support/pg_proxy.py): real sockets that the test can refuse (a stopped server) or
freeze (a server stopped with SIGSTOP: connections accepted and acknowledged, nothing
answered). One test stops and restarts a private embedded PostgreSQL for real.

Specification: during an outage every KMS call answers a retryable 503
DependencyTimeoutException within about the writer's deadline (1 s), for as long as the
outage lasts, and /readyz answers 503 within a second, saying why; /metrics answers; once
the database is back, calls succeed again without restarting the service.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.embedded_postgres import ensure_embedded_database, stop_embedded_postgres
from tests.conftest import REGION, Service, start_service
from tests.support.databases import drop, fresh_database
from tests.support.pg_proxy import PgProxy
from tests.support.waiting import eventually

CALL_BOUND = 1.5  # seconds: the writer's 1 s deadline, and room for a busy machine
READY_BOUND = 1.0
OUTAGE = 7.0  # seconds of calls in each outage: longer than the old ~2 s before hangs, and
# than the 5 s for which a principal is cached (authentication then reads it)
RECOVERY = 10.0  # seconds for calls to succeed again once the database is back


def kms_client(service: Service) -> Any:
    """A KMS client that never retries: each answer is the service's own."""
    return boto3.client(
        "kms", endpoint_url=service.endpoint, region_name=REGION,
        aws_access_key_id=service.access_key_id,
        aws_secret_access_key=service.secret_access_key,
        config=Config(retries={"total_max_attempts": 1}),
    )  # fmt: skip


@contextlib.contextmanager
def service_behind_proxy(tmp: Path) -> Iterator[tuple[Service, PgProxy]]:
    url = fresh_database("embedded")
    proxy = PgProxy(url)
    service, server, thread = start_service(proxy.url, tmp)
    try:
        yield service, proxy
    finally:
        proxy.resume()
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()
        proxy.close()
        drop(url)


def kms_calls(kms: Any, key_id: str, blob: bytes) -> dict[str, Callable[[], Any]]:
    """One call of each kind a client makes: crypto, reads, writes, listing."""
    return {
        "Encrypt": lambda: kms.encrypt(KeyId=key_id, Plaintext=b"secret"),
        "Decrypt": lambda: kms.decrypt(CiphertextBlob=blob),
        "GenerateDataKey": lambda: kms.generate_data_key(KeyId=key_id, KeySpec="AES_256"),
        "ReEncrypt": lambda: kms.re_encrypt(CiphertextBlob=blob, DestinationKeyId=key_id),
        "DescribeKey": lambda: kms.describe_key(KeyId=key_id),
        "CreateKey": lambda: kms.create_key(Description="during the outage"),
        "DisableKey": lambda: kms.disable_key(KeyId=key_id),
        "ListKeys": lambda: kms.list_keys(),
    }


def timed(call: Callable[[], Any]) -> tuple[float, str, int]:
    """(seconds, error code or "ok", HTTP status) of one call."""
    started = time.monotonic()
    try:
        call()
        code, status = "ok", 200
    except ClientError as error:
        code = error.response["Error"]["Code"]
        status = error.response["ResponseMetadata"]["HTTPStatusCode"]
    return time.monotonic() - started, code, status


def readyz(service: Service) -> tuple[float, int, dict[str, Any]]:
    started = time.monotonic()
    answer = httpx.get(service.endpoint + "/readyz", timeout=30)
    return time.monotonic() - started, answer.status_code, answer.json()


def assert_calls_fail_fast(service: Service, key_id: str, blob: bytes) -> None:
    """For OUTAGE seconds, every call answers 503 DependencyTimeoutException within
    CALL_BOUND, and /readyz 503 within READY_BOUND, saying the database is the matter."""
    kms = kms_client(service)
    slow: list[tuple[str, float, str]] = []
    codes: set[tuple[str, int]] = set()
    rounds = 0
    until = time.monotonic() + OUTAGE
    while time.monotonic() < until:
        rounds += 1
        for name, call in kms_calls(kms, key_id, blob).items():
            seconds, code, status = timed(call)
            codes.add((code, status))
            if seconds > CALL_BOUND:
                slow.append((name, round(seconds, 2), code))
        seconds, status, body = readyz(service)
        assert status == 503 and body["status"] == "unavailable", body
        assert "database" in body and body["database"] != "ok", body
        assert seconds < READY_BOUND, f"/readyz took {seconds:.2f} s"
    assert slow == [], f"calls slower than {CALL_BOUND} s: {slow}"
    assert codes == {("DependencyTimeoutException", 503)}
    assert rounds >= 3


def assert_service_recovers(service: Service, key_id: str) -> None:
    kms = kms_client(service)

    def encrypts() -> bool:
        return timed(lambda: kms.encrypt(KeyId=key_id, Plaintext=b"back"))[1] == "ok"

    assert eventually(encrypts, timeout=RECOVERY, poll=0.1), "Encrypt did not succeed again"
    assert eventually(lambda: readyz(service)[1] == 200, timeout=RECOVERY, poll=0.1)
    fresh = kms.create_key()["KeyMetadata"]["KeyId"]
    assert kms.decrypt(CiphertextBlob=kms.encrypt(KeyId=fresh, Plaintext=b"x")["CiphertextBlob"])


def a_key_in_use(service: Service) -> tuple[str, bytes]:
    kms = kms_client(service)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"secret")["CiphertextBlob"]
    return key_id, blob


def test_every_call_fails_fast_while_the_database_refuses_connections(
    tmp_path: Path,
) -> None:
    with service_behind_proxy(tmp_path) as (service, proxy):
        key_id, blob = a_key_in_use(service)
        proxy.refuse()
        assert_calls_fail_fast(service, key_id, blob)
        proxy.resume()
        assert_service_recovers(service, key_id)


def test_every_call_fails_fast_while_the_database_is_frozen(tmp_path: Path) -> None:
    with service_behind_proxy(tmp_path) as (service, proxy):
        key_id, blob = a_key_in_use(service)
        proxy.freeze()
        assert_calls_fail_fast(service, key_id, blob)
        proxy.resume()
        assert_service_recovers(service, key_id)


def test_readyz_answers_503_within_a_second_before_any_request_noticed(tmp_path: Path) -> None:
    with service_behind_proxy(tmp_path) as (service, proxy):
        a_key_in_use(service)
        assert readyz(service)[1] == 200
        proxy.freeze()
        seconds, status, body = readyz(service)
        assert (status, body["status"]) == (503, "unavailable"), body
        assert body["database"].startswith("no answer within"), body
        assert seconds < READY_BOUND
        proxy.resume()
        assert eventually(lambda: readyz(service)[1] == 200, timeout=RECOVERY, poll=0.1)


def test_metrics_answer_while_the_database_is_frozen(tmp_path: Path) -> None:
    with service_behind_proxy(tmp_path) as (service, proxy):
        key_id, _ = a_key_in_use(service)
        proxy.freeze()
        timed(lambda: kms_client(service).encrypt(KeyId=key_id, Plaintext=b"x"))
        started = time.monotonic()
        answer = httpx.get(service.endpoint + "/metrics", timeout=30)
        assert time.monotonic() - started < CALL_BOUND
        assert answer.status_code == 200
        assert "keyledger_database_available 0" in answer.text
        assert "keyledger_audit_lag_seconds nan" in answer.text


@pytest.fixture
def private_server() -> Iterator[Path]:
    """A PostgreSQL server of this test's own, which it may stop (never the shared ones).
    Not under pytest's tmp_path: the server runs as another user when the tests run as
    root, and pytest's directories are closed to others."""
    data_dir = Path(tempfile.mkdtemp(prefix="kl-outage-"))
    try:
        yield data_dir
    finally:
        stop_embedded_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_calls_succeed_again_after_the_server_is_stopped_and_restarted(
    private_server: Path, tmp_path: Path
) -> None:
    url = ensure_embedded_database(private_server)
    service, server, thread = start_service(url, tmp_path)
    try:
        key_id, blob = a_key_in_use(service)
        assert stop_embedded_postgres(private_server)
        assert_calls_fail_fast(service, key_id, blob)
        assert ensure_embedded_database(private_server) == url
        assert_service_recovers(service, key_id)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()
