"""LocalStack's test-ergonomics tags on CreateKey, honoured in emulator mode only
(docs/emulator.md): ``_custom_id_`` chooses the key id, ``_custom_key_material_`` supplies
the material (base64: 32 bytes for SYMMETRIC_DEFAULT, the raw key for HMAC, a PKCS#8 DER
private key for asymmetric specs). As LocalStack does, the material's tag is never stored;
the id's tag is kept as an ordinary tag. Errors never repeat the material."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass

from domain.algorithms import (
    HMAC_KEY_SIZES,
    SYMMETRIC_MATERIAL_SIZE,
    is_hmac,
    is_symmetric,
    load_private_key,
)
from domain.errors import ValidationError

__all__ = ["CUSTOM_ID_TAG", "CUSTOM_MATERIAL_TAG", "SeededKey", "seeded_key"]

CUSTOM_ID_TAG = "_custom_id_"
CUSTOM_MATERIAL_TAG = "_custom_key_material_"


@dataclass(frozen=True)
class SeededKey:
    """What the tags ask for, and the tags to store."""

    key_id: uuid.UUID | None
    material: bytes | None
    tags: dict[str, str]


def seeded_key(
    tags: dict[str, str], *, key_spec: str, origin_is_kms: bool, multi_region: bool
) -> SeededKey:
    """Read the two tags (either may be absent); raise ValidationError for a value that
    cannot be honoured."""
    custom_id = tags.get(CUSTOM_ID_TAG)
    encoded = tags.get(CUSTOM_MATERIAL_TAG)
    kept = {name: value for name, value in tags.items() if name != CUSTOM_MATERIAL_TAG}
    key_id = None if custom_id is None else _key_id(custom_id, multi_region)
    material = None if encoded is None else _material(encoded, key_spec, origin_is_kms)
    return SeededKey(key_id=key_id, material=material, tags=kept)


def _key_id(value: str, multi_region: bool) -> uuid.UUID:
    if multi_region:
        raise ValidationError(f"{CUSTOM_ID_TAG} cannot name a multi-Region key (mrk- ids).")
    try:
        key_id = uuid.UUID(value)
    except ValueError:
        key_id = None
    if key_id is None or str(key_id) != value.lower():
        raise ValidationError(f"Invalid {CUSTOM_ID_TAG} '{value}': a key id is a UUID.")
    return key_id


def _material(encoded: str, key_spec: str, origin_is_kms: bool) -> bytes:
    if not origin_is_kms:
        raise ValidationError(f"{CUSTOM_MATERIAL_TAG} is for keys of Origin AWS_KMS only.")
    try:
        material = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationError(f"{CUSTOM_MATERIAL_TAG} must be base64.") from None
    if is_symmetric(key_spec):
        if len(material) != SYMMETRIC_MATERIAL_SIZE:
            raise ValidationError(
                f"{CUSTOM_MATERIAL_TAG} of a {key_spec} key must be "
                f"{SYMMETRIC_MATERIAL_SIZE} bytes, not {len(material)}."
            )
    elif is_hmac(key_spec):
        low, high = HMAC_KEY_SIZES[key_spec]
        if not low <= len(material) <= high:
            raise ValidationError(
                f"{CUSTOM_MATERIAL_TAG} of a {key_spec} key must be {low}-{high} bytes, "
                f"not {len(material)}."
            )
    else:
        try:
            load_private_key(key_spec, material)
        except (ValueError, TypeError):
            raise ValidationError(
                f"{CUSTOM_MATERIAL_TAG} of a {key_spec} key must be a PKCS#8 DER "
                f"{key_spec} private key."
            ) from None
    return material
