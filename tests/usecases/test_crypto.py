"""Encrypt, Decrypt and data keys through the use cases on the in-memory ledger: what round
trips, what an encryption context binds, and that each use is an event in the key's stream."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.auth.credentials import Caller
from app.bootstrap import InMemoryRuntime
from domain.errors import InvalidCiphertextError
from tests.usecases.conftest import call, used_operations

ONE_KEY = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
context_text = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20
)
contexts = st.dictionaries(context_text, context_text, min_size=1, max_size=4)


@ONE_KEY
@given(plaintext=st.binary(min_size=1, max_size=4096))
def test_any_plaintext_round_trips(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str, plaintext: bytes
) -> None:
    crypto = runtime.service.crypto
    sealed = call(crypto.encrypt(admin, symmetric_key, plaintext, None))
    if len(plaintext) >= 16:  # (a short one may occur in any random bytes)
        assert plaintext not in sealed.ciphertext
    opened = call(crypto.decrypt(admin, sealed.ciphertext, None, None))
    assert opened.plaintext == plaintext
    assert opened.key_arn == sealed.key_arn and opened.material_id == sealed.material_id


@ONE_KEY
@given(context=contexts, other=contexts)
def test_an_encryption_context_must_match_exactly(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str, context: dict, other: dict
) -> None:
    crypto = runtime.service.crypto
    sealed = call(crypto.encrypt(admin, symmetric_key, b"secret", context))
    assert call(
        crypto.decrypt(admin, sealed.ciphertext, symmetric_key, dict(context))
    ).plaintext == (b"secret")
    wrong = [None, other, {**context, "extra": "x"}, dict(list(context.items())[1:])]
    for attempt in wrong:
        if attempt == context or (not attempt and not context):
            continue
        with pytest.raises(InvalidCiphertextError):
            call(crypto.decrypt(admin, sealed.ciphertext, symmetric_key, attempt))


def test_a_tampered_ciphertext_does_not_open(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    crypto = runtime.service.crypto
    blob = bytearray(call(crypto.encrypt(admin, symmetric_key, b"payload", None)).ciphertext)
    blob[-1] ^= 1
    with pytest.raises(InvalidCiphertextError):
        call(crypto.decrypt(admin, bytes(blob), None, None))


def test_every_cryptographic_operation_appends_its_used_event(
    runtime: InMemoryRuntime, admin: Caller, symmetric_key: str
) -> None:
    crypto = runtime.service.crypto
    sealed = call(crypto.encrypt(admin, symmetric_key, b"one", {"purpose": "test"}))
    call(crypto.decrypt(admin, sealed.ciphertext, None, {"purpose": "test"}))
    data_key = call(
        crypto.generate_data_key(
            admin, symmetric_key, number_of_bytes=None, key_spec="AES_256", encryption_context=None
        )
    )
    call(
        crypto.generate_data_key(
            admin,
            symmetric_key,
            number_of_bytes=16,
            key_spec=None,
            encryption_context=None,
            with_plaintext=False,
        )
    )
    call(crypto.decrypt(admin, data_key.ciphertext, symmetric_key, None))
    with pytest.raises(InvalidCiphertextError):  # a refused decryption is not a use
        call(crypto.decrypt(admin, sealed.ciphertext, None, {"purpose": "other"}))
    assert used_operations(runtime, symmetric_key) == [
        "Encrypt",
        "Decrypt",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "Decrypt",
    ]
