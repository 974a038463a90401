"""Grants: delegations of a key's operations to one principal, under optional constraints.

A grant is state of its Key aggregate (``GrantCreated`` / ``GrantRetired`` / ``GrantRevoked``
on the key's stream), so a grant check is linearizable with every use of the key. This
module holds the values: the grant, its encryption-context constraints, which operations a
key type can grant, and the grant-token format (the token's MAC is computed by the app with
a key derived from the root key; the domain only lays out the bytes).
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from domain.errors import InvalidGrantIdError, InvalidGrantTokenError, ValidationError
from domain.key_specs import ENCRYPT_DECRYPT, SYMMETRIC_DEFAULT

GRANT_OPERATIONS = (
    "Decrypt",
    "Encrypt",
    "GenerateDataKey",
    "GenerateDataKeyWithoutPlaintext",
    "ReEncryptFrom",
    "ReEncryptTo",
    "Sign",
    "Verify",
    "GetPublicKey",
    "CreateGrant",
    "RetireGrant",
    "DescribeKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
)
# Operations that take an encryption context: the only ones grant constraints restrict.
ENCRYPTION_CONTEXT_OPERATIONS = frozenset(
    {
        "Encrypt",
        "Decrypt",
        "ReEncryptFrom",
        "ReEncryptTo",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
    }
)
_ANY_KEY = frozenset({"CreateGrant", "RetireGrant", "DescribeKey"})
_BY_USAGE: dict[str, frozenset[str]] = {
    "SIGN_VERIFY": frozenset({"Sign", "Verify", "GetPublicKey"}),
    "GENERATE_VERIFY_MAC": frozenset({"GenerateMac", "VerifyMac"}),
    "KEY_AGREEMENT": frozenset({"DeriveSharedSecret", "GetPublicKey"}),
    "ENCAPSULATE_DECAPSULATE": frozenset({"GetPublicKey"}),
}
_SYMMETRIC = frozenset(ENCRYPTION_CONTEXT_OPERATIONS)
_ASYMMETRIC_ENCRYPTION = frozenset(
    {"Encrypt", "Decrypt", "ReEncryptFrom", "ReEncryptTo", "GetPublicKey"}
)
MAX_CONSTRAINT_PAIRS = 8
MAX_CONSTRAINT_VALUE = 384
MAX_GRANTS_PER_KEY = 50_000
GRANT_ID_PATTERN = re.compile(r"^[0-9a-f]{64}$")
TOKEN_PREFIX = "KLGT1"
_TOKEN_NONCE_BYTES = 16
_TOKEN_MAC_BYTES = 32


def grantable_operations(key_spec: str, key_usage: str) -> frozenset[str]:
    """The operations a grant on a key of this spec and usage may allow (AWS's rule)."""
    if key_usage == ENCRYPT_DECRYPT:
        usable = _SYMMETRIC if key_spec == SYMMETRIC_DEFAULT else _ASYMMETRIC_ENCRYPTION
    else:
        usable = _BY_USAGE.get(key_usage, frozenset())
    return usable | _ANY_KEY


def check_grant_operations(operations: Iterable[str], key_spec: str, key_usage: str) -> None:
    requested = list(operations)
    if not requested:
        raise ValidationError("Operations must name at least one operation.")
    invalid = sorted(set(requested) - grantable_operations(key_spec, key_usage))
    if invalid:
        raise ValidationError(
            f"Grant operations {', '.join(invalid)} are not valid for a KMS key with key spec "
            f"{key_spec} and key usage {key_usage}."
        )


def check_grant_id(grant_id: str) -> None:
    if not GRANT_ID_PATTERN.match(grant_id):
        raise InvalidGrantIdError(f"Invalid grant id '{grant_id}'")


@dataclass(frozen=True)
class GrantConstraints:
    """Encryption-context constraints. Keys compare case-insensitively, values exactly."""

    encryption_context_equals: tuple[tuple[str, str], ...] | None = None
    encryption_context_subset: tuple[tuple[str, str], ...] | None = None

    @classmethod
    def of(
        cls, equals: Mapping[str, str] | None = None, subset: Mapping[str, str] | None = None
    ) -> GrantConstraints | None:
        """Validated constraints from the request members; None when neither is given."""
        if equals is None and subset is None:
            return None
        for name, pairs in (
            ("EncryptionContextEquals", equals),
            ("EncryptionContextSubset", subset),
        ):
            if pairs is None:
                continue
            if len(pairs) > MAX_CONSTRAINT_PAIRS:
                raise ValidationError(
                    f"{name} may hold at most {MAX_CONSTRAINT_PAIRS} encryption context pairs."
                )
            if any(len(value) > MAX_CONSTRAINT_VALUE for value in pairs.values()):
                raise ValidationError(
                    f"{name} values may be at most {MAX_CONSTRAINT_VALUE} characters long."
                )
        return cls(
            tuple(sorted(equals.items())) if equals is not None else None,
            tuple(sorted(subset.items())) if subset is not None else None,
        )

    def satisfied_by(self, context: Mapping[str, str] | None) -> bool:
        request = {key.lower(): value for key, value in (context or {}).items()}
        if self.encryption_context_equals is not None:
            wanted = {key.lower(): value for key, value in self.encryption_context_equals}
            if request != wanted:
                return False
        if self.encryption_context_subset is not None:
            for key, value in self.encryption_context_subset:
                if request.get(key.lower()) != value:
                    return False
        return True

    def at_least_as_strict_as(self, parent: GrantConstraints | None) -> bool:
        """May a grant with these constraints be created through a grant with ``parent``'s?"""
        if parent is None:
            return True
        mine_equals = _lower(self.encryption_context_equals)
        mine_subset = _lower(self.encryption_context_subset)
        if parent.encryption_context_equals is not None and mine_equals != _lower(
            parent.encryption_context_equals
        ):
            return False
        if parent.encryption_context_subset is not None:
            required = _lower(parent.encryption_context_subset) or {}
            held = mine_equals if mine_equals is not None else (mine_subset or {})
            if mine_equals is None and mine_subset is None:
                return False
            if any(held.get(key) != value for key, value in required.items()):
                return False
        return True

    @property
    def types(self) -> tuple[str, ...]:
        """The kms:GrantConstraintType values: which constraint members are present."""
        found = []
        if self.encryption_context_equals is not None:
            found.append("EncryptionContextEquals")
        if self.encryption_context_subset is not None:
            found.append("EncryptionContextSubset")
        return tuple(found)

    def record(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        if self.encryption_context_equals is not None:
            out["EncryptionContextEquals"] = dict(self.encryption_context_equals)
        if self.encryption_context_subset is not None:
            out["EncryptionContextSubset"] = dict(self.encryption_context_subset)
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Mapping[str, str]] | None) -> GrantConstraints | None:
        if not record:
            return None
        return cls.of(record.get("EncryptionContextEquals"), record.get("EncryptionContextSubset"))


