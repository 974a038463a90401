"""Properties of ciphertexts, over arbitrary plaintexts and encryption contexts.

Against the running service: round trip, context binding, tamper evidence (never a
success, never a server fault). Against the pure domain (domain/ciphertext.py): the
canonical context form, seal/open and header parsing."""

from __future__ import annotations

import secrets
import uuid

import pytest
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from domain.ciphertext import (
    HEADER_SIZE,
    OVERHEAD,
    canonical_encryption_context,
    open_blob,
    read_header,
    seal,
)
from domain.errors import InvalidCiphertextError
from tests.conftest import Service

SERVICE_SETTINGS = settings(
    max_examples=50,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
DOMAIN_SETTINGS = settings(max_examples=200, deadline=None, database=None)

# Any unicode text but lone surrogates (which no JSON client can send as UTF-8).
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=24)
contexts = st.dictionaries(texts, texts, max_size=8)
plaintexts = st.binary(min_size=1, max_size=4096)


# --- against the service ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(service: Service):  # type: ignore[no-untyped-def]
    return service.client("kms")


@pytest.fixture(scope="module")
def property_key(client) -> str:  # type: ignore[no-untyped-def]
    return str(client.create_key(Description="property tests")["KeyMetadata"]["KeyId"])


def _error(call) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    with pytest.raises(ClientError) as failure:
        call()
    response = failure.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


@SERVICE_SETTINGS
@given(plaintext=plaintexts, context=contexts)
def test_decrypt_returns_the_plaintext_under_the_same_context(
    client, property_key, plaintext, context
):
    blob = client.encrypt(KeyId=property_key, Plaintext=plaintext, EncryptionContext=context)[
        "CiphertextBlob"
    ]
    # Pair order in the request does not matter.
    reordered = dict(reversed(list(context.items())))

    answer = client.decrypt(CiphertextBlob=blob, EncryptionContext=reordered)

    assert answer["Plaintext"] == plaintext
    assert answer["KeyId"].endswith(property_key)


@st.composite
def context_and_other(draw):  # type: ignore[no-untyped-def]
    """A context and a different one: a pair added, removed or changed, or case changed."""
    context = draw(contexts)
    other = dict(context)
    choices = ["add"] + (["remove", "change-value", "change-key", "swap-case"] if context else [])
    how = draw(st.sampled_from(choices))
    if how == "add":
        other[draw(texts.filter(lambda k: k not in context))] = draw(texts)
    else:
        name = draw(st.sampled_from(sorted(context)))
        value = other.pop(name)
        if how == "change-value":
            other[name] = draw(texts.filter(value.__ne__))
        elif how == "change-key":
            other[draw(texts.filter(lambda k: k not in context))] = value
        elif how == "swap-case":
            if draw(st.booleans()):
                other[name.swapcase()] = value
            else:
                other[name] = value.swapcase()
    assume(other != context)
    return context, other


@SERVICE_SETTINGS
@given(pair=context_and_other(), plaintext=st.binary(min_size=1, max_size=64))
def test_decrypt_under_any_other_context_fails(client, property_key, pair, plaintext):
    context, other = pair
    blob = client.encrypt(KeyId=property_key, Plaintext=plaintext, EncryptionContext=context)[
        "CiphertextBlob"
    ]

    code = _error(lambda: client.decrypt(CiphertextBlob=blob, EncryptionContext=other))

    assert code == ("InvalidCiphertextException", 400)


@pytest.fixture(scope="module")
def sealed(client, property_key) -> tuple[bytes, dict[str, str]]:  # type: ignore[no-untyped-def]
    context = {"tenant": "acme", "ωμέγα": "✓"}
    blob = client.encrypt(
        KeyId=property_key, Plaintext=b"tamper-evident " * 20, EncryptionContext=context
    )["CiphertextBlob"]
    return bytes(blob), context


@SERVICE_SETTINGS
@given(data=st.data(), name_the_key=st.booleans())
def test_any_flipped_byte_fails_and_never_as_a_server_fault(
    client, property_key, sealed, data, name_the_key
):
    blob, context = sealed
    position = data.draw(st.integers(0, len(blob) - 1), label="position")
    mask = data.draw(st.integers(1, 255), label="mask")
    tampered = bytearray(blob)
    tampered[position] ^= mask
    extra = {"KeyId": property_key} if name_the_key else {}

    code, status = _error(
        lambda: client.decrypt(CiphertextBlob=bytes(tampered), EncryptionContext=context, **extra)
    )

    assert status == 400
    allowed = {"InvalidCiphertextException"}
    if position < HEADER_SIZE:  # the header names the key and its material version
        allowed |= {"IncorrectKeyException", "NotFoundException"}
    assert code in allowed, (position, code)


