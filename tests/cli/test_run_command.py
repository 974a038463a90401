"""``keyledger run`` as a developer starts it: a fresh directory, the embedded PostgreSQL,
a generated root key and administrator key pair; Ctrl-C; a second start reusing it all;
and the identity commands against the same data directory."""

from __future__ import annotations

import re
import signal
import stat
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import psutil
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.cli.keyledger_process import (
    KeyLedgerProcess,
    answering_process,
    clean_env,
    free_port,
    keyledger,
)
from tests.support.waiting import eventually

# Starts the real `keyledger run` process (docs/testing.md).
pytestmark = pytest.mark.e2e

ADMIN_ACCOUNT = "111122223333"
REGION = "us-east-1"
ROOT_KEY_WARNING = "GENERATED A DEVELOPMENT ROOT KEY"
EXPORT = re.compile(r"^\s*export (AWS_ACCESS_KEY_ID|AWS_SECRET_ACCESS_KEY)=(\S+)\s*$", re.M)


def kms(endpoint: str, access_key_id: str, secret: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret,
        config=Config(retries={"max_attempts": 1}),
    )


@dataclass
class Workspace:
    """A developer's checkout: its own working directory and HOME."""

    cwd: Path
    env: dict[str, str]
    runs: int = 0

    @property
    def data_dir(self) -> Path:
        return self.cwd / ".keyledger"

    def start(self, *args: str, **variables: str) -> KeyLedgerProcess:
        self.runs += 1
        return KeyLedgerProcess(
            "--port",
            str(free_port()),
            *args,
            cwd=self.cwd,
            env=self.env | variables,
            log_path=self.cwd.parent / f"run-{self.runs}.log",
        )

    def keyledger(self, *args: str) -> str:
        return keyledger(*args, cwd=self.cwd, env=self.env)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    base = tmp_path_factory.mktemp("developer")
    (base / "home").mkdir()
    (base / "checkout").mkdir()
    space = Workspace(base / "checkout", clean_env(base / "home"))
    yield space
    # Stop the embedded server if a failed test left it running: a last attach does it.
    if (space.data_dir / "pgdata" / "postmaster.pid").exists():
        keyledger("migrate", cwd=space.cwd, env=space.env)


@dataclass
class FirstRun:
    access_key_id: str
    secret: str
    key_id: str
    ciphertext: bytes
    new_principal_key: tuple[str, str]
    new_principal_key_id: str


@pytest.fixture(scope="module")
def first_run(workspace: Workspace) -> FirstRun:
    """Start in a fresh directory, use it, issue a second identity, Ctrl-C."""
    started = time.monotonic()
    process = workspace.start()
    try:
        endpoint = process.wait_until_serving(timeout=60)
        output = process.output()
        pair = dict(EXPORT.findall(output))
        assert set(pair) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}, output
        admin = kms(endpoint, pair["AWS_ACCESS_KEY_ID"], pair["AWS_SECRET_ACCESS_KEY"])
        key_id = admin.create_key(Description="first run")["KeyMetadata"]["KeyId"]
        ciphertext = admin.encrypt(KeyId=key_id, Plaintext=b"hello developer")["CiphertextBlob"]
        assert admin.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"hello developer"
        assert time.monotonic() - started < 60, "a first start must be usable within a minute"

        # The identity commands, while the server runs, share its embedded PostgreSQL.
        account = "444455556666"
        workspace.keyledger("accounts", "create", account, "--name", "apps")
        # Like an IAM user, the new principal may do only what its identity policy allows.
        kms_full_access = '{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}'
        principal = workspace.keyledger(
            "principals",
            "create",
            "--account",
            account,
            "--name",
            "app",
            "--policy",
            f"KmsFullAccess={kms_full_access}",
        ).strip()
        assert principal == f"arn:aws:iam::{account}:user/app"
        issued = dict(
            line.split("=", 1)
            for line in workspace.keyledger("access-keys", "create", "--principal", principal)
            .strip()
            .splitlines()
        )
        app = kms(endpoint, issued["AWS_ACCESS_KEY_ID"], issued["AWS_SECRET_ACCESS_KEY"])
        app_key = app.create_key(Description="app's own")["KeyMetadata"]
        assert app_key["Arn"].startswith(f"arn:aws:kms:{REGION}:{account}:key/")
        blob = app.encrypt(KeyId=app_key["KeyId"], Plaintext=b"app data")["CiphertextBlob"]
        assert app.decrypt(CiphertextBlob=blob)["Plaintext"] == b"app data"
        with pytest.raises(ClientError) as other_account:
            app.describe_key(KeyId=key_id)  # the administrator's key, in another account
        assert other_account.value.response["Error"]["Code"] == "NotFoundException"
    except BaseException:
        process.kill()
        raise
    status = process.interrupt(timeout=20)
    assert status in (0, 130), process.output()
    return FirstRun(
        pair["AWS_ACCESS_KEY_ID"],
        pair["AWS_SECRET_ACCESS_KEY"],
        key_id,
        ciphertext,
        (issued["AWS_ACCESS_KEY_ID"], issued["AWS_SECRET_ACCESS_KEY"]),
        app_key["KeyId"],
    )