def _lower(pairs: tuple[tuple[str, str], ...] | None) -> dict[str, str] | None:
    return None if pairs is None else {key.lower(): value for key, value in pairs}


@dataclass(frozen=True)
class Grant:
    grant_id: str
    key_id: str
    name: str
    grantee_principal: str
    retiring_principal: str | None
    operations: tuple[str, ...]
    constraints: GrantConstraints | None
    issuing_account: str
    creation_date: datetime | None = None

    def allows_operation(self, operation: str, context: Mapping[str, str] | None) -> bool:
        """Does this grant allow ``operation`` with this encryption context?"""
        if operation not in self.operations:
            return False
        if self.constraints is None or operation not in ENCRYPTION_CONTEXT_OPERATIONS:
            return True
        return self.constraints.satisfied_by(context)

    def same_request(self, other: Grant) -> bool:
        """Same grantee, retiring principal, operations and constraints (Name idempotency)."""
        return (
            self.grantee_principal == other.grantee_principal
            and self.retiring_principal == other.retiring_principal
            and set(self.operations) == set(other.operations)
            and self.constraints == other.constraints
        )

    def record(self) -> dict[str, Any]:
        """The grant as a GrantCreated event carries it (plain JSON values)."""
        return {
            "grant_id": self.grant_id,
            "key_id": self.key_id,
            "name": self.name,
            "grantee_principal": self.grantee_principal,
            "retiring_principal": self.retiring_principal,
            "operations": list(self.operations),
            "constraints": self.constraints.record() if self.constraints else None,
            "issuing_account": self.issuing_account,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Grant:
        return cls(
            grant_id=record["grant_id"],
            key_id=record["key_id"],
            name=record.get("name") or "",
            grantee_principal=record["grantee_principal"],
            retiring_principal=record.get("retiring_principal"),
            operations=tuple(record["operations"]),
            constraints=GrantConstraints.from_record(record.get("constraints")),
            issuing_account=record["issuing_account"],
            creation_date=record.get("creation_date"),
        )


# ==== grant tokens ===========================================================================
@dataclass(frozen=True)
class GrantToken:
    key_id: uuid.UUID
    grant_id: str
    signed: bytes  # the bytes the MAC covers
    mac: bytes


def grant_token_payload(key_id: uuid.UUID, grant_id: str, nonce: bytes) -> bytes:
    return key_id.bytes + bytes.fromhex(grant_id) + nonce


def encode_grant_token(payload: bytes, mac: bytes) -> str:
    return TOKEN_PREFIX + base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")


def decode_grant_token(token: str) -> GrantToken:
    """Lay out a token's parts; raise InvalidGrantTokenError when it cannot be one of ours."""
    if not token.startswith(TOKEN_PREFIX):
        raise InvalidGrantTokenError("The grant token is not valid.")
    body = token[len(TOKEN_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise InvalidGrantTokenError("The grant token is not valid.") from None
    if len(raw) != 16 + 32 + _TOKEN_NONCE_BYTES + _TOKEN_MAC_BYTES:
        raise InvalidGrantTokenError("The grant token is not valid.")
    signed, mac = raw[:-_TOKEN_MAC_BYTES], raw[-_TOKEN_MAC_BYTES:]
    return GrantToken(uuid.UUID(bytes=raw[:16]), raw[16:48].hex(), signed, mac)


TOKEN_NONCE_BYTES = _TOKEN_NONCE_BYTES
