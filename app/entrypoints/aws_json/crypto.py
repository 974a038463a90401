"""AWS KMS symmetric cryptographic operations: Encrypt, Decrypt, ReEncrypt, data keys, random."""

from __future__ import annotations

from typing import Any

from app.auth.credentials import Caller
from app.entrypoints.aws_json.common import Operation, b64
from app.usecases.keys import KeyService
from domain.key_specs import SYMMETRIC_DEFAULT


async def encrypt(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    result = await service.crypto.encrypt(
        caller,
        params["KeyId"],
        params["Plaintext"],
        params.get("EncryptionContext"),
        params.get("EncryptionAlgorithm"),
        bool(params.get("DryRun")),
    )
    return {
        "CiphertextBlob": b64(result.ciphertext),
        "KeyId": result.key_arn,
        "EncryptionAlgorithm": result.algorithm,
    }


async def decrypt(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("CiphertextBlob") is None:
        from domain.errors import ValidationError

        raise ValidationError(
            "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy "
            "constraint: Member must not be null"
        )
    result = await service.crypto.decrypt(
        caller,
        params["CiphertextBlob"],
        params.get("KeyId"),
        params.get("EncryptionContext"),
        params.get("EncryptionAlgorithm"),
        bool(params.get("DryRun")),
    )
    answer = {
        "KeyId": result.key_arn,
        "Plaintext": b64(result.plaintext),
        "EncryptionAlgorithm": result.algorithm,
    }
    if result.algorithm == SYMMETRIC_DEFAULT:  # AWS names material of symmetric keys only
        answer["KeyMaterialId"] = result.material_id
    return answer


async def re_encrypt(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    if params.get("CiphertextBlob") is None:
        from domain.errors import ValidationError

        raise ValidationError(
            "1 validation error detected: Value null at 'ciphertextBlob' failed to satisfy "
            "constraint: Member must not be null"
        )
    result = await service.crypto.re_encrypt(
        caller,
        params["CiphertextBlob"],
        source_key_id=params.get("SourceKeyId"),
        destination_key_id=params["DestinationKeyId"],
        source_context=params.get("SourceEncryptionContext"),
        destination_context=params.get("DestinationEncryptionContext"),
        source_algorithm=params.get("SourceEncryptionAlgorithm"),
        destination_algorithm=params.get("DestinationEncryptionAlgorithm"),
        dry_run=bool(params.get("DryRun")),
    )
    answer = {
        "CiphertextBlob": b64(result.ciphertext),
        "SourceKeyId": result.source_key_arn,
        "KeyId": result.key_arn,
        "SourceEncryptionAlgorithm": result.source_algorithm,
        "DestinationEncryptionAlgorithm": result.destination_algorithm,
    }
    # AWS names the material of symmetric encryption keys only.
    if result.source_algorithm == SYMMETRIC_DEFAULT:
        answer["SourceKeyMaterialId"] = result.source_material_id
    if result.destination_algorithm == SYMMETRIC_DEFAULT:
        answer["DestinationKeyMaterialId"] = result.destination_material_id
    return answer


async def _data_key(
    service: KeyService, caller: Caller, params: dict[str, Any], *, with_plaintext: bool
) -> dict[str, Any]:
    result = await service.crypto.generate_data_key(
        caller,
        params["KeyId"],
        number_of_bytes=params.get("NumberOfBytes"),
        key_spec=params.get("KeySpec"),
        encryption_context=params.get("EncryptionContext"),
        with_plaintext=with_plaintext,
        dry_run=bool(params.get("DryRun")),
    )
    answer: dict[str, Any] = {
        "CiphertextBlob": b64(result.ciphertext),
        "KeyId": result.key_arn,
        "KeyMaterialId": result.material_id,
    }
    if result.plaintext is not None:
        answer["Plaintext"] = b64(result.plaintext)
    return answer


async def generate_data_key(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return await _data_key(service, caller, params, with_plaintext=True)


async def generate_data_key_without_plaintext(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return await _data_key(service, caller, params, with_plaintext=False)


async def generate_random(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    plaintext = await service.crypto.generate_random(
        caller, params.get("NumberOfBytes"), params.get("CustomKeyStoreId")
    )
    return {"Plaintext": b64(plaintext)}


OPERATIONS: dict[str, Operation] = {
    "Encrypt": encrypt,
    "Decrypt": decrypt,
    "ReEncrypt": re_encrypt,
    "GenerateDataKey": generate_data_key,
    "GenerateDataKeyWithoutPlaintext": generate_data_key_without_plaintext,
    "GenerateRandom": generate_random,
}
