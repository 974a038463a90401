"""REST routes (/v1) of the asymmetric, HMAC, post-quantum and imported-material use cases.

Thin, like app/entrypoints/rest/app.py: each route turns its body into plain values, calls one
KeyService use case and shapes the answer; errors take the same ``{"__type", "message"}`` shape.
Included into the application before app/entrypoints/rest/app.py's router, whose ``/keys/{key_id}``
routes would otherwise swallow these paths.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from app.entrypoints.rest.deps import (
    ERROR_RESPONSES,
    KEY,
    CallerDep,
    KeyId,
    LedgerRoute,
    ServiceDep,
)
from app.entrypoints.rest.schemas import (
    MAX_CIPHERTEXT,
    MAX_PLAINTEXT,
    Blob,
    EncryptionContext,
    RequestBody,
    ShortText,
)

MAX_PUBLIC_KEY = 8192
Message = Annotated[Blob, Field(min_length=1, max_length=MAX_PLAINTEXT)]
Ciphertext = Annotated[Blob, Field(min_length=1, max_length=MAX_CIPHERTEXT)]
MessageType = Literal["RAW", "DIGEST", "EXTERNAL_MU"]

router = APIRouter(prefix="/v1", route_class=LedgerRoute, responses=ERROR_RESPONSES)


# ==== bodies =============================================================================
class PublicKeyPublic(BaseModel):
    key_arn: str
    public_key: Blob = Field(description="DER SubjectPublicKeyInfo.")
    key_spec: str
    key_usage: str
    encryption_algorithms: list[str] = []
    signing_algorithms: list[str] = []
    key_agreement_algorithms: list[str] = []
    encapsulation_algorithms: list[str] = []


class SignRequest(RequestBody):
    message: Message
    message_type: MessageType = "RAW"
    signing_algorithm: ShortText = Field(examples=["ECDSA_SHA_256"])
    dry_run: bool = False


class SignResult(BaseModel):
    key_arn: str
    signature: Blob
    signing_algorithm: str


class VerifyRequest(SignRequest):
    signature: Ciphertext


class VerifyResult(BaseModel):
    key_arn: str
    signature_valid: bool = Field(description="Always true: a bad signature is an error.")
    signing_algorithm: str


class MacRequest(RequestBody):
    message: Message
    mac_algorithm: ShortText = Field(examples=["HMAC_SHA_256"])
    dry_run: bool = False


class MacResult(BaseModel):
    key_arn: str
    mac: Blob
    mac_algorithm: str


class VerifyMacRequest(MacRequest):
    mac: Ciphertext


class VerifyMacResult(BaseModel):
    key_arn: str
    mac_valid: bool = Field(description="Always true: a bad MAC is an error.")
    mac_algorithm: str


class DataKeyPairRequest(RequestBody):
    key_pair_spec: ShortText = Field(examples=["ECC_NIST_P256"])
    encryption_context: EncryptionContext | None = None
    with_plaintext: bool = Field(
        True, description="False: no private key in plaintext (...WithoutPlaintext)."
    )
    dry_run: bool = False


class DataKeyPairResult(BaseModel):
    private_key_ciphertext: Blob
    private_key_plaintext: Blob | None = Field(None, description="DER PKCS #8.")
    public_key: Blob = Field(description="DER SubjectPublicKeyInfo.")
    key_arn: str
    key_pair_spec: str
    material_id: str


class SharedSecretRequest(RequestBody):
    public_key: Annotated[Blob, Field(min_length=1, max_length=MAX_PUBLIC_KEY)]
    key_agreement_algorithm: Literal["ECDH"] = "ECDH"
    dry_run: bool = False


class SharedSecretResult(BaseModel):
    key_arn: str
    shared_secret: Blob
    key_agreement_algorithm: str
    key_origin: str


class EncapsulateRequest(RequestBody):
    encapsulation_algorithm: Literal["ML_KEM"] = "ML_KEM"
    dry_run: bool = False


class EncapsulateResult(BaseModel):
    key_arn: str
    shared_secret: Blob
    ciphertext: Blob
    encapsulation_algorithm: str


class DecapsulateRequest(EncapsulateRequest):
    ciphertext: Ciphertext


class DecapsulateResult(BaseModel):
    key_arn: str
    shared_secret: Blob
    encapsulation_algorithm: str


class ImportParametersRequest(RequestBody):
    wrapping_algorithm: ShortText = Field(examples=["RSA_AES_KEY_WRAP_SHA_256"])
    wrapping_key_spec: ShortText = Field(examples=["RSA_4096"])


class ImportParametersPublic(BaseModel):
    key_arn: str
    import_token: Blob
    public_key: Blob = Field(description="The RSA wrapping key, DER SubjectPublicKeyInfo.")
    parameters_valid_to: datetime


class ImportMaterialRequest(RequestBody):
    import_token: Ciphertext
    encrypted_key_material: Ciphertext
    expiration_model: Literal["KEY_MATERIAL_EXPIRES", "KEY_MATERIAL_DOES_NOT_EXPIRE"] = (
        "KEY_MATERIAL_EXPIRES"
    )
    valid_to: datetime | None = Field(
        None, strict=False, description="ISO 8601 (UTC unless it says); required when it expires."
    )
    import_type: Literal["NEW_KEY_MATERIAL", "EXISTING_KEY_MATERIAL"] | None = None
    description: str | None = Field(None, max_length=256)
    key_material_id: str | None = Field(None, pattern="^[a-f0-9]{64}$")


class MaterialPublic(BaseModel):
    key_arn: str
    material_id: str | None


# ==== routes ============================================================================
@router.get(KEY + "/public-key", tags=["asymmetric"])
async def get_public_key(key_id: KeyId, caller: CallerDep, service: ServiceDep) -> PublicKeyPublic:
    info = await service.asymmetric.get_public_key(caller, key_id)
    return PublicKeyPublic(
        key_arn=info.key_arn,
        public_key=info.public_key,
        key_spec=info.key_spec,
        key_usage=info.key_usage,
        encryption_algorithms=list(info.algorithms.encryption),
        signing_algorithms=list(info.algorithms.signing),
        key_agreement_algorithms=list(info.algorithms.key_agreement),
        encapsulation_algorithms=list(info.algorithms.encapsulation),
    )


@router.post(KEY + "/sign", tags=["asymmetric"])
async def sign(
    key_id: KeyId, body: SignRequest, caller: CallerDep, service: ServiceDep
) -> SignResult:
    result = await service.asymmetric.sign(
        caller, key_id, body.message, body.message_type, body.signing_algorithm, body.dry_run
    )
    return SignResult(
        key_arn=result.key_arn, signature=result.signature, signing_algorithm=result.algorithm
    )


@router.post(KEY + "/verify", tags=["asymmetric"])
async def verify(
    key_id: KeyId, body: VerifyRequest, caller: CallerDep, service: ServiceDep
) -> VerifyResult:
    """A valid signature answers 200; an invalid one KMSInvalidSignatureException (400)."""
    result = await service.asymmetric.verify(
        caller,
        key_id,
        body.message,
        body.message_type,
        body.signature,
        body.signing_algorithm,
        body.dry_run,
    )
    return VerifyResult(
        key_arn=result.key_arn, signature_valid=True, signing_algorithm=result.algorithm
    )


@router.post(KEY + "/generate-mac", tags=["hmac"])
async def generate_mac(
    key_id: KeyId, body: MacRequest, caller: CallerDep, service: ServiceDep
) -> MacResult:
    result = await service.asymmetric.generate_mac(
        caller, key_id, body.message, body.mac_algorithm, body.dry_run
    )
    return MacResult(key_arn=result.key_arn, mac=result.mac, mac_algorithm=result.algorithm)


@router.post(KEY + "/verify-mac", tags=["hmac"])
async def verify_mac(
    key_id: KeyId, body: VerifyMacRequest, caller: CallerDep, service: ServiceDep
) -> VerifyMacResult:
    """A matching MAC answers 200; any other KMSInvalidMacException (400)."""
    result = await service.asymmetric.verify_mac(
        caller, key_id, body.message, body.mac_algorithm, body.mac, body.dry_run
    )
    return VerifyMacResult(key_arn=result.key_arn, mac_valid=True, mac_algorithm=result.algorithm)


@router.post(KEY + "/data-key-pairs", tags=["cryptography"])
async def generate_data_key_pair(
    key_id: KeyId, body: DataKeyPairRequest, caller: CallerDep, service: ServiceDep
) -> DataKeyPairResult:
    """A key pair whose private key is encrypted under this symmetric key."""
    result = await service.asymmetric.generate_data_key_pair(
        caller,
        key_id,
        body.key_pair_spec,
        body.encryption_context,
        with_plaintext=body.with_plaintext,
        dry_run=body.dry_run,
    )
    return DataKeyPairResult(
        private_key_ciphertext=result.private_key_ciphertext,
        private_key_plaintext=result.private_key_plaintext,
        public_key=result.public_key,
        key_arn=result.key_arn,
        key_pair_spec=result.key_pair_spec,
        material_id=result.material_id,
    )


@router.post(KEY + "/shared-secret", tags=["asymmetric"])
async def derive_shared_secret(
    key_id: KeyId, body: SharedSecretRequest, caller: CallerDep, service: ServiceDep
) -> SharedSecretResult:
    result = await service.asymmetric.derive_shared_secret(
        caller, key_id, body.key_agreement_algorithm, body.public_key, body.dry_run
    )
    return SharedSecretResult(
        key_arn=result.key_arn,
        shared_secret=result.shared_secret,
        key_agreement_algorithm=result.algorithm,
        key_origin=result.key_origin,
    )


@router.post(KEY + "/encapsulate", tags=["post-quantum"])
async def encapsulate(
    key_id: KeyId, caller: CallerDep, service: ServiceDep, body: EncapsulateRequest | None = None
) -> EncapsulateResult:
    request = body or EncapsulateRequest()
    result = await service.asymmetric.encapsulate(
        caller, key_id, request.encapsulation_algorithm, request.dry_run
    )
    return EncapsulateResult(
        key_arn=result.key_arn,
        shared_secret=result.shared_secret,
        ciphertext=result.ciphertext,
        encapsulation_algorithm=result.algorithm,
    )


@router.post(KEY + "/decapsulate", tags=["post-quantum"])
async def decapsulate(
    key_id: KeyId, body: DecapsulateRequest, caller: CallerDep, service: ServiceDep
) -> DecapsulateResult:
    result = await service.asymmetric.decapsulate(
        caller, key_id, body.ciphertext, body.encapsulation_algorithm, body.dry_run
    )
    return DecapsulateResult(
        key_arn=result.key_arn,
        shared_secret=result.shared_secret,
        encapsulation_algorithm=result.algorithm,
    )


@router.post(KEY + "/import-parameters", tags=["imported material"])
async def get_parameters_for_import(
    key_id: KeyId, body: ImportParametersRequest, caller: CallerDep, service: ServiceDep
) -> ImportParametersPublic:
    """A wrapping public key and a single-use import token, valid for 24 hours."""
    result = await service.imported.get_parameters_for_import(
        caller, key_id, body.wrapping_algorithm, body.wrapping_key_spec
    )
    return ImportParametersPublic(
        key_arn=result.key_arn,
        import_token=result.import_token,
        public_key=result.public_key,
        parameters_valid_to=result.valid_to,
    )


@router.put(KEY + "/material", tags=["imported material"])
async def import_key_material(
    key_id: KeyId, body: ImportMaterialRequest, caller: CallerDep, service: ServiceDep
) -> MaterialPublic:
    """Import (or re-import) key material wrapped with the import parameters' public key."""
    valid_to = body.valid_to
    if valid_to is not None and valid_to.tzinfo is None:
        valid_to = valid_to.replace(tzinfo=UTC)
    result = await service.imported.import_key_material(
        caller,
        key_id,
        body.import_token,
        body.encrypted_key_material,
        valid_to=valid_to,
        expiration_model=body.expiration_model,
        import_type=body.import_type,
        description=body.description,
        key_material_id=body.key_material_id,
    )
    return MaterialPublic(key_arn=result.key_arn, material_id=result.material_id)


@router.delete(KEY + "/material", tags=["imported material"])
async def delete_imported_key_material(
    key_id: KeyId,
    caller: CallerDep,
    service: ServiceDep,
    key_material_id: Annotated[str | None, Query(pattern="^[a-f0-9]{64}$")] = None,
) -> MaterialPublic:
    """Delete imported material (default: the current one); the key becomes PendingImport."""
    result = await service.imported.delete_imported_key_material(caller, key_id, key_material_id)
    return MaterialPublic(key_arn=result.key_arn, material_id=result.material_id)