def test_first_start_generates_a_root_key_and_administrator_credentials(
    workspace: Workspace, first_run: FirstRun
):
    output = (workspace.cwd.parent / "run-1.log").read_text()
    assert ROOT_KEY_WARNING in output
    assert "Do not use it in production" in output
    root_key = workspace.data_dir / "root.key"
    assert stat.S_IMODE(root_key.stat().st_mode) == 0o600
    credentials = workspace.data_dir / "credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    saved = credentials.read_text()
    assert f"aws_access_key_id = {first_run.access_key_id}" in saved
    assert f"aws_secret_access_key = {first_run.secret}" in saved
    assert "[keyledger]" in saved
    assert first_run.access_key_id.startswith("AKLG")


def test_ctrl_c_stops_cleanly(workspace: Workspace, first_run: FirstRun):
    output = (workspace.cwd.parent / "run-1.log").read_text()
    assert "Traceback" not in output
    assert "Shutting down" in output or "Finished server process" in output


def test_a_second_start_reuses_the_data_and_the_credentials(
    workspace: Workspace, first_run: FirstRun
):
    root_key = (workspace.data_dir / "root.key").read_bytes()
    credentials = (workspace.data_dir / "credentials").read_bytes()
    # While stopped, the identity commands start the embedded server themselves.
    app_key_id = first_run.new_principal_key[0]
    assert app_key_id in workspace.keyledger("access-keys", "deactivate", app_key_id)

    process = workspace.start()
    try:
        endpoint = process.wait_until_serving(timeout=60)
        admin = kms(endpoint, first_run.access_key_id, first_run.secret)
        described = admin.describe_key(KeyId=first_run.key_id)["KeyMetadata"]
        assert described["Description"] == "first run"
        assert admin.decrypt(CiphertextBlob=first_run.ciphertext)["Plaintext"] == (
            b"hello developer"
        )
        with pytest.raises(ClientError) as refused:
            kms(endpoint, *first_run.new_principal_key).list_keys()
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    finally:
        status = process.interrupt(timeout=20)
    assert status in (0, 130), process.output()
    output = process.output()
    assert ROOT_KEY_WARNING not in output
    assert "export AWS_SECRET_ACCESS_KEY" not in output  # no new pair: the saved one is reused
    assert "credentials in .keyledger/credentials" in output
    assert (workspace.data_dir / "root.key").read_bytes() == root_key
    assert (workspace.data_dir / "credentials").read_bytes() == credentials


