"""Importing key material checks it (for RSA, a private-key consistency check that takes
~0.5 s for RSA-4096 on a slow core) in a thread, never on an event loop: the writer's loop
is the one every request of a worker shares."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

import domain.algorithms
from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from app.usecases.keys import CreateKeyRequest
from tests.usecases.conftest import call


def _on_an_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def test_imported_material_is_unwrapped_and_checked_off_every_event_loop(
    runtime: InMemoryRuntime, admin: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks: list[bool] = []
    check = domain.algorithms.normalize_imported_material

    def observed(*args: Any) -> bytes:
        checks.append(_on_an_event_loop())
        return check(*args)

    monkeypatch.setattr(domain.algorithms, "normalize_imported_material", observed)
    keys = runtime.service.keys
    key_id = call(keys.create_key(admin, CreateKeyRequest(origin="EXTERNAL"))).key_id
    imported = runtime.service.imported
    parameters = call(
        imported.get_parameters_for_import(admin, key_id, "RSAES_OAEP_SHA_256", "RSA_2048")
    )
    public_key = serialization.load_der_public_key(parameters.public_key)
    assert isinstance(public_key, rsa.RSAPublicKey)
    sha256 = hashes.SHA256()
    oaep = padding.OAEP(mgf=padding.MGF1(sha256), algorithm=sha256, label=None)
    wrapped = public_key.encrypt(os.urandom(32), oaep)

    change = call(
        imported.import_key_material(
            admin,
            key_id,
            parameters.import_token,
            wrapped,
            valid_to=None,
            expiration_model="KEY_MATERIAL_DOES_NOT_EXPIRE",
        )
    )

    assert change.material_id
    assert checks == [False]
