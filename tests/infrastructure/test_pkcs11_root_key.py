"""The root key in a PKCS#11 token (SoftHSM2): what the token says of the key object, the
wrap/unwrap format, and the start-up errors (app/infrastructure/pkcs11_root_key.py).
The service running on it: tests/security/test_hsm_root_key_service.py."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from app.bootstrap import root_key_from_settings
from app.infrastructure import pkcs11_root_key as module
from app.infrastructure.memory.wrapping_keys import MemoryWrappingKeys
from app.infrastructure.pkcs11_root_key import (
    FORMAT,
    Pkcs11Config,
    Pkcs11RootKey,
    create_hsm_key,
)
from app.infrastructure.root_keys import AesGcmRootKey, RootKeyError, RotatingRootKey
from app.infrastructure.vault import Vault, WrappingKeyRow
from app.ports import NeedsLoad
from app.settings import load_settings
from tests.support.softhsm import SoftHsm, new_label, softhsm_token

KEYLEDGER = Path(sys.executable).parent / "keyledger"


@pytest.fixture
def token() -> SoftHsm:
    return softhsm_token()


def config(token: SoftHsm, label: str, **changes: Any) -> Pkcs11Config:
    fields = {"module": token.module, "token_label": token.token_label, "slot": None}
    fields |= {"pin": token.pin, "key_label": label} | changes
    return Pkcs11Config(**fields)


@contextmanager
def root_key(token: SoftHsm, label: str | None = None) -> Iterator[Pkcs11RootKey]:
    label = label or new_label()
    create_hsm_key(config(token, label))
    key = Pkcs11RootKey(config(token, label))
    try:
        yield key
    finally:
        key.close()


@contextmanager
def token_session(token: SoftHsm) -> Iterator[Any]:
    """A read-write session of the login a Pkcs11RootKey holds (no PIN: this test's
    own C_Login would fail, and closing it must not log the key out)."""
    with module._lock:
        lib = pkcs11.lib(token.module)
        session = lib.get_token(token_label=token.token_label).open(rw=True)
        try:
            yield session
        finally:
            session.close()


def test_the_root_key_object_is_sensitive_and_never_leaves_the_token(token: SoftHsm) -> None:
    label = new_label()
    with root_key(token, label), token_session(token) as session:
        key = session.get_key(label=label, object_class=ObjectClass.SECRET_KEY)
        assert key.key_type == KeyType.AES and key[Attribute.VALUE_LEN] == 32
        assert key[Attribute.TOKEN] and key[Attribute.PRIVATE]
        assert key[Attribute.SENSITIVE] and key[Attribute.ALWAYS_SENSITIVE]
        assert not key[Attribute.EXTRACTABLE] and key[Attribute.NEVER_EXTRACTABLE]
        assert key[Attribute.LOCAL]  # generated inside the token, never imported
        assert not key[Attribute.WRAP] and not key[Attribute.UNWRAP]
        with pytest.raises(p11.AttributeSensitive):
            key[Attribute.VALUE]
        wrapper = session.generate_key(
            KeyType.AES, 256, store=False, template={Attribute.WRAP: True}
        )
        for mechanism in (Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_KEY_WRAP):
            with pytest.raises(p11.KeyUnextractable):
                wrapper.wrap_key(key, mechanism=mechanism)
        for attribute, value in ((Attribute.EXTRACTABLE, True), (Attribute.SENSITIVE, False)):
            with pytest.raises(p11.AttributeReadOnly):
                key[attribute] = value
        wrapper.destroy()


def test_wrap_and_unwrap_inside_the_token(token: SoftHsm) -> None:
    owner = uuid.uuid4()
    data_key = secrets.token_bytes(32)
    with root_key(token) as key:
        wrapped = key.wrap(owner, data_key)
        assert wrapped.startswith(FORMAT) and len(wrapped) == len(FORMAT) + 12 + 32 + 16
        assert data_key not in wrapped
        assert key.wrap(owner, data_key) != wrapped  # a fresh IV each time
        assert key.unwrap(owner, wrapped) == data_key
        assert key.key_id.startswith("p11:") and key.known_ids == (key.key_id,)
        with pytest.raises(RootKeyError, match="does not open"):
            key.unwrap(uuid.uuid4(), wrapped)  # the owner is bound in
        tampered = bytearray(wrapped)
        tampered[-1] ^= 1
        with pytest.raises(RootKeyError, match="does not open"):
            key.unwrap(owner, bytes(tampered))
        in_memory_row = AesGcmRootKey(secrets.token_bytes(32)).wrap(owner, data_key)
        with pytest.raises(RootKeyError, match="not wrapped in a PKCS#11 token"):
            key.unwrap(owner, in_memory_row)


def test_another_key_cannot_unwrap_and_has_another_id(token: SoftHsm) -> None:
    owner = uuid.uuid4()
    label = new_label()
    with root_key(token, label) as first, root_key(token) as second:
        wrapped = first.wrap(owner, b"k" * 32)
        with pytest.raises(RootKeyError, match=second.key_id):
            second.unwrap(owner, wrapped)
        assert first.key_id != second.key_id
        again = Pkcs11RootKey(config(token, label))  # the same key: the same id
        try:
            assert again.key_id == first.key_id
            assert again.unwrap(owner, wrapped) == b"k" * 32
        finally:
            again.close()


def test_create_refuses_a_label_in_use(token: SoftHsm) -> None:
    label = new_label()
    create_hsm_key(config(token, label))
    with pytest.raises(RootKeyError, match="already has an object labelled"):
        create_hsm_key(config(token, label))


def test_an_extractable_key_is_refused(token: SoftHsm) -> None:
    label = new_label("extractable")
    with root_key(token), token_session(token) as session:
        session.generate_key(
            KeyType.AES,
            256,
            label=label,
            store=True,
            template={Attribute.EXTRACTABLE: True, Attribute.SENSITIVE: False},
        )
    with pytest.raises(RootKeyError, match="extractable or not sensitive"):
        Pkcs11RootKey(config(token, label))


def test_threads_share_the_token(token: SoftHsm) -> None:
    """The library is not to be entered by two threads at once: the key's lock sees to it."""
    failures: list[BaseException] = []
    with root_key(token) as key:

        def work() -> None:
            try:
                for _ in range(200):
                    owner, data = uuid.uuid4(), secrets.token_bytes(32)
                    assert key.unwrap(owner, key.wrap(owner, data)) == data
            except BaseException as error:
                failures.append(error)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not failures