@SERVICE_SETTINGS
@given(blob=st.binary(min_size=1, max_size=200))
def test_arbitrary_bytes_never_decrypt_and_never_fault(client, blob):
    code, status = _error(lambda: client.decrypt(CiphertextBlob=blob))

    assert (code, status) == ("InvalidCiphertextException", 400)


def test_the_untampered_blob_still_decrypts(client, sealed):
    blob, context = sealed

    assert client.decrypt(CiphertextBlob=blob, EncryptionContext=context)["Plaintext"] == (
        b"tamper-evident " * 20
    )


# --- the pure domain ----------------------------------------------------------------------------
@DOMAIN_SETTINGS
@given(context=contexts, data=st.data())
def test_canonical_context_ignores_pair_order(context, data):
    pairs = data.draw(st.permutations(list(context.items())))

    assert canonical_encryption_context(dict(pairs)) == canonical_encryption_context(context)


@DOMAIN_SETTINGS
@given(
    first=st.dictionaries(texts, texts, max_size=3),
    second=st.dictionaries(texts, texts, max_size=3),
)
def test_canonical_context_is_injective(first, second):
    assume(first != second)

    assert canonical_encryption_context(first) != canonical_encryption_context(second)


def test_canonical_context_of_nothing_is_empty_but_an_empty_pair_is_not():
    assert canonical_encryption_context(None) == canonical_encryption_context({}) == b""
    assert canonical_encryption_context({"": ""}) != b""
    # Length prefixes keep "ab"+"c" apart from "a"+"bc".
    assert canonical_encryption_context({"ab": "c"}) != canonical_encryption_context({"a": "bc"})


@DOMAIN_SETTINGS
@given(
    plaintext=st.binary(max_size=512),
    context=contexts,
    version=st.integers(0, 2**32 - 1),
    key_bytes=st.binary(min_size=16, max_size=16),
)
def test_seal_then_open_round_trips_and_binds_the_context(plaintext, context, version, key_bytes):
    cipher = AESGCM(AESGCM.generate_key(256))
    key_id = uuid.UUID(bytes=key_bytes)

    blob = seal(
        cipher,
        key_id=key_id,
        material_version=version,
        plaintext=plaintext,
        encryption_context=context,
        nonce=secrets.token_bytes(12),
    )

    assert len(blob) == len(plaintext) + OVERHEAD
    header = read_header(blob)
    assert (header.key_id, header.material_version) == (key_id, version)
    assert open_blob(cipher, blob, dict(reversed(list(context.items())))) == plaintext
    with pytest.raises(InvalidCiphertextError):
        open_blob(cipher, blob, {**context, "extra": "pair"})
    with pytest.raises(InvalidCiphertextError):
        open_blob(AESGCM(AESGCM.generate_key(256)), blob, context)


@DOMAIN_SETTINGS
@given(blob=st.binary(max_size=200))
def test_parsing_random_bytes_raises_only_invalid_ciphertext(blob):
    cipher = AESGCM(AESGCM.generate_key(256))
    try:
        read_header(blob)
    except InvalidCiphertextError:
        return
    with pytest.raises(InvalidCiphertextError):
        open_blob(cipher, blob, None)


@DOMAIN_SETTINGS
@given(data=st.data())
def test_a_flipped_byte_in_a_sealed_blob_never_opens(data):
    cipher = AESGCM(AESGCM.generate_key(256))
    blob = seal(
        cipher,
        key_id=uuid.uuid4(),
        material_version=1,
        plaintext=b"domain",
        encryption_context=None,
        nonce=secrets.token_bytes(12),
    )
    position = data.draw(st.integers(0, len(blob) - 1))
    tampered = bytearray(blob)
    tampered[position] ^= data.draw(st.integers(1, 255))

    with pytest.raises(InvalidCiphertextError):
        read_header(bytes(tampered))
        open_blob(cipher, bytes(tampered), None)
