"""Root-key rotation to, from and between Shamir sets (docs/key-custody.md), through real
parts: PostgreSQL, the service over HTTP (uvicorn), boto3, and the ``keyledger`` CLI in a
subprocess for init, unseal and rotate-root-key (which, a Shamir-sealed key being involved,
asks the unsealed service to re-wrap). After each move every old ciphertext decrypts, the
database holds the new sealed root key and nothing else of the old one, and a service
given only the new key serves everything."""

from __future__ import annotations

import base64
import os
import random
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from botocore.exceptions import ClientError

from app.bootstrap import Runtime
from app.infrastructure.root_keys import RootKeyError, root_key_id
from app.settings import load_settings
from tests.conftest import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, Service, start_service
from tests.support.databases import drop, fresh_database
from tests.support.softhsm import SoftHsm, new_label, softhsm_token
from tests.support.waiting import eventually

pytestmark = pytest.mark.postgres
REPO = Path(__file__).resolve().parents[2]
SHARE_LINE = re.compile(r"^Unseal key share \d+: (\S+)$", re.MULTILINE)


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.fixture
def database() -> Iterator[str]:
    url = fresh_database("embedded")
    try:
        yield url
    finally:
        drop(url)


@contextmanager
def serving(url: str, tmp: Path, **settings: object) -> Iterator[Service]:
    service, server, thread = start_service(url, tmp, ledger_log=False, **settings)
    try:
        yield service
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.runtime.stop()


def _environment(url: str, tmp: Path, env: dict[str, str] | None) -> dict[str, str]:
    variables = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    return variables | {
        "KEYLEDGER_DATABASE_URL": url,
        "KEYLEDGER_DATA_DIR": str(tmp),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        **(env or {}),
    }


