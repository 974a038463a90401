"""Key specs, key usages and the algorithms each allows (AWS KMS's table)."""

from __future__ import annotations

from dataclasses import dataclass

SYMMETRIC_DEFAULT = "SYMMETRIC_DEFAULT"
ENCRYPT_DECRYPT = "ENCRYPT_DECRYPT"
SIGN_VERIFY = "SIGN_VERIFY"
GENERATE_VERIFY_MAC = "GENERATE_VERIFY_MAC"
KEY_AGREEMENT = "KEY_AGREEMENT"
ENCAPSULATE_DECAPSULATE = "ENCAPSULATE_DECAPSULATE"
AWS_KMS, EXTERNAL = "AWS_KMS", "EXTERNAL"

KEY_SPECS = (
    "SYMMETRIC_DEFAULT",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "ECC_NIST_EDWARDS25519",
    "HMAC_224",
    "HMAC_256",
    "HMAC_384",
    "HMAC_512",
    "SM2",
    "ML_DSA_44",
    "ML_DSA_65",
    "ML_DSA_87",
    "ML_KEM_512",
    "ML_KEM_768",
    "ML_KEM_1024",
)
KEY_USAGES = (
    "ENCRYPT_DECRYPT",
    "SIGN_VERIFY",
    "GENERATE_VERIFY_MAC",
    "KEY_AGREEMENT",
    "ENCAPSULATE_DECAPSULATE",
)
ORIGINS = ("AWS_KMS", "EXTERNAL", "AWS_CLOUDHSM", "EXTERNAL_KEY_STORE")
ENCRYPTION_ALGORITHMS = ("SYMMETRIC_DEFAULT", "RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256", "SM2PKE")
DATA_KEY_SPECS = {"AES_256": 32, "AES_128": 16}


@dataclass(frozen=True)
class KeySpecInfo:
    """What a key spec may be used for, and the algorithms of each usage."""

    spec: str
    usages: tuple[str, ...]
    encryption_algorithms: tuple[str, ...] = ()
    signing_algorithms: tuple[str, ...] = ()
    mac_algorithms: tuple[str, ...] = ()
    key_agreement_algorithms: tuple[str, ...] = ()
    encapsulation_algorithms: tuple[str, ...] = ()

    @property
    def default_usage(self) -> str | None:
        return self.usages[0] if len(self.usages) == 1 else None

    def algorithms(self, usage: str) -> KeyAlgorithms:
        """The algorithms a key of this spec and ``usage`` lists (DescribeKey, GetPublicKey)."""
        return KeyAlgorithms(
            encryption=self.encryption_algorithms if usage == ENCRYPT_DECRYPT else (),
            signing=self.signing_algorithms if usage == SIGN_VERIFY else (),
            mac=self.mac_algorithms if usage == GENERATE_VERIFY_MAC else (),
            key_agreement=self.key_agreement_algorithms if usage == KEY_AGREEMENT else (),
            encapsulation=(
                self.encapsulation_algorithms if usage == ENCAPSULATE_DECAPSULATE else ()
            ),
        )


@dataclass(frozen=True)
class KeyAlgorithms:
    encryption: tuple[str, ...] = ()
    signing: tuple[str, ...] = ()
    mac: tuple[str, ...] = ()
    key_agreement: tuple[str, ...] = ()
    encapsulation: tuple[str, ...] = ()


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

RSA_ENCRYPTION_ALGORITHMS = ("RSAES_OAEP_SHA_1", "RSAES_OAEP_SHA_256")
RSA_SIGNING_ALGORITHMS = (
    "RSASSA_PSS_SHA_256",
    "RSASSA_PSS_SHA_384",
    "RSASSA_PSS_SHA_512",
    "RSASSA_PKCS1_V1_5_SHA_256",
    "RSASSA_PKCS1_V1_5_SHA_384",
    "RSASSA_PKCS1_V1_5_SHA_512",
)
ECDH = "ECDH"
ML_KEM = "ML_KEM"
ML_DSA_SHAKE_256 = "ML_DSA_SHAKE_256"

# Specs this build can create; the others are answered UnsupportedOperation. ML_KEM_512
# waits for the cryptography library (50.x offers ML-KEM-768 and -1024 only); SM2 is
# offered by AWS in China Regions only.
SUPPORTED_SPECS: dict[str, KeySpecInfo] = {
    SYMMETRIC_DEFAULT: KeySpecInfo(SYMMETRIC_DEFAULT, (ENCRYPT_DECRYPT,), (SYMMETRIC_DEFAULT,)),
    **{
        spec: KeySpecInfo(
            spec,
            (ENCRYPT_DECRYPT, SIGN_VERIFY),
            RSA_ENCRYPTION_ALGORITHMS,
            RSA_SIGNING_ALGORITHMS,
        )
        for spec in ("RSA_2048", "RSA_3072", "RSA_4096")
    },
    **{
        spec: KeySpecInfo(
            spec,
            (SIGN_VERIFY, KEY_AGREEMENT),
            signing_algorithms=(algorithm,),
            key_agreement_algorithms=(ECDH,),
        )
        for spec, algorithm in (
            ("ECC_NIST_P256", "ECDSA_SHA_256"),
            ("ECC_NIST_P384", "ECDSA_SHA_384"),
            ("ECC_NIST_P521", "ECDSA_SHA_512"),
        )
    },
    "ECC_SECG_P256K1": KeySpecInfo(
        "ECC_SECG_P256K1", (SIGN_VERIFY,), signing_algorithms=("ECDSA_SHA_256",)
    ),
    "ECC_NIST_EDWARDS25519": KeySpecInfo(
        "ECC_NIST_EDWARDS25519",
        (SIGN_VERIFY,),
        signing_algorithms=("ED25519_SHA_512", "ED25519_PH_SHA_512"),
    ),
    **{
        f"HMAC_{bits}": KeySpecInfo(
            f"HMAC_{bits}", (GENERATE_VERIFY_MAC,), mac_algorithms=(f"HMAC_SHA_{bits}",)
        )
        for bits in (224, 256, 384, 512)
    },
    **{
        spec: KeySpecInfo(spec, (SIGN_VERIFY,), signing_algorithms=(ML_DSA_SHAKE_256,))
        for spec in ("ML_DSA_44", "ML_DSA_65", "ML_DSA_87")
    },
    **{
        spec: KeySpecInfo(spec, (ENCAPSULATE_DECAPSULATE,), encapsulation_algorithms=(ML_KEM,))
        for spec in ("ML_KEM_768", "ML_KEM_1024")
    },
}

# GenerateDataKeyPair's KeyPairSpec values this build can generate.
SUPPORTED_DATA_KEY_PAIR_SPECS = (
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "ECC_NIST_P256",
    "ECC_NIST_P384",
    "ECC_NIST_P521",
    "ECC_SECG_P256K1",
    "ECC_NIST_EDWARDS25519",
    "ML_KEM_768",
    "ML_KEM_1024",
)


def key_algorithms(key_spec: str, key_usage: str) -> KeyAlgorithms:
    info = SUPPORTED_SPECS.get(key_spec)
    return info.algorithms(key_usage) if info else KeyAlgorithms()
