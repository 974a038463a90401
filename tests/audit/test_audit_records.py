"""The Auditor: what a call record keeps (KMS's logging rules), and that a failed call's
record survives a batch the writer has to run again."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from app.auth.credentials import Caller
from app.infrastructure.postgres.database import is_unavailable
from app.infrastructure.writer import LedgerWriter
from app.ports import UnitOfWork
from app.usecases.auditing import AuditedCommands, Auditor, request_parameters
from domain.actors import Actor
from domain.audit import AuditedCall, audited_call_id
from domain.errors import ValidationError
from domain.keys import Key
from tests.conftest import ACCOUNT_ID, REGION, Service


@pytest.mark.parametrize(
    ("operation", "given", "logged"),
    [
        (
            "Encrypt",
            {"KeyId": "k", "Plaintext": b"secret", "EncryptionContext": {"A": "b"}},
            {"keyId": "k", "encryptionContext": {"A": "b"}},
        ),
        (
            "Decrypt",
            {"CiphertextBlob": b"ct", "GrantTokens": ["t"], "DryRun": True},
            {"dryRun": True},
        ),
        (
            "Sign",
            {"KeyId": "k", "Message": b"m", "SigningAlgorithm": "ECDSA_SHA_256"},
            {"keyId": "k", "signingAlgorithm": "ECDSA_SHA_256"},
        ),
        (
            "PutKeyPolicy",
            {"KeyId": "k", "PolicyName": "default", "Policy": "{...}"},
            {"keyId": "k", "policyName": "default"},
        ),
        (
            "ImportKeyMaterial",
            {
                "KeyId": "k",
                "ImportToken": b"t",
                "EncryptedKeyMaterial": b"m",
                "ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE",
            },
            {"keyId": "k", "expirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"},
        ),
        (
            "CreateKey",
            {"Tags": [{"TagKey": "a", "TagValue": "b"}], "Unknown": 1},
            {"tags": [{"tagKey": "a", "tagValue": "b"}]},
        ),
        (
            "VerifyMac",
            {"KeyId": "k", "Message": b"m", "Mac": b"x", "MacAlgorithm": "HMAC_SHA_256"},
            {"keyId": "k", "macAlgorithm": "HMAC_SHA_256"},
        ),
    ],
)
def test_records_keep_what_kms_logs_and_nothing_secret(
    operation: str, given: dict[str, Any], logged: dict[str, Any]
) -> None:
    assert request_parameters("kms", operation, given) == logged


def test_a_refused_member_of_the_wrong_type_is_left_out() -> None:
    assert request_parameters("kms", "DescribeKey", {"KeyId": 42}) == {}
    assert request_parameters("kms", "NoSuchOperation", {"KeyId": "k"}) is None


def test_a_failed_calls_record_survives_a_batch_run_again(
    service: Service, kms: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two calls in one batch: one fails cleanly, the other fails half-way (after appending),
    which makes the writer drop the batch and run it again. Both failures are recorded,
    once each, and nothing of the half-done call is."""
    runtime = service.runtime
    dropped: list[int] = []
    poison = LedgerWriter._poison

    def counted(*args: Any) -> Any:
        dropped.append(1)
        return poison(*args)

    monkeypatch.setattr(LedgerWriter, "_poison", staticmethod(counted))
    key_id = uuid.UUID(kms.create_key(Description="untouched")["KeyMetadata"]["KeyId"])

    def caller() -> Caller:
        return Caller(ACCOUNT_ID, f"arn:aws:iam::{ACCOUNT_ID}:user/admin", "AKLGTEST", REGION)

    def clean_failure(uow: UnitOfWork) -> None:
        uow.get(key_id)
        raise ValidationError("refused before changing anything")

    def half_done(uow: UnitOfWork) -> None:
        key: Key = uow.get(key_id)
        key.change_description(now=runtime.clock.now(), actor=Actor(), description="half done")
        raise ValidationError("refused after changing the key")

    async def scenario() -> list[Any]:
        writer = LedgerWriter(runtime.ledger, runtime.database_url)
        await writer.start_async()
        auditor = Auditor(writer, runtime.identity, runtime.clock, is_unavailable)
        commands = AuditedCommands(writer)  # the use cases' runner: audited within a call
        callers = [caller(), caller()]

        async def call(name: str, who: Caller, command: Any) -> Any:
            async with auditor.call(name, request_id=who.request_id, caller=who):
                return await commands.run(command)

        try:
            return (
                await asyncio.gather(
                    call("DescribeKey", callers[0], clean_failure),
                    call("UpdateKeyDescription", callers[1], half_done),
                    return_exceptions=True,
                )
                + callers
            )  # type: ignore[operator]
        finally:
            await writer.aclose()

    first, second, *callers = asyncio.run(scenario())
    assert dropped, "the half-done call must have made the writer run the batch again"
    assert isinstance(first, ValidationError) and isinstance(second, ValidationError)
    for who, message in zip(callers, (first.message, second.message), strict=True):
        events = list(runtime.ledger.events.get(audited_call_id(who.request_id)))
        assert len(events) == 1
        (recorded,) = events
        assert isinstance(recorded, AuditedCall.CallRecorded)
        assert (recorded.error_code, recorded.error_message) == ("ValidationException", message)
        assert recorded.resources[0]["arn"].endswith(str(key_id))
        assert list(runtime.ledger.events.get(audited_call_id(who.request_id, 1))) == []
    assert kms.describe_key(KeyId=str(key_id))["KeyMetadata"]["Description"] == "untouched"