def test_rotation_from_a_file_key_into_the_token(token: SoftHsm) -> None:
    """Mid-rotation: old rows open under the previous (in-memory) key, new rows are
    wrapped in the token; re-wrapped, a row needs only the token."""
    old = AesGcmRootKey(secrets.token_bytes(32))
    owner = uuid.uuid4()
    old_row = old.wrap(owner, b"o" * 32)
    with root_key(token) as hsm:
        rotating = RotatingRootKey(hsm, [old])
        assert rotating.key_id == hsm.key_id
        assert rotating.known_ids == (hsm.key_id, old.key_id)
        assert rotating.unwrap(owner, old_row) == b"o" * 32
        new_row = rotating.wrap(owner, rotating.unwrap(owner, old_row))
        assert new_row.startswith(FORMAT)
        assert hsm.unwrap(owner, new_row) == b"o" * 32
        with pytest.raises(RootKeyError):
            old.unwrap(owner, new_row)


# --- start-up errors: clear, naming what is wrong, never the PIN ------------------------
def start_error(token: SoftHsm, **settings: object) -> str:
    with pytest.raises(RootKeyError) as caught:
        root_key_from_settings(load_settings(**(token.settings("keyledger-root") | settings)))
    message = str(caught.value)
    assert token.pin not in message
    return message


def test_start_up_errors(token: SoftHsm, tmp_path: Path) -> None:
    label = new_label()
    create_hsm_key(config(token, label))
    assert "refused the PIN" in start_error(token, pkcs11_key_label=label, pkcs11_pin="0000")
    assert "no PKCS#11 token labelled 'absent'" in start_error(
        token, pkcs11_key_label=label, pkcs11_token_label="absent"
    )
    assert "no PKCS#11 token in slot 4242" in start_error(
        token, pkcs11_key_label=label, pkcs11_token_label=None, pkcs11_slot=4242
    )
    assert "no AES key labelled 'absent'" in start_error(token, pkcs11_key_label="absent")
    assert "module not found: /nowhere/libp11.so" in start_error(
        token, pkcs11_key_label=label, pkcs11_module="/nowhere/libp11.so"
    )
    assert "needs pkcs11_pin" in start_error(token, pkcs11_key_label=label, pkcs11_pin=None)
    assert "cannot read pkcs11_pin_file" in start_error(
        token, pkcs11_key_label=label, pkcs11_pin=None, pkcs11_pin_file=tmp_path / "absent"
    )
    pin_file = tmp_path / "pin"
    pin_file.write_text(token.pin + "\n")
    key = root_key_from_settings(
        load_settings(**token.settings(label, pkcs11_pin=None, pkcs11_pin_file=pin_file))
    )
    assert isinstance(key, Pkcs11RootKey)
    key.close()


