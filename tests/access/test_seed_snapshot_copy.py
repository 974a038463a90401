"""The mission's cross-account snapshot copy, end to end through boto3.

Account A's key carries the mission's policy: the target account's role may kms:Decrypt and
kms:CreateGrant, but only through EC2 (kms:ViaService) and only as that account
(kms:CallerAccount). EC2, a trusted service principal acting for the role, creates a grant on
A's key and re-encrypts the snapshot's data key under account B's own key. Every other
principal, and the role itself outside EC2, is refused.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from tests.access.conftest import Identities, Principal, allow, policy, root
from tests.aws.conftest import aws_error, ledger_unchanged
from tests.conftest import REGION, Service

EC2_VIA = f"ec2.{REGION}.amazonaws.com"
SNAPSHOT_CONTEXT = {"aws:ebs:id": "snap-0123456789abcdef0"}
# What account B's role may ask of account A's key (A's key policy decides the rest).
COPIER_ON_A = ["kms:Decrypt", "kms:CreateGrant", "kms:DescribeKey"]


def mission_policy(account_a: str, target_account: str, role_arn: str) -> str:
    """The mission's key policy (the default root statement plus its statement)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Enable IAM User Permissions",
                    "Effect": "Allow",
                    "Principal": {"AWS": root(account_a)},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "Allow use of the key with destination account",
                    "Effect": "Allow",
                    "Principal": {"AWS": role_arn},
                    "Action": ["kms:Decrypt", "kms:CreateGrant"],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {
                            "kms:ViaService": EC2_VIA,
                            "kms:CallerAccount": target_account,
                        }
                    },
                },
            ],
        }
    )


@dataclass
class Scenario:
    identities: Identities
    account_a: str
    account_b: str
    key_a: dict[str, Any]
    key_b: dict[str, Any]
    copier: Principal
    ec2: Principal
    data_key: bytes
    snapshot_key_blob: bytes

    def via_ec2(self, principal_arn: str) -> Any:
        return self.identities.acting_for(self.ec2, principal_arn)


@pytest.fixture(scope="module")
def scenario(service: Service) -> Scenario:
    identities = Identities(service)
    account_a, account_b, services = (
        identities.account(),
        identities.account(),
        identities.account(),
    )
    admin_a = identities.principal(account_a, name="admin", policies={"Admin": policy(allow("*"))})
    copier_policy = policy(
        allow("kms:CreateKey"),
        allow("kms:*", f"arn:aws:kms:*:{account_b}:key/*"),
        allow(COPIER_ON_A, f"arn:aws:kms:*:{account_a}:key/*"),
    )
    copier = identities.principal(
        account_b, name="snapshot-copier", role=True, policies={"SnapshotCopy": copier_policy}
    )
    ec2 = identities.principal(services, name="ec2", service_name="ec2.amazonaws.com")
    document = mission_policy(account_a, account_b, copier.arn)
    key_a = admin_a.kms.create_key(Description="EBS volumes of A", Policy=document)["KeyMetadata"]
    key_b = copier.kms.create_key(Description="copies in account B")["KeyMetadata"]
    data_key = admin_a.kms.generate_data_key(
        KeyId=key_a["KeyId"], KeySpec="AES_256", EncryptionContext=SNAPSHOT_CONTEXT
    )
    return Scenario(
        identities,
        account_a,
        account_b,
        key_a,
        key_b,
        copier,
        ec2,
        data_key["Plaintext"],
        data_key["CiphertextBlob"],
    )


def test_the_key_carries_the_missions_policy(scenario: Scenario, service: Service) -> None:
    ledger = service.runtime.ledger  # read through the ledger: the policy as stored
    key = ledger.repository.get(uuid.UUID(scenario.key_a["KeyId"]))

    assert key.policy == mission_policy(scenario.account_a, scenario.account_b, scenario.copier.arn)


