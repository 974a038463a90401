"""Request and response bodies of the REST API: the wire shapes, separate from the domain.

Requests are strict (a string where a number belongs is an error, not a coercion) and
reject unknown members, so a typo never silently drops a setting. Limits follow the AWS
KMS model, so both protocols accept the same values. Binary members (plaintext,
ciphertext, random bytes) travel as standard base64 strings.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

# AWS KMS model limits.
MAX_DESCRIPTION = 8192
MAX_POLICY = 131_072
MAX_KEY_ID = 2048
MAX_ALIAS_NAME = 256
MAX_PLAINTEXT = 4096
MAX_CIPHERTEXT = 6144
MAX_RANDOM_BYTES = 1024
MAX_MARKER = 1024


def _from_base64(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value  # building a response from a result; JSON input is never bytes
    if not isinstance(value, str):
        raise PydanticCustomError("base64_type", "Input should be a base64-encoded string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise PydanticCustomError("base64_decode", "Input is not valid base64") from None


def _to_base64(value: bytes) -> str:
    return base64.b64encode(value).decode()


Blob = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(_to_base64, return_type=str),
    WithJsonSchema({"type": "string", "format": "byte", "contentEncoding": "base64"}),
]
"""Binary data as base64 in JSON; length limits apply to the decoded bytes."""

TagKey = Annotated[str, StringConstraints(min_length=1, max_length=128)]
TagValue = Annotated[str, StringConstraints(max_length=256)]
KeyReference = Annotated[str, StringConstraints(min_length=1, max_length=MAX_KEY_ID)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=64)]
EncryptionContext = dict[str, str]


class RequestBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class Paged(BaseModel):
    next_marker: str | None = Field(
        None, description="Pass as `marker` to get the next page; absent on the last page."
    )
    truncated: bool = False


class ErrorBody(BaseModel):
    """Every error, in the AWS JSON protocol's shape."""

    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(alias="__type", examples=["NotFoundException"])
    message: str


# --- keys ----------------------------------------------------------------------------
class KeyCreate(RequestBody):
    description: str = Field("", max_length=MAX_DESCRIPTION)
    key_usage: ShortText | None = Field(None, examples=["ENCRYPT_DECRYPT"])
    key_spec: ShortText | None = Field(None, examples=["SYMMETRIC_DEFAULT"])
    origin: Literal["AWS_KMS", "EXTERNAL"] = Field(
        "AWS_KMS", description="EXTERNAL: no material; import it (PendingImport until then)."
    )
    policy: str | None = Field(
        None, min_length=1, max_length=MAX_POLICY, description="A key policy (JSON text)."
    )
    bypass_policy_lockout_safety_check: bool = False
    tags: dict[TagKey, TagValue] = Field(default_factory=dict)


class KeyUpdate(RequestBody):
    description: str = Field(max_length=MAX_DESCRIPTION)


class KeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key_id: str
    arn: str
    account_id: str
    description: str
    key_state: str
    enabled: bool
    key_usage: str
    key_spec: str
    origin: str
    key_manager: str
    creation_date: datetime
    deletion_date: datetime | None
    encryption_algorithms: list[str]
    multi_region: bool
    current_material_id: str | None
    signing_algorithms: list[str] = []
    mac_algorithms: list[str] = []
    key_agreement_algorithms: list[str] = []
    encapsulation_algorithms: list[str] = []
    expiration_model: str | None = None
    valid_to: datetime | None = None


class KeyEntryPublic(BaseModel):
    key_id: str
    key_arn: str


class KeyList(Paged):
    keys: list[KeyEntryPublic]


class DeletionSchedule(RequestBody):
    pending_window_days: int | None = Field(
        None, ge=1, le=365, description="7 to 30 days; 30 when absent."
    )


class DeletionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key_arn: str
    deletion_date: datetime
    key_state: str
    pending_window_days: int


class DeletionCancelled(BaseModel):
    key_arn: str


# --- rotation ------------------------------------------------------------------------
class RotationSettings(RequestBody):
    rotation_period_days: int | None = Field(
        None, ge=90, le=2560, description="Days between automatic rotations; 365 when absent."
    )


class RotationStatusPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key_id: str = Field(description="The key's ARN.")
    rotation_enabled: bool
    rotation_period_days: int | None
    next_rotation_date: datetime | None


class RotationPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key_id: str
    material_id: str
    rotation_date: datetime
    rotation_type: str | None = Field(description="AUTOMATIC or ON_DEMAND; null for the original.")


class RotationList(Paged):
    rotations: list[RotationPublic]


class RotatedPublic(BaseModel):
    key_id: str


# --- tags and policy -------------------------------------------------------------------
class TagUpdate(RequestBody):
    tags: dict[TagKey, TagValue] = Field(description="Tags to add or overwrite.")


class TagList(Paged):
    tags: dict[str, str]


class PolicyPublic(BaseModel):
    policy_name: str
    policy: str = Field(description="The key policy (JSON text).")


class PolicyUpdate(RequestBody):
    policy: str = Field(min_length=1, max_length=MAX_POLICY)
    policy_name: str | None = Field(None, description="Only `default` exists.")
    bypass_policy_lockout_safety_check: bool = Field(
        False, description="Skip the check that the new policy lets you change it again."
    )


# --- aliases ---------------------------------------------------------------------------
class AliasCreate(RequestBody):
    alias_name: str = Field(min_length=1, max_length=MAX_ALIAS_NAME, examples=["alias/orders"])
    target_key_id: KeyReference


class AliasUpdate(RequestBody):
    target_key_id: KeyReference


class AliasPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    alias_name: str
    alias_arn: str
    target_key_id: str | None
    creation_date: datetime | None
    last_updated: datetime | None


class AliasList(Paged):
    aliases: list[AliasPublic]


# --- cryptography ----------------------------------------------------------------------
class EncryptRequest(RequestBody):
    plaintext: Annotated[Blob, Field(min_length=1, max_length=MAX_PLAINTEXT)]
    encryption_context: EncryptionContext | None = None
    encryption_algorithm: ShortText | None = None
    dry_run: bool = False


class EncryptResult(BaseModel):
    ciphertext: Blob
    key_arn: str
    encryption_algorithm: str
    material_id: str


class DecryptRequest(RequestBody):
    ciphertext: Annotated[Blob, Field(min_length=1, max_length=MAX_CIPHERTEXT)]
    key_id: KeyReference | None = Field(
        None, description="Optional: the key the ciphertext must have been sealed under."
    )
    encryption_context: EncryptionContext | None = None
    encryption_algorithm: ShortText | None = None
    dry_run: bool = False


class DecryptResult(BaseModel):
    plaintext: Blob
    key_arn: str
    encryption_algorithm: str
    material_id: str


class DataKeyRequest(RequestBody):
    number_of_bytes: int | None = Field(None, ge=1, le=MAX_RANDOM_BYTES)
    key_spec: Literal["AES_256", "AES_128"] | None = None
    encryption_context: EncryptionContext | None = None
    with_plaintext: bool = Field(
        True, description="False: only the encrypted data key (GenerateDataKeyWithoutPlaintext)."
    )
    dry_run: bool = False


class DataKeyResult(BaseModel):
    ciphertext: Blob
    plaintext: Blob | None = None
    key_arn: str
    material_id: str


class ReEncryptRequest(RequestBody):
    ciphertext: Annotated[Blob, Field(min_length=1, max_length=MAX_CIPHERTEXT)]
    destination_key_id: KeyReference
    source_key_id: KeyReference | None = None
    source_encryption_context: EncryptionContext | None = None
    destination_encryption_context: EncryptionContext | None = None
    source_encryption_algorithm: ShortText | None = None
    destination_encryption_algorithm: ShortText | None = None
    dry_run: bool = False


class ReEncryptResult(BaseModel):
    ciphertext: Blob
    source_key_arn: str
    key_arn: str
    source_encryption_algorithm: str
    destination_encryption_algorithm: str
    source_material_id: str
    destination_material_id: str


class RandomRequest(RequestBody):
    number_of_bytes: int = Field(ge=1, le=MAX_RANDOM_BYTES)


class RandomResult(BaseModel):
    random_bytes: Blob


# --- history ---------------------------------------------------------------------------
class EventPublic(BaseModel):
    version: int
    type: str = Field(examples=["Created", "Used", "Disabled"])
    timestamp: datetime
    actor: dict[str, Any]
    details: dict[str, Any] = Field(
        description="The event's other fields; key material shows only its version and id."
    )


class EventList(BaseModel):
    events: list[EventPublic]
    next_after_version: int | None = Field(
        None, description="Pass as `after_version` to get the next page; absent on the last."
    )
    truncated: bool = False
