"""Key specs, key usages and the algorithms each allows (AWS KMS's table)."""

from __future__ import annotations

from dataclasses import dataclass

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"

KEY_SPECS = (
    "SYMMETRIC_DEFAULT", "RSA_2048", "RSA_3072", "RSA_4096", "ECC_NIST_P256", "ECC_NIST_P384",
    "ECC_NIST_P521", "ECC_SECG_P256K1", "ECC_NIST_EDWARDS25519", "HMAC_224", "HMAC_256",
    "HMAC_384", "HMAC_512", "SM2", "ML_DSA_44", "ML_DSA_65", "ML_DSA_87",
)  # fmt: skip
KEY_USAGES = ("ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT")
ORIGINS = ("AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")
ENCRYPTION_ALGORITHMS = ("SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE")
DATA_KEY_SPECS = {"AES_256": 32, "AES_128": 16}


@dataclass(frozen=True)
class KeySpecInfo:
    """What a key spec may be used for."""

    spec: str
    usages: tuple[str, ...]
    encryption_algorithms: tuple[str, ...] = ()

    @property
    def default_usage(self) -> str | None:
        return self.usages[0] if len(self.usages) == 1 else None


# AWS's key spec x key usage table (reference §4), for every spec, so an impossible
# combination is a ValidationException even when this build cannot create the spec.
USAGES_BY_SPEC: dict[str, tuple[str, ...]] = {
    SYMMETRIC_DEFAULT: (ENCRYPT_DECRYPT,),
    **{spec: (ENCRYPT_DECRYPT, "SIGN_VERIFY") for spec in ("RSA_2048", "RSA_3072", "RSA_4096")},
    **{
        spec: ("SIGN_VERIFY", "KEY_AGREEMENT")
        for spec in ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_NIST_P521")
    },
    "ECC_SECG_P256K1": ("SIGN_VERIFY",),
    "ECC_NIST_EDWARDS25519": ("SIGN_VERIFY",),
    **{spec: ("GENERATE_VERIFY_MAC",) for spec in ("HMAC_224", "HMAC_256", "HMAC_384", "HMAC_512")},
    "SM2": (ENCRYPT_DECRYPT, "SIGN_VERIFY", "KEY_AGREEMENT"),
    **{spec: ("SIGN_VERIFY",) for spec in ("ML_DSA_44", "ML_DSA_65", "ML_DSA_87")},
    **{spec: ("ENCAPSULATE_DECAPSULATE",) for spec in ("ML_KEM_512", "ML_KEM_768", "ML_KEM_1024")},
}

# Specs this build can create; the others are answered UnsupportedOperation.
SUPPORTED_SPECS: dict[str, KeySpecInfo] = {
    SYMMETRIC_DEFAULT: KeySpecInfo(SYMMETRIC_DEFAULT, (ENCRYPT_DECRYPT,), (SYMMETRIC_DEFAULT,)),
}