def test_bootstrap_variables_give_the_administrator_a_known_pair(
    workspace: Workspace, first_run: FirstRun
):
    bootstrap_id = "AKLGBOOT" + uuid.uuid4().hex[:12].upper()
    bootstrap_secret = "bootstrap-" + uuid.uuid4().hex
    process = workspace.start(
        KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID=bootstrap_id,
        KEYLEDGER_BOOTSTRAP_SECRET_ACCESS_KEY=bootstrap_secret,
    )
    try:
        endpoint = process.wait_until_serving(timeout=60)
        admin = kms(endpoint, bootstrap_id, bootstrap_secret)
        # The same administrator: it sees the key made with the generated pair.
        assert admin.describe_key(KeyId=first_run.key_id)["KeyMetadata"]["Enabled"] is True
        keys = {k["KeyId"] for k in admin.list_keys()["Keys"]}
        assert first_run.key_id in keys and first_run.new_principal_key_id not in keys
        # The generated pair keeps working beside it.
        kms(endpoint, first_run.access_key_id, first_run.secret).list_keys()
    finally:
        status = process.interrupt(timeout=20)
    assert status in (0, 130), process.output()
    output = process.output()
    assert f"uses the bootstrap access key {bootstrap_id}" in output
    assert bootstrap_secret not in output


def _projectors(supervisor_pid: int) -> list[psutil.Process]:
    """The supervisor's audit-projection processes (``projections run --audit-only``)."""
    found = []
    for child in psutil.Process(supervisor_pid).children(recursive=True):
        try:
            if "--audit-only" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # gone, or a zombie not reaped yet
            continue
    return found


def test_workers_serve_with_the_audit_trail_in_a_process_of_its_own_restarted_if_it_dies(
    workspace: Workspace, first_run: FirstRun
):
    process = workspace.start("--workers", "2")
    try:
        endpoint = process.wait_until_serving(timeout=60)
        admin = kms(endpoint, first_run.access_key_id, first_run.secret)
        trail = boto3.client(
            "cloudtrail",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=first_run.access_key_id,
            aws_secret_access_key=first_run.secret,
        )

        def recorded(key_arn: str, event_name: str) -> Callable[[], bool]:
            def check() -> bool:
                events = trail.lookup_events(
                    LookupAttributes=[{"AttributeKey": "ResourceName", "AttributeValue": key_arn}]
                )["Events"]
                return any(e["EventName"] == event_name for e in events)

            return check

        key = admin.create_key(Description="several workers")["KeyMetadata"]
        assert eventually(recorded(key["Arn"], "CreateKey"), timeout=20, poll=0.1)
        (projector,) = _projectors(process.process.pid)

        projector.kill()
        assert eventually(
            lambda: [p.pid for p in _projectors(process.process.pid)] not in ([], [projector.pid]),
            timeout=20,
            poll=0.1,
        )
        admin.encrypt(KeyId=key["KeyId"], Plaintext=b"after the restart")
        assert eventually(recorded(key["Arn"], "Encrypt"), timeout=20, poll=0.1)
        survivors = _projectors(process.process.pid)
    finally:
        status = process.interrupt(timeout=30)
    assert status in (0, 130), process.output()
    assert eventually(lambda: not any(p.is_running() for p in survivors), timeout=10)


def test_workers_share_the_connections_and_sigterm_stops_them_and_the_embedded_server(
    workspace: Workspace, first_run: FirstRun
):
    process = workspace.start("--workers", "2")
    try:
        endpoint = process.wait_until_serving(timeout=60)
        # Each worker listens on a socket of its own: the kernel spreads connections
        # over both (16 all on one worker: a chance of 1 in 32,768).
        answered_by = {answering_process(endpoint) for _ in range(16)}
        assert len(answered_by) == 2
        workers = [psutil.Process(pid) for pid in answered_by]
    finally:
        status = process.interrupt(timeout=40, signum=signal.SIGTERM)
    assert status == 0, process.output()
    assert eventually(lambda: not any(worker.is_running() for worker in workers), timeout=10)
    assert not (workspace.data_dir / "pgdata" / "postmaster.pid").exists(), process.output()
