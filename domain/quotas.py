"""AWS KMS's request quotas: which quota a call counts against, AWS's default rates, and
the token bucket that enforces one (docs/operations.md, "Request quotas").

Pure: no clock of its own (time is passed in), no I/O. The rates are AWS's documented
defaults (docs.aws.amazon.com/kms/latest/developerguide/requests-per-second.html, as in the
2023 AWS KMS Developer Guide; reference sts-quotas-multiregion-emulators.md section 2).
Each quota applies per account and per Region; each is counted independently of the
others (a throttled CreateAlias leaves CreateKey untouched).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# The shared quotas of cryptographic operations, by the type of KMS key they use.
SYMMETRIC = "symmetric"  # symmetric encryption and HMAC keys
RSA = "rsa"
ECC = "ecc"
SM2 = "sm2"  # AWS's China Regions only
#: The quota shared by GenerateDataKeyPair and GenerateDataKeyPairWithoutPlaintext for
#: one KeyPairSpec is named ``GenerateDataKeyPair/<KeyPairSpec>``.
DATA_KEY_PAIR = "GenerateDataKeyPair/"

#: AWS's default rates in requests per second (the symmetric quota: 10,000, the default of
#: most Regions; some are given 20,000 and the largest more: raise it with
#: KEYLEDGER_QUOTA_RATES to match a Region). A call AWS documents no quota for (e.g.
#: RotateKeyOnDemand, ListKeyRotations, ML-DSA and ML-KEM keys) is not limited.
DEFAULT_RATES: dict[str, float] = {
    SYMMETRIC: 10_000,
    RSA: 500,
    ECC: 300,
    SM2: 300,
    DATA_KEY_PAIR + "ECC_NIST_P256": 25,
    DATA_KEY_PAIR + "ECC_NIST_P384": 10,
    DATA_KEY_PAIR + "ECC_NIST_P521": 5,
    DATA_KEY_PAIR + "ECC_SECG_P256K1": 25,
    DATA_KEY_PAIR + "RSA_2048": 1,
    DATA_KEY_PAIR + "RSA_3072": 0.5,
    DATA_KEY_PAIR + "RSA_4096": 0.1,
    DATA_KEY_PAIR + "SM2": 25,
    "CancelKeyDeletion": 5,
    "ConnectCustomKeyStore": 5,
    "CreateAlias": 5,
    "CreateCustomKeyStore": 5,
    "CreateGrant": 50,
    "CreateKey": 5,
    "DeleteAlias": 15,
    "DeleteCustomKeyStore": 5,
    "DeleteImportedKeyMaterial": 5,
    "DescribeCustomKeyStores": 5,
    "DescribeKey": 2000,
    "DisableKey": 5,
    "DisableKeyRotation": 5,
    "DisconnectCustomKeyStore": 5,
    "EnableKey": 5,
    "EnableKeyRotation": 15,
    "GetKeyPolicy": 1000,
    "GetKeyRotationStatus": 1000,
    "GetParametersForImport": 0.25,
    "GetPublicKey": 2000,
    "ImportKeyMaterial": 5,
    "ListAliases": 500,
    "ListGrants": 100,
    "ListKeyPolicies": 100,
    "ListKeys": 500,
    "ListResourceTags": 2000,
    "ListRetirableGrants": 100,
    "PutKeyPolicy": 15,
    "ReplicateKey": 5,
    "RetireGrant": 30,
    "RevokeGrant": 30,
    "ScheduleKeyDeletion": 15,
    "TagResource": 10,
    "UntagResource": 5,
    "UpdateAlias": 5,
    "UpdateCustomKeyStore": 5,
    "UpdateKeyDescription": 5,
    "UpdatePrimaryRegion": 5,
}
QUOTA_NAMES = frozenset(DEFAULT_RATES)

# Operations whose quota does not depend on their parameters: the symmetric quota (HMAC
# keys are symmetric; GenerateRandom uses no key, and AWS lists it under this quota), or
# a quota of their own.
_FIXED: dict[str, str] = {
    **dict.fromkeys(
        (
            "GenerateDataKey",
            "GenerateDataKeyWithoutPlaintext",
            "GenerateMac",
            "VerifyMac",
            "GenerateRandom",
        ),
        SYMMETRIC,
    ),
    **{name: name for name in DEFAULT_RATES if name[:1].isupper() and "/" not in name},
    "DeriveSharedSecret": ECC,  # ECDH, with an ECC key (SM2 keys: China Regions only)
}
# Operations whose quota is their key's type, told by the algorithm the request names (the
# quota is decided before the key is read: no work is done for a call that is refused).
# ReEncrypt: its decrypt half's algorithm names the source key's type.
_ALGORITHM_MEMBER = {
    "Encrypt": "EncryptionAlgorithm",
    "Decrypt": "EncryptionAlgorithm",
    "ReEncrypt": "SourceEncryptionAlgorithm",
    "Sign": "SigningAlgorithm",
    "Verify": "SigningAlgorithm",
}
# AWS's encryption and signing algorithms (EncryptionAlgorithmSpec, SigningAlgorithmSpec)
# by the quota of the keys that use them; ML-DSA has no documented quota.
_ALGORITHM_QUOTAS = {
    "SYMMETRIC_DEFAULT": SYMMETRIC,
    **dict.fromkeys(("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256"), RSA),
    **{
        f"RSASSA_{padding}_SHA_{bits}": RSA
        for padding in ("PSS", "PKCS1_V1_5")
        for bits in (256, 384, 512)
    },
    **{f"ECDSA_SHA_{bits}": ECC for bits in (256, 384, 512)},
    **dict.fromkeys(("ED25519_SHA_512", "ED25519_PH_SHA_512"), ECC),
    **dict.fromkeys(("SM2PKE", "SM2DSA"), SM2),
}
_DATA_KEY_PAIRS = frozenset({"GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext"})
# Operations that also count in a second Region (other_region_charges).
TWO_REGION_OPERATIONS = frozenset({"ReplicateKey", "UpdatePrimaryRegion"})


def quota_of(operation: str, parameters: Mapping[str, Any]) -> str | None:
    """The quota a call of ``operation`` with (validated, AWS-shaped) ``parameters`` counts
    against, or None when AWS documents none. Cheap: a lookup or two."""
    quota = _FIXED.get(operation)
    if quota is not None:
        return quota
    member = _ALGORITHM_MEMBER.get(operation)
    if member is not None:
        algorithm = parameters.get(member)
        if algorithm is None:  # AWS's default: SYMMETRIC_DEFAULT
            return SYMMETRIC
        return _ALGORITHM_QUOTAS.get(algorithm) if isinstance(algorithm, str) else None
    if operation in _DATA_KEY_PAIRS:
        name = DATA_KEY_PAIR + str(parameters.get("KeyPairSpec"))
        return name if name in QUOTA_NAMES else None
    return None


def other_region_charges(operation: str, parameters: Mapping[str, Any]) -> tuple[str, str, int]:
    """What a call costs in a second Region, as AWS documents it: ReplicateKey counts two
    CreateKey requests in the replica's Region, UpdatePrimaryRegion one UpdatePrimaryRegion
    request in the new primary's. ``(region, quota, tokens)``; an empty region when none."""
    if operation == "ReplicateKey":
        region = parameters.get("ReplicaRegion")
        return (region, "CreateKey", 2) if isinstance(region, str) else ("", "", 0)
    if operation == "UpdatePrimaryRegion":
        region = parameters.get("PrimaryRegion")
        return (region, "UpdatePrimaryRegion", 1) if isinstance(region, str) else ("", "", 0)
    return "", "", 0


class TokenBucket:
    """``rate`` tokens a second, at most ``capacity`` held (a full bucket to start: a
    second's worth, at least one token). A call takes one token or is refused."""

    __slots__ = ("capacity", "rate", "tokens", "updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = now

    def available(self, now: float) -> float:
        """The tokens held at ``now`` (refilled since the last look; time never runs back)."""
        if now > self.updated:
            tokens = self.tokens + (now - self.updated) * self.rate
            self.tokens = tokens if tokens < self.capacity else self.capacity
            self.updated = now
        return self.tokens

    def take(self, now: float, tokens: float = 1.0) -> bool:
        """Take ``tokens`` if held at ``now``; False (and nothing taken) otherwise."""
        held = self.tokens
        if now > self.updated:  # available(now), inline: this runs on every call
            held += (now - self.updated) * self.rate
            if held > self.capacity:
                held = self.capacity
            self.updated = now
        if held < tokens:
            self.tokens = held
            return False
        self.tokens = held - tokens
        return True


def bucket_capacity(rate: float) -> float:
    """A bucket's size: one second of its rate, and at least one token (so that a quota
    of 0.25 a second admits one call every four seconds)."""
    return rate if rate > 1.0 else 1.0