def test_account_b_reencrypts_the_data_key_under_its_own_key(scenario: Scenario) -> None:
    ec2_for_copier = scenario.via_ec2(scenario.copier.arn)

    # EC2 creates a grant for the copy on A's key (kms:CreateGrant through EC2, as account B).
    grant = ec2_for_copier.create_grant(
        KeyId=scenario.key_a["Arn"],
        GranteePrincipal=scenario.copier.arn,
        RetiringPrincipal=scenario.copier.arn,
        Operations=["ReEncryptFrom"],
        Constraints={"EncryptionContextEquals": SNAPSHOT_CONTEXT},
    )
    # ...and re-encrypts the snapshot's data key under B's own key, using the grant.
    copied = ec2_for_copier.re_encrypt(
        CiphertextBlob=scenario.snapshot_key_blob,
        SourceEncryptionContext=SNAPSHOT_CONTEXT,
        DestinationKeyId=scenario.key_b["Arn"],
        DestinationEncryptionContext=SNAPSHOT_CONTEXT,
        GrantTokens=[grant["GrantToken"]],
    )

    assert copied["SourceKeyId"] == scenario.key_a["Arn"]
    assert copied["KeyId"] == scenario.key_b["Arn"]
    plaintext = scenario.copier.kms.decrypt(
        CiphertextBlob=copied["CiphertextBlob"], EncryptionContext=SNAPSHOT_CONTEXT
    )["Plaintext"]
    assert plaintext == scenario.data_key
    # The copy no longer needs A's key: the grant is retired by its retiring principal.
    scenario.copier.kms.retire_grant(KeyId=scenario.key_a["Arn"], GrantId=grant["GrantId"])


def test_the_role_decrypts_through_ec2(scenario: Scenario) -> None:
    decrypted = scenario.via_ec2(scenario.copier.arn).decrypt(
        CiphertextBlob=scenario.snapshot_key_blob, EncryptionContext=SNAPSHOT_CONTEXT
    )

    assert decrypted["Plaintext"] == scenario.data_key
    assert decrypted["KeyId"] == scenario.key_a["Arn"]


def _refusals(scenario: Scenario) -> dict[str, Any]:
    identities = scenario.identities
    other_in_b = identities.principal(scenario.account_b, policies={"All": policy(allow())})
    third = identities.principal(identities.account(), policies={"All": policy(allow())})
    s3 = identities.principal(scenario.account_b, service_name="s3.amazonaws.com")
    return {
        "the role outside EC2": scenario.copier.kms,
        "another principal of account B through EC2": scenario.via_ec2(other_in_b.arn),
        "the role through another service": identities.acting_for(s3, scenario.copier.arn),
        "a principal of a third account": third.kms,
        "the EC2 service principal for itself": scenario.ec2.kms,
    }


@pytest.mark.parametrize(
    "who",
    [
        "the role outside EC2",
        "another principal of account B through EC2",
        "the role through another service",
        "a principal of a third account",
        "the EC2 service principal for itself",
    ],
)
def test_every_other_principal_is_refused(scenario: Scenario, service: Service, who: str) -> None:
    client = _refusals(scenario)[who]

    with ledger_unchanged(service), aws_error("AccessDeniedException"):
        client.decrypt(
            CiphertextBlob=scenario.snapshot_key_blob, EncryptionContext=SNAPSHOT_CONTEXT
        )
    with ledger_unchanged(service), aws_error("AccessDeniedException"):
        client.create_grant(
            KeyId=scenario.key_a["Arn"],
            GranteePrincipal=scenario.copier.arn,
            Operations=["Decrypt"],
        )


def test_the_role_may_do_only_what_the_policy_names(scenario: Scenario) -> None:
    ec2_for_copier = scenario.via_ec2(scenario.copier.arn)

    with aws_error("AccessDeniedException"):
        ec2_for_copier.encrypt(KeyId=scenario.key_a["Arn"], Plaintext=b"x")
    with aws_error("AccessDeniedException"):  # management is never cross-account
        ec2_for_copier.disable_key(KeyId=scenario.key_a["Arn"])
