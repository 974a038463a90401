"""The resources hostile text and the fuzzers aim at, created through the KMS API.

A key of each kind an operation needs (symmetric, RSA signing, HMAC, ECC key agreement,
EXTERNAL origin), an alias, a grant with its token, ciphertexts and a peer public key, so
that a request generated from the model can name things that exist and get past the
first checks, deep enough to reach the projections.
"""

from __future__ import annotations

import base64
import itertools
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tools.chaos.clients import KmsClient, Reply
from tools.chaos.service import ACCOUNT_ID

SIGN_OPERATIONS = frozenset({"Sign", "Verify", "GetPublicKey"})
MAC_OPERATIONS = frozenset({"GenerateMac", "VerifyMac"})
AGREEMENT_OPERATIONS = frozenset({"DeriveSharedSecret"})
IMPORT_OPERATIONS = frozenset(
    {"GetParametersForImport", "ImportKeyMaterial", "DeleteImportedKeyMaterial"}
)


class SetupError(RuntimeError):
    pass


def expect(reply: Reply, what: str) -> dict[str, Any]:
    if reply.status != 200:
        raise SetupError(f"{what}: {reply.describe()}")
    document = reply.json()
    return document if isinstance(document, dict) else {}


@dataclass
class Fixtures:
    account_id: str
    admin_arn: str
    symmetric: str
    rsa: str
    hmac: str
    ecc: str
    external: str
    alias: str
    grant_id: str
    grant_token: str
    ciphertext: bytes
    peer_public_key: bytes
    policy: str
    _aliases: itertools.count[int] = field(default_factory=itertools.count)

    def key_for(self, operation: str) -> str:
        if operation in SIGN_OPERATIONS:
            return self.rsa
        if operation in MAC_OPERATIONS:
            return self.hmac
        if operation in AGREEMENT_OPERATIONS:
            return self.ecc
        if operation in IMPORT_OPERATIONS:
            return self.external
        return self.symmetric

    def fresh_alias(self) -> str:
        return f"alias/chaos-{next(self._aliases)}"

    def key_refs(self) -> list[str]:
        arn = f"arn:aws:kms:us-east-1:{self.account_id}:key/{self.symmetric}"
        return [self.symmetric, arn, self.alias, self.rsa, self.hmac, self.ecc, self.external]

    @classmethod
    def create(cls, client: KmsClient, label: str) -> Fixtures:
        def create_key(**params: Any) -> str:
            params.setdefault("Description", f"chaos {label}")
            answer = expect(client.call("CreateKey", params), f"CreateKey {params}")
            return str(answer["KeyMetadata"]["KeyId"])

        symmetric = create_key()
        rsa = create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")
        hmac = create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
        ecc = create_key(KeySpec="ECC_NIST_P256", KeyUsage="KEY_AGREEMENT")
        external = create_key(Origin="EXTERNAL")
        alias = f"alias/chaos-{label}"
        expect(client.call("CreateAlias", {"AliasName": alias, "TargetKeyId": symmetric}), "alias")
        admin_arn = f"arn:aws:iam::{ACCOUNT_ID}:user/admin"
        grant = expect(
            client.call(
                "CreateGrant",
                {
                    "KeyId": symmetric,
                    "GranteePrincipal": admin_arn,
                    "RetiringPrincipal": admin_arn,
                    "Operations": ["Encrypt", "Decrypt"],
                    "Name": f"chaos-{label}",
                },
            ),
            "CreateGrant",
        )
        sealed = expect(
            client.call("Encrypt", {"KeyId": symmetric, "Plaintext": b"chaos fixture"}), "Encrypt"
        )
        policy = expect(
            client.call("GetKeyPolicy", {"KeyId": symmetric, "PolicyName": "default"}), "policy"
        )["Policy"]
        peer = ec.generate_private_key(ec.SECP256R1()).public_key()
        return cls(
            account_id=ACCOUNT_ID,
            admin_arn=admin_arn,
            symmetric=symmetric,
            rsa=rsa,
            hmac=hmac,
            ecc=ecc,
            external=external,
            alias=alias,
            grant_id=str(grant["GrantId"]),
            grant_token=str(grant["GrantToken"]),
            ciphertext=base64.b64decode(sealed["CiphertextBlob"]),
            peer_public_key=peer.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            policy=str(policy),
        )
