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
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from app.infrastructure.postgres.embedded import ensure_embedded_database, stop_embedded_postgres
from domain.policy import administrator_policy
from tests.conftest import REGION, Service, running_service, start_service
from tests.support.databases import drop, fresh_database
from tests.support.pg_proxy import PgProxy
from tests.support.waiting import eventually

CALL_BOUND = 1.5  # seconds: the writer's 1 s deadline, and room for a busy machine
READY_BOUND = 1.0
OUTAGE = 7.0  # seconds of calls in each outage: longer than the old ~2 s before hangs, and
# than the 5 s for which a principal is cached (authentication then reads it)
RECOVERY = 10.0  # seconds for calls to succeed again once the database is back
# Longer than database_io_timeout_seconds (10 s), the bound of a round trip that has no
# request's deadline: a path left without one shows as a call of about that length.
FROZEN_PAST_IO_TIMEOUT = 11.0
VIEW_LAG = 2.5  # seconds a busy key directory takes: more than any database bound of a call


def kms_client(service: Service, credentials: tuple[str, str] | None = None) -> Any:
    """A KMS client that never retries: each answer is the service's own."""
    access_key_id, secret = credentials or (service.access_key_id, service.secret_access_key)
    return boto3.client(
        "kms",
        endpoint_url=service.endpoint,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"total_max_attempts": 1}),
    )


def a_new_principal(service: Service, name: str) -> tuple[str, tuple[str, str]]:
    """An administrator made just now, and its access key: the service holds neither in
    memory, so the first call signed with it reads both."""
    identity = service.runtime.identity
    account_id = service.runtime.settings.default_account_id
    arn = identity.create_principal(
        account_id, name, policies={"AdministratorAccess": administrator_policy()}
    )
    return arn, identity.create_access_key(arn)


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
        assert "keyledger_audit_lag_seconds NaN" in answer.text  # (the exposition format's NaN)


def test_calls_that_read_outside_the_writer_fail_fast_while_the_database_stays_frozen(
    tmp_path: Path,
) -> None:
    """The calls that wait on the database outside the writer's batches (which have the
    writer's deadline): a list query in a thread, before any batch has found the database
    away (ListKeys: its authorization needs no round trip); a first-time caller, whose
    credential and principal must be read (and whose refusal is recorded); a caller whose
    principal changed. Each answers 503 DependencyTimeoutException within CALL_BOUND for as
    long as the database stays frozen, past the io timeout of reads without a deadline."""
    with service_behind_proxy(tmp_path) as (service, proxy):
        key_id, blob = a_key_in_use(service)
        _, newcomer = a_new_principal(service, "newcomer")
        changed_arn, changed_keys = a_new_principal(service, "changed")
        changed = kms_client(service, changed_keys)
        changed.encrypt(KeyId=key_id, Plaintext=b"before")  # its credential is held now
        service.runtime.identity.put_principal_policy(  # and its principal read again
            changed_arn, "Extra", administrator_policy()
        )
        kms = kms_client(service)
        calls: dict[str, Callable[[], Any]] = {
            "ListKeys (the writer not told)": lambda: kms.list_keys(),
            "Encrypt (a first-time caller)": lambda: kms_client(service, newcomer).encrypt(
                KeyId=key_id, Plaintext=b"x"
            ),
            "Encrypt (a changed principal)": lambda: changed.encrypt(KeyId=key_id, Plaintext=b"x"),
        } | kms_calls(kms, key_id, blob)
        slow: list[tuple[str, float, str]] = []
        codes: set[tuple[str, int]] = set()
        proxy.freeze()
        frozen_at = time.monotonic()
        while time.monotonic() - frozen_at < FROZEN_PAST_IO_TIMEOUT:
            for name, call in calls.items():
                seconds, code, status = timed(call)
                codes.add((code, status))
                if seconds > CALL_BOUND:
                    slow.append((name, round(seconds, 2), code))
        proxy.resume()
        assert slow == [], f"calls slower than {CALL_BOUND} s: {slow}"
        assert codes == {("DependencyTimeoutException", 503)}
        assert_service_recovers(service, key_id)
        assert kms_client(service, newcomer).encrypt(KeyId=key_id, Plaintext=b"back")


@contextlib.contextmanager
def busy_key_directory(service: Service) -> Iterator[None]:
    """The key directory takes VIEW_LAG seconds over each pass that applies events, as a
    view behind a burst of writes does; the database answers all along."""
    directory = service.runtime.directory
    apply = directory.apply

    def busy_apply(conn: Any, events: Any, ids: Any) -> None:
        time.sleep(VIEW_LAG)
        apply(conn, events, ids)

    directory.apply = busy_apply  # type: ignore[method-assign]
    try:
        yield
    finally:
        directory.apply = apply  # type: ignore[method-assign]


def test_a_busy_view_delays_list_keys_but_never_fails_them(tmp_path: Path) -> None:
    """Read-your-writes is no outage: ListKeys right after CreateKey waits for the key
    directory as long as the view needs (longer than any bound on a call's waits for the
    database, which answers all along) and lists the new key."""
    with running_service(tmp_path) as service, busy_key_directory(service):
        kms = kms_client(service)
        created = kms.create_key()["KeyMetadata"]["KeyId"]
        started = time.monotonic()
        listed = [entry["KeyId"] for entry in kms.list_keys(Limit=1000)["Keys"]]
        assert created in listed
        assert time.monotonic() - started > VIEW_LAG / 2  # it did wait for the view


def test_a_list_call_waiting_for_a_busy_view_fails_fast_when_the_database_freezes(
    tmp_path: Path,
) -> None:
    """ListKeys waits for the key directory (read-your-writes), polling the view's
    position; the database freezes meanwhile: the call answers 503 within CALL_BOUND of
    the freeze, not after the io timeout of a round trip without a deadline."""
    with service_behind_proxy(tmp_path) as (service, proxy), busy_key_directory(service):
        key_id, _ = a_key_in_use(service)
        kms = kms_client(service)
        kms.create_key()
        outcome: list[tuple[float, str, int]] = []
        listing = threading.Thread(target=lambda: outcome.append(timed(kms.list_keys)))
        started = time.monotonic()
        listing.start()
        time.sleep(VIEW_LAG / 4)
        proxy.freeze()
        frozen_after = time.monotonic() - started
        listing.join(timeout=30)
        proxy.resume()
        assert outcome, "ListKeys did not answer within 30 s"
        seconds, code, status = outcome[0]
        assert (code, status) == ("DependencyTimeoutException", 503)
        assert seconds - frozen_after < CALL_BOUND, f"503 {seconds - frozen_after:.2f} s after"
        assert_service_recovers(service, key_id)


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