def test_settings_refuse_root_key_bytes_with_the_token(token: SoftHsm) -> None:
    with pytest.raises(ValueError, match="takes no root_key"):
        load_settings(**token.settings("x", root_key="A" * 43 + "="))


def run_keyledger(
    token: SoftHsm, label: str, tmp: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), **token.env(label)}
    env["KEYLEDGER_DATA_DIR"] = str(tmp / "data")
    # Never reached: the root key is checked before the database.
    env["KEYLEDGER_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    return subprocess.run(
        [str(KEYLEDGER), *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=60
    )


def test_the_command_creates_the_key_and_run_fails_clearly(token: SoftHsm, tmp_path: Path) -> None:
    label = new_label("cli")
    created = run_keyledger(token, label, tmp_path, "operator", "create-hsm-key", "--label", label)
    assert created.returncode == 0, created.stderr
    assert "AES-256, sensitive, never extractable; root key id p11:" in created.stdout
    again = run_keyledger(token, label, tmp_path, "operator", "create-hsm-key", "--label", label)
    assert again.returncode == 1 and "already has an object labelled" in again.stderr

    wrong = {**token.env(label), "KEYLEDGER_PKCS11_PIN": "0000"}
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **wrong}
    env["KEYLEDGER_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    run = subprocess.run(
        [str(KEYLEDGER), "run", "--port", str(_free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert "error: root key: the PKCS#11 token 'keyledger-test' refused the PIN" in run.stderr
    assert "Traceback" not in output and token.pin not in output

    missing = run_keyledger(token, "absent", tmp_path, "run", "--port", str(_free_port()))
    assert missing.returncode == 2 and "no AES key labelled 'absent'" in missing.stderr
    assert "Traceback" not in missing.stderr and token.pin not in missing.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the writer's event loop never waits on the token -------------------------------------
def test_the_writers_loop_hands_token_calls_to_a_thread(token: SoftHsm) -> None:
    """Keys read into the writer's cache (prefetch) and keys created there are unwrapped
    and wrapped by the token in a thread: a token call takes milliseconds (a network HSM
    more), and the writer shares the event loop with every request."""
    with root_key(token) as hsm:
        threads: list[threading.Thread] = []
        unwrap, wrap = hsm.unwrap, hsm.wrap

        def recording_unwrap(owner: uuid.UUID, wrapped: bytes) -> bytes:
            threads.append(threading.current_thread())
            return unwrap(owner, wrapped)

        def recording_wrap(owner: uuid.UUID, key: bytes) -> bytes:
            threads.append(threading.current_thread())
            return wrap(owner, key)

        hsm.unwrap, hsm.wrap = recording_unwrap, recording_wrap  # type: ignore[method-assign]
        store = MemoryWrappingKeys()
        stored = [uuid.uuid4() for _ in range(3)]  # rows another process left
        store.insert_many(
            [WrappingKeyRow(o, wrap(o, secrets.token_bytes(32)), hsm.key_id) for o in stored]
        )
        vault = Vault(hsm, store)
        created = uuid.uuid4()

        async def as_the_writer() -> threading.Thread:
            with pytest.raises(NeedsLoad):  # not held: left to the writer's prefetch
                vault.seal_for_key(created, b"test", b"data")
            await vault.prefetch(None, [*stored, created])
            for owner in (*stored, created):  # now held: answered on the loop at once
                sealed = vault.seal_for_key(owner, b"test", b"data")
                assert vault.open_for_key(owner, b"test", sealed) == b"data"
            return threading.current_thread()

        loop_thread = asyncio.run(as_the_writer())
        assert len(threads) == len(stored) + 2  # three unwraps; the new key wrapped, unwrapped
        assert loop_thread not in threads