def keyledger(
    url: str, tmp: Path, *args: str, env: dict[str, str] | None = None, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """The ``keyledger`` command in a subprocess, on ``url``, signing with the test's
    administrator when it talks to the service."""
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env=_environment(url, tmp, env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
    )


def keyledger_in_background(url: str, tmp: Path, *args: str) -> subprocess.Popen[str]:
    """The ``keyledger`` command started, not waited for (its output: communicate())."""
    return subprocess.Popen(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env=_environment(url, tmp, None),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def init(url: str, tmp: Path, *extra: str, env: dict[str, str] | None = None) -> list[bytes]:
    """``operator init`` (3 of 5): the shares it printed."""
    done = keyledger(url, tmp, "operator", "init", *extra, env=env)
    assert done.returncode == 0, done.stderr
    return [base64.b64decode(share) for share in SHARE_LINE.findall(done.stdout)]


def unseal(service: Service, shares: list[bytes], url: str, tmp: Path) -> dict[str, Any]:
    """Three of the shares: two over REST, the last through the CLI; the final status."""
    chosen = random.sample(shares, 3)
    for share in chosen[:-1]:
        answer = httpx.post(
            service.endpoint + "/v1/sys/unseal", json={"key": _b64(share)}, timeout=30
        )
        assert answer.status_code == 200, answer.text
    done = keyledger(
        url,
        tmp,
        "operator",
        "unseal",
        "--endpoint",
        service.endpoint,
        stdin=_b64(chosen[-1]) + "\n",
    )
    assert done.returncode == 0, done.stderr
    status: dict[str, Any] = httpx.get(service.endpoint + "/v1/sys/seal-status", timeout=10).json()
    return status


def rotate_in_service(service: Service, url: str, tmp: Path, *extra: str) -> str:
    """``rotate-root-key --endpoint``: the service re-wraps; the command's output."""
    done = keyledger(
        url,
        tmp,
        "operator",
        "rotate-root-key",
        "--batch-size",
        "2",
        "--endpoint",
        service.endpoint,
        *extra,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "re-wrapped" in done.stdout and "rotated" in done.stdout
    return done.stdout


def ciphertexts(service: Service, keys: int = 3) -> dict[bytes, bytes]:
    kms = service.client("kms")
    found = {}
    for n in range(keys):
        key = kms.create_key(Description=f"before the move {n}")["KeyMetadata"]["KeyId"]
        plaintext = secrets.token_bytes(20)
        found[kms.encrypt(KeyId=key, Plaintext=plaintext)["CiphertextBlob"]] = plaintext
    return found


def decrypts_all(service: Service, blobs: dict[bytes, bytes]) -> None:
    kms = service.client("kms")
    for blob, plaintext in blobs.items():
        assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == plaintext


def wrapping_key_ids(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        return {str(r[0]) for r in conn.execute("SELECT root_key_id FROM wrapping_keys")}


def seal_rows(url: str) -> dict[str, str]:
    """root_key_seal: root key id -> state (a destroyed key keeps its id, nothing else)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT root_key_id, state FROM root_key_seal").fetchall()
    return {str(key_id): str(state) for key_id, state in rows}


def is_sealed(service: Service) -> bool:
    try:
        service.client("kms").list_keys()
    except ClientError as error:
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        return True
    return False


def test_a_file_key_moves_to_a_new_shamir_set(database: str, tmp_path: Path) -> None:
    old = secrets.token_bytes(32)
    with serving(database, tmp_path, root_key=_b64(old)) as service:
        blobs = ciphertexts(service)

    # init names the key it moves from; only the sealed new key is stored.
    moving = {"KEYLEDGER_ROOT_KEY_PROVIDER": "shamir", "KEYLEDGER_PREVIOUS_ROOT_KEYS": _b64(old)}
    refused = keyledger(
        database, tmp_path, "operator", "init", env={"KEYLEDGER_ROOT_KEY_PROVIDER": "shamir"}
    )
    assert refused.returncode == 2 and "do not name" in refused.stderr
    shares = init(database, tmp_path, env=moving)
    assert len(shares) == 5
    (sealed_id,) = seal_rows(database)

    settings = {"root_key_provider": "shamir", "previous_root_keys": [_b64(old)]}
    with serving(database, tmp_path, **settings) as service:
        assert is_sealed(service)
        assert unseal(service, shares, database, tmp_path)["sealed"] is False
        decrypts_all(service, blobs)  # rows still under the file key
        unnamed = keyledger(
            database, tmp_path, "operator", "rotate-root-key", "--endpoint", service.endpoint
        )  # the seal is in the database: the administrator names the key rows move under
        assert unnamed.returncode == 1 and "--to ID" in unnamed.stderr
        output = rotate_in_service(service, database, tmp_path, "--to", sealed_id)
        assert "no longer needed" in output and root_key_id(old) in output
        assert wrapping_key_ids(database) == {sealed_id}
        decrypts_all(service, blobs)

    with serving(database, tmp_path, root_key_provider="shamir") as service:  # old key gone
        assert is_sealed(service)
        unseal(service, shares, database, tmp_path)
        decrypts_all(service, blobs)
    with pytest.raises(RootKeyError, match="different root key"):
        Runtime.build(load_settings(database_url=database, data_dir=tmp_path, root_key=_b64(old)))


def test_a_shamir_set_moves_to_a_new_shamir_set_without_a_restart(
    database: str, tmp_path: Path
) -> None:
    shamir = {"KEYLEDGER_ROOT_KEY_PROVIDER": "shamir"}
    first = init(database, tmp_path, env=shamir)
    (first_id,) = seal_rows(database)
    with serving(database, tmp_path, root_key_provider="shamir") as service:
        unseal(service, first, database, tmp_path)
        blobs = ciphertexts(service)
        held_key = service.client("kms").create_key()["KeyMetadata"]["KeyId"]

        # A new set, pending: its shares given to the running service verify it, and no
        # more (whoever can write the database could have written a pending set).
        second = init(database, tmp_path, "--rotate", env=shamir)
        (second_id,) = [k for k, state in seal_rows(database).items() if state == "pending"]
        early = keyledger(
            database, tmp_path, "operator", "rotate-root-key", "--endpoint", service.endpoint,
            "--new-set", second_id,
        )  # fmt: skip
        assert early.returncode == 1 and "not verified" in early.stderr
        status = unseal(service, second, database, tmp_path)
        assert status["sealed"] is False and status["new_set"]["verified"] is True
        assert seal_rows(database) == {first_id: "current", second_id: "pending"}
        wrong = keyledger(
            database, tmp_path, "operator", "rotate-root-key", "--endpoint", service.endpoint,
            "--new-set", "0123456789abcdef",
        )  # fmt: skip
        assert wrong.returncode == 1 and "is pending" in wrong.stderr

        # An administrator makes it current and re-wraps; a row held by another transaction
        # keeps the rotation mid-way, to look at it there.
        with psycopg.connect(database) as holder:
            holder.execute(
                "SELECT 1 FROM wrapping_keys WHERE owner_id = %s FOR UPDATE", (held_key,)
            )
            rotating = keyledger_in_background(
                database, tmp_path, "operator", "rotate-root-key", "--batch-size", "2",
                "--endpoint", service.endpoint, "--new-set", second_id,
            )  # fmt: skip
            assert eventually(
                lambda: (
                    seal_rows(database) == {second_id: "current", first_id: "previous"}
                    and wrapping_key_ids(database) == {first_id, second_id}
                ),
                timeout=60,
            )
            with (
                pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState),
                psycopg.connect(database) as conn,
            ):  # what a process that missed the switch would do: refused
                conn.execute(
                    "INSERT INTO wrapping_keys (owner_id, wrapped_key, root_key_id)"
                    " VALUES (gen_random_uuid(), '\\x00', %s)",
                    (first_id,),
                )
            decrypts_all(service, blobs)  # rows under both keys open
            blobs |= ciphertexts(service)  # new ones go under the new key
            holder.rollback()
            output, _ = rotating.communicate(timeout=120)
        assert rotating.returncode == 0, output
        assert f"destroyed the sealed root key(s) {first_id}" in output
        assert seal_rows(database) == {second_id: "current", first_id: "destroyed"}
        assert wrapping_key_ids(database) == {second_id}
        again = keyledger(
            database, tmp_path, "operator", "rotate-root-key", "--endpoint", service.endpoint,
            "--new-set", second_id,
        )  # fmt: skip
        assert again.returncode == 0 and "nothing to rotate" in again.stdout

        # The old set's shares open nothing any more; the new set opens everything.
        assert service.runtime.seal()
        for share in first[:2]:
            httpx.post(service.endpoint + "/v1/sys/unseal", json={"key": _b64(share)}, timeout=10)
        refused = httpx.post(
            service.endpoint + "/v1/sys/unseal", json={"key": _b64(first[2])}, timeout=10
        )
        assert refused.status_code == 400 and is_sealed(service)
        unseal(service, second, database, tmp_path)
        decrypts_all(service, blobs)

    with serving(database, tmp_path, root_key_provider="shamir") as service:
        unseal(service, second, database, tmp_path)
        decrypts_all(service, blobs)


def test_a_shamir_set_moves_to_a_file_key(database: str, tmp_path: Path) -> None:
    shares = init(database, tmp_path, env={"KEYLEDGER_ROOT_KEY_PROVIDER": "shamir"})
    with serving(database, tmp_path, root_key_provider="shamir") as service:
        unseal(service, shares, database, tmp_path)
        blobs = ciphertexts(service)

    new = _b64(secrets.token_bytes(32))
    with serving(database, tmp_path, root_key=new, shamir_previous=True) as service:
        assert is_sealed(service)  # the rows are under the sealed key until re-wrapped
        unseal(service, shares, database, tmp_path)
        decrypts_all(service, blobs)
        local = keyledger(
            database,
            tmp_path,
            "operator",
            "rotate-root-key",
            env={"KEYLEDGER_ROOT_KEY": new, "KEYLEDGER_SHAMIR_PREVIOUS": "true"},
        )
        assert local.returncode == 2 and "--endpoint" in local.stderr
        output = rotate_in_service(service, database, tmp_path)
        assert "destroyed the sealed root key" in output
        assert set(seal_rows(database).values()) == {"destroyed"}
        assert wrapping_key_ids(database) == {root_key_id(base64.b64decode(new))}

    with serving(database, tmp_path, root_key=new) as service:
        assert not is_sealed(service)
        decrypts_all(service, blobs)
    with serving(database, tmp_path, root_key=new, shamir_previous=True) as service:
        assert not is_sealed(service)  # the setting left behind: nothing is sealed any more


@pytest.fixture
def token() -> SoftHsm:
    return softhsm_token()


def test_a_token_key_moves_to_a_shamir_set_and_back_to_a_new_token_key(
    token: SoftHsm, database: str, tmp_path: Path
) -> None:
    from app.infrastructure.pkcs11_root_key import Pkcs11Config, create_hsm_key

    def make_key() -> str:
        label = new_label()
        config = Pkcs11Config(
            module=token.module,
            token_label=token.token_label,
            slot=None,
            pin=token.pin,
            key_label=label,
        )
        create_hsm_key(config)
        return label

    first = make_key()
    with serving(database, tmp_path, **token.settings(first)) as service:
        blobs = ciphertexts(service)
        first_id = service.runtime.vault.root_key_id

    # Into a Shamir set: the token key previous.
    env = token.env(first) | {
        "KEYLEDGER_ROOT_KEY_PROVIDER": "shamir",
        "KEYLEDGER_PKCS11_PREVIOUS_KEY_LABELS": first,
    }
    shares = init(database, tmp_path, env=env)
    (sealed_id,) = seal_rows(database)
    into = token.settings(first, root_key_provider="shamir", pkcs11_previous_key_labels=[first])
    with serving(database, tmp_path, **into) as service:
        unseal(service, shares, database, tmp_path)
        output = rotate_in_service(service, database, tmp_path, "--to", sealed_id)
        assert first_id in output and "no longer needed" in output
        assert wrapping_key_ids(database) == {sealed_id}
        decrypts_all(service, blobs)

    # Out of it, into a new token key: the seal previous.
    second = make_key()
    out = token.settings(second, shamir_previous=True)
    with serving(database, tmp_path, **out) as service:
        unseal(service, shares, database, tmp_path)
        rotate_in_service(service, database, tmp_path)
        assert seal_rows(database) == {sealed_id: "destroyed"}
        second_id = service.runtime.vault.root_key_id
        assert wrapping_key_ids(database) == {second_id}

    with serving(database, tmp_path, **token.settings(second)) as service:
        decrypts_all(service, blobs)


def test_a_replica_that_missed_a_switch_to_a_new_set_seals_itself(
    database: str, tmp_path: Path
) -> None:
    """Two services on one database (replicas): the new set is verified through one; the
    other, still under the old root key, seals itself at its next check and unseals
    with the new set."""
    shamir = {"KEYLEDGER_ROOT_KEY_PROVIDER": "shamir"}
    first = init(database, tmp_path, env=shamir)
    with (
        serving(database, tmp_path / "a", root_key_provider="shamir") as switching,
        serving(database, tmp_path / "b", root_key_provider="shamir") as replica,
    ):
        unseal(switching, first, database, tmp_path)
        unseal(replica, first, database, tmp_path)
        blobs = ciphertexts(replica)
        assert not replica.runtime.check_seal()  # nothing switched yet

        second = init(database, tmp_path, "--rotate", env=shamir)
        (second_id,) = [k for k, state in seal_rows(database).items() if state == "pending"]
        unseal(switching, second, database, tmp_path)
        assert not replica.runtime.check_seal()  # verified, not in use yet
        rotate_in_service(switching, database, tmp_path, "--new-set", second_id)
        assert replica.runtime.check_seal() and is_sealed(replica)
        assert not is_sealed(switching)
        unseal(replica, second, database, tmp_path)
        decrypts_all(replica, blobs)
