"""The AWS Encryption SDK (envelope encryption with KMS master keys) against KeyLedger."""

from __future__ import annotations

import secrets
import uuid
from pathlib import Path

import aws_encryption_sdk
import botocore.session
import pytest
from aws_encryption_sdk import CommitmentPolicy, StrictAwsKmsMasterKeyProvider
from aws_encryption_sdk.exceptions import AWSEncryptionSDKClientError, DecryptKeyError
from cryptography.exceptions import InvalidSignature, InvalidTag

from tests.conftest import Service

CONTEXT = {"tenant": "acme", "purpose": "sdk-round-trip", "ünïcode": "välue ✓"}


@pytest.fixture
def sdk_session(service: Service, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A botocore session whose KMS clients reach KeyLedger (and nothing local leaks in)."""
    empty = tmp_path / "empty-aws-config"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    # The SDK creates its regional clients itself; this is how they find the endpoint.
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", service.endpoint)
    session = botocore.session.Session()
    session.set_credentials(service.access_key_id, service.secret_access_key)
    return session


@pytest.fixture
def sdk() -> aws_encryption_sdk.EncryptionSDKClient:
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT
    )


def _key_arn(kms) -> str:  # type: ignore[no-untyped-def]
    return str(kms.create_key(Description="sdk")["KeyMetadata"]["Arn"])


def _provider(session, *arns: str) -> StrictAwsKmsMasterKeyProvider:  # type: ignore[no-untyped-def]
    return StrictAwsKmsMasterKeyProvider(key_ids=list(arns), botocore_session=session)


def _used(service: Service, key_arn: str) -> list:  # type: ignore[type-arg]
    events = service.runtime.ledger.events.get(uuid.UUID(key_arn.rsplit("/", 1)[1]))
    return [e for e in events if type(e).__name__ == "Used"]


def test_envelope_round_trip_with_an_encryption_context(service, kms, sdk, sdk_session):
    arn = _key_arn(kms)
    plaintext = secrets.token_bytes(5000)  # several frames' worth of a few KB

    ciphertext, header = sdk.encrypt(
        source=plaintext,
        key_provider=_provider(sdk_session, arn),
        encryption_context=CONTEXT,
        frame_length=1024,
    )
    assert plaintext not in ciphertext
    assert [k.key_provider.key_info.decode() for k in header.encrypted_data_keys] == [arn]

    decrypted, decrypt_header = sdk.decrypt(
        source=ciphertext, key_provider=_provider(sdk_session, arn)
    )

    assert decrypted == plaintext
    for name, value in CONTEXT.items():
        assert decrypt_header.encryption_context[name] == value
    # KeyLedger saw one GenerateDataKey and one Decrypt, each bound to the SDK's context.
    used = _used(service, arn)
    assert [u.operation for u in used] == ["GenerateDataKey", "Decrypt"]
    for event in used:
        assert event.encryption_context == header.encryption_context


def test_a_tampered_data_key_is_refused_by_kms(kms, sdk, sdk_session):
    arn = _key_arn(kms)
    ciphertext, header = sdk.encrypt(
        source=b"secret payload",
        key_provider=_provider(sdk_session, arn),
        encryption_context=CONTEXT,
    )
    (data_key,) = header.encrypted_data_keys
    edk = data_key.encrypted_data_key
    position = ciphertext.index(edk) + len(edk) - 1  # the GCM tag of KeyLedger's blob
    tampered = bytearray(ciphertext)
    tampered[position] ^= 0x01

    with pytest.raises(DecryptKeyError):
        sdk.decrypt(source=bytes(tampered), key_provider=_provider(sdk_session, arn))


@pytest.mark.parametrize("where", ["body", "last-byte"])
def test_a_tampered_message_fails_to_decrypt(kms, sdk, sdk_session, where):
    arn = _key_arn(kms)
    plaintext = b"integrity matters " * 100
    ciphertext, _ = sdk.encrypt(
        source=plaintext, key_provider=_provider(sdk_session, arn), encryption_context=CONTEXT
    )
    tampered = bytearray(ciphertext)
    position = len(ciphertext) - 1 if where == "last-byte" else len(ciphertext) // 2
    tampered[position] ^= 0x80

    with pytest.raises((AWSEncryptionSDKClientError, InvalidTag, InvalidSignature)):
        sdk.decrypt(source=bytes(tampered), key_provider=_provider(sdk_session, arn))


def test_a_message_under_two_keys_decrypts_with_either(service, kms, sdk, sdk_session):
    first, second = _key_arn(kms), _key_arn(kms)
    plaintext = secrets.token_bytes(3000)
    ciphertext, header = sdk.encrypt(
        source=plaintext,
        key_provider=_provider(sdk_session, first, second),
        encryption_context=CONTEXT,
    )
    assert sorted(k.key_provider.key_info.decode() for k in header.encrypted_data_keys) == sorted(
        [first, second]
    )

    only_second, _ = sdk.decrypt(source=ciphertext, key_provider=_provider(sdk_session, second))
    only_first, _ = sdk.decrypt(source=ciphertext, key_provider=_provider(sdk_session, first))

    assert only_second == only_first == plaintext
    assert [u.operation for u in _used(service, first)] == ["GenerateDataKey", "Decrypt"]
    assert [u.operation for u in _used(service, second)] == ["Encrypt", "Decrypt"]


def test_decrypting_with_only_an_unrelated_key_fails(kms, sdk, sdk_session):
    arn, unrelated = _key_arn(kms), _key_arn(kms)
    ciphertext, _ = sdk.encrypt(
        source=b"for one key only", key_provider=_provider(sdk_session, arn)
    )

    with pytest.raises(DecryptKeyError):
        sdk.decrypt(source=ciphertext, key_provider=_provider(sdk_session, unrelated))


def test_a_disabled_key_stops_the_sdk_from_decrypting(kms, sdk, sdk_session):
    arn = _key_arn(kms)
    ciphertext, _ = sdk.encrypt(
        source=b"until disabled",
        key_provider=_provider(sdk_session, arn),
        encryption_context=CONTEXT,
    )
    kms.disable_key(KeyId=arn)

    with pytest.raises(DecryptKeyError):
        sdk.decrypt(source=ciphertext, key_provider=_provider(sdk_session, arn))
