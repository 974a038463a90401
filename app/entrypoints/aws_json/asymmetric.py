"""AWS JSON 1.1 operations of the asymmetric, HMAC, post-quantum and imported-material key
specs: they parse the (already validated) members, call one use case, shape the answer.

``OPERATIONS`` is merged into ``app.entrypoints.aws_json.handler.OPERATIONS``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from app.auth.credentials import Caller
from app.entrypoints.aws_json.common import Operation, b64
from app.usecases.keys import KeyService
from domain.errors import ValidationError
from domain.key_specs import KeyAlgorithms


def _dry_run(params: dict[str, Any]) -> bool:
    return bool(params.get("DryRun"))


def _required_blob(params: dict[str, Any], member: str) -> bytes:
    value = params.get(member)
    if value is None:  # botocore lets an empty blob through as null-ish; AWS names it
        path = member[:1].lower() + member[1:]
        raise ValidationError(
            f"1 validation error detected: Value null at '{path}' failed to satisfy "
            "constraint: Member must not be null"
        )
    return bytes(value)


def algorithm_members(found: KeyAlgorithms) -> dict[str, list[str]]:
    """The *Algorithms members a key lists (GetPublicKey): only the non-empty ones."""
    members = {
        "EncryptionAlgorithms": found.encryption,
        "SigningAlgorithms": found.signing,
        "KeyAgreementAlgorithms": found.key_agreement,
        "EncapsulationAlgorithms": found.encapsulation,
    }
    return {name: list(values) for name, values in members.items() if values}


async def get_public_key(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    info = await service.asymmetric.get_public_key(caller, params["KeyId"])
    return {
        "KeyId": info.key_arn,
        "PublicKey": b64(info.public_key),
        "CustomerMasterKeySpec": info.key_spec,
        "KeySpec": info.key_spec,
        "KeyUsage": info.key_usage,
        **algorithm_members(info.algorithms),
    }


async def sign(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    result = await service.asymmetric.sign(
        caller,
        params["KeyId"],
        _required_blob(params, "Message"),
        params.get("MessageType"),
        params["SigningAlgorithm"],
        _dry_run(params),
    )
    return {
        "KeyId": result.key_arn,
        "Signature": b64(result.signature),
        "SigningAlgorithm": result.algorithm,
    }


async def verify(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    result = await service.asymmetric.verify(
        caller,
        params["KeyId"],
        _required_blob(params, "Message"),
        params.get("MessageType"),
        _required_blob(params, "Signature"),
        params["SigningAlgorithm"],
        _dry_run(params),
    )
    return {"KeyId": result.key_arn, "SignatureValid": True, "SigningAlgorithm": result.algorithm}


async def generate_mac(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    result = await service.asymmetric.generate_mac(
        caller,
        params["KeyId"],
        _required_blob(params, "Message"),
        params["MacAlgorithm"],
        _dry_run(params),
    )
    return {"Mac": b64(result.mac), "MacAlgorithm": result.algorithm, "KeyId": result.key_arn}


async def verify_mac(service: KeyService, caller: Caller, params: dict[str, Any]) -> dict[str, Any]:
    result = await service.asymmetric.verify_mac(
        caller,
        params["KeyId"],
        _required_blob(params, "Message"),
        params["MacAlgorithm"],
        _required_blob(params, "Mac"),
        _dry_run(params),
    )
    return {"KeyId": result.key_arn, "MacValid": True, "MacAlgorithm": result.algorithm}


async def _data_key_pair(
    service: KeyService, caller: Caller, params: dict[str, Any], *, with_plaintext: bool
) -> dict[str, Any]:
    result = await service.asymmetric.generate_data_key_pair(
        caller,
        params["KeyId"],
        params["KeyPairSpec"],
        params.get("EncryptionContext"),
        with_plaintext=with_plaintext,
        dry_run=_dry_run(params),
    )
    answer: dict[str, Any] = {
        "PrivateKeyCiphertextBlob": b64(result.private_key_ciphertext),
        "PublicKey": b64(result.public_key),
        "KeyId": result.key_arn,
        "KeyPairSpec": result.key_pair_spec,
        "KeyMaterialId": result.material_id,
    }
    if result.private_key_plaintext is not None:
        answer["PrivateKeyPlaintext"] = b64(result.private_key_plaintext)
    return answer


async def generate_data_key_pair(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return await _data_key_pair(service, caller, params, with_plaintext=True)


async def generate_data_key_pair_without_plaintext(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    return await _data_key_pair(service, caller, params, with_plaintext=False)


async def derive_shared_secret(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    result = await service.asymmetric.derive_shared_secret(
        caller,
        params["KeyId"],
        params["KeyAgreementAlgorithm"],
        _required_blob(params, "PublicKey"),
        _dry_run(params),
    )
    return {
        "KeyId": result.key_arn,
        "SharedSecret": b64(result.shared_secret),
        "KeyAgreementAlgorithm": result.algorithm,
        "KeyOrigin": result.key_origin,
    }


async def encapsulate(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    result = await service.asymmetric.encapsulate(
        caller, params["KeyId"], params["EncapsulationAlgorithm"], _dry_run(params)
    )
    return {
        "KeyId": result.key_arn,
        "SharedSecret": b64(result.shared_secret),
        "SharedSecretCiphertextBlob": b64(result.ciphertext),
        "EncapsulationAlgorithm": result.algorithm,
    }


async def decapsulate(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    result = await service.asymmetric.decapsulate(
        caller,
        params["KeyId"],
        _required_blob(params, "SharedSecretCiphertextBlob"),
        params["EncapsulationAlgorithm"],
        _dry_run(params),
    )
    return {
        "KeyId": result.key_arn,
        "SharedSecret": b64(result.shared_secret),
        "EncapsulationAlgorithm": result.algorithm,
    }


async def get_parameters_for_import(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    result = await service.imported.get_parameters_for_import(
        caller, params["KeyId"], params["WrappingAlgorithm"], params["WrappingKeySpec"]
    )
    return {
        "KeyId": result.key_arn,
        "ImportToken": b64(result.import_token),
        "PublicKey": b64(result.public_key),
        "ParametersValidTo": result.valid_to.timestamp(),
    }


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (OverflowError, OSError, ValueError):
        raise ValidationError("ValidTo is not a valid timestamp.") from None


async def import_key_material(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    result = await service.imported.import_key_material(
        caller,
        params["KeyId"],
        _required_blob(params, "ImportToken"),
        _required_blob(params, "EncryptedKeyMaterial"),
        valid_to=_timestamp(params.get("ValidTo")),
        expiration_model=params.get("ExpirationModel"),
        import_type=params.get("ImportType"),
        description=params.get("KeyMaterialDescription"),
        key_material_id=params.get("KeyMaterialId"),
    )
    return {"KeyId": result.key_arn, "KeyMaterialId": result.material_id}


async def delete_imported_key_material(
    service: KeyService, caller: Caller, params: dict[str, Any]
) -> dict[str, Any]:
    result = await service.imported.delete_imported_key_material(
        caller, params["KeyId"], params.get("KeyMaterialId")
    )
    answer: dict[str, Any] = {"KeyId": result.key_arn}
    if result.material_id is not None:
        answer["KeyMaterialId"] = result.material_id
    return answer


OPERATIONS: dict[str, Operation] = {
    "GetPublicKey": get_public_key,
    "Sign": sign,
    "Verify": verify,
    "GenerateMac": generate_mac,
    "VerifyMac": verify_mac,
    "GenerateDataKeyPair": generate_data_key_pair,
    "GenerateDataKeyPairWithoutPlaintext": generate_data_key_pair_without_plaintext,
    "DeriveSharedSecret": derive_shared_secret,
    "Encapsulate": encapsulate,
    "Decapsulate": decapsulate,
    "GetParametersForImport": get_parameters_for_import,
    "ImportKeyMaterial": import_key_material,
    "DeleteImportedKeyMaterial": delete_imported_key_material,
}
