"""Access control through boto3 with several principals' credentials: identity policies, key
policies, conditions, grants, cross-account use, trusted services, and the denial log."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from domain.keys import Key
from tests.access.conftest import (
    ADMIN_ARN,
    KMS_ALL,
    Identities,
    allow,
    key_policy_doc,
    policy,
    root,
)
from tests.aws.conftest import aws_error, ledger_unchanged, new_alias
from tests.conftest import ACCOUNT_ID, REGION

LOCKOUT = "The new key policy will not allow you to update the key policy in the future."


def denied(principal: str, action: str, resource: str, why: str) -> str:
    head = f"User: {principal} is not authorized to perform: kms:{action} on resource: {resource}"
    shapes = {
        "identity": f"{head} because no identity-based policy allows the kms:{action} action",
        "resource": f"{head} because no resource-based policy allows the kms:{action} action",
        "explicit-resource": f"{head} with an explicit deny in a resource-based policy",
        "explicit-identity": f"{head} with an explicit deny in an identity-based policy",
    }
    return shapes[why]


# ==== identity policies =====================================================================
def test_a_new_principal_may_do_nothing_until_an_identity_policy_allows_it(
    service, identities: Identities, key_id
):
    user = identities.principal()
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"

    with (
        ledger_unchanged(service),
        aws_error("AccessDeniedException", denied(user.arn, "Encrypt", key_arn, "identity")),
    ):
        user.kms.encrypt(KeyId=key_id, Plaintext=b"x")
    with aws_error("AccessDeniedException", denied(user.arn, "ListKeys", "*", "identity")):
        user.kms.list_keys()


def test_an_identity_policy_takes_effect_at_once_and_so_does_its_removal(
    service, identities: Identities, key_id
):
    user = identities.principal()
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"
    identity = service.runtime.identity

    identity.put_principal_policy(user.arn, "EncryptOnly", policy(allow("kms:Encrypt", key_arn)))
    blob = user.kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    with aws_error("AccessDeniedException", denied(user.arn, "Decrypt", key_arn, "identity")):
        user.kms.decrypt(CiphertextBlob=blob)

    identity.delete_principal_policy(user.arn, "EncryptOnly")
    with aws_error("AccessDeniedException"):
        user.kms.encrypt(KeyId=key_id, Plaintext=b"x")


def test_an_explicit_deny_in_the_key_policy_beats_the_identity_policy(
    kms, identities: Identities, new_key
):
    bob = identities.principal(policies={"KmsAll": KMS_ALL})
    deny_decrypt = {
        "Effect": "Deny",
        "Principal": {"AWS": bob.arn},
        "Action": "kms:Decrypt",
        "Resource": "*",
    }
    key = new_key(Policy=key_policy_doc(deny_decrypt))

    blob = bob.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")["CiphertextBlob"]
    with aws_error(
        "AccessDeniedException", denied(bob.arn, "Decrypt", key["Arn"], "explicit-resource")
    ):
        bob.kms.decrypt(CiphertextBlob=blob)
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"


def test_an_explicit_deny_in_an_identity_policy_beats_the_key_policy(
    identities: Identities, new_key
):
    carol = identities.principal(
        policies={"Deny": policy({"Effect": "Deny", "Action": "kms:Encrypt", "Resource": "*"})}
    )
    names_carol = {
        "Effect": "Allow",
        "Principal": {"AWS": carol.arn},
        "Action": "kms:*",
        "Resource": "*",
    }
    key = new_key(Policy=key_policy_doc(names_carol))

    with aws_error(
        "AccessDeniedException", denied(carol.arn, "Encrypt", key["Arn"], "explicit-identity")
    ):
        carol.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    assert carol.kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Arn"] == key["Arn"]


def test_a_key_policy_naming_a_principal_needs_no_identity_policy(identities: Identities, new_key):
    dave = identities.principal()
    key = new_key(
        Policy=key_policy_doc(
            {
                "Effect": "Allow",
                "Principal": {"AWS": dave.arn},
                "Action": ["kms:Encrypt", "kms:Decrypt"],
                "Resource": "*",
            }
        )
    )

    blob = dave.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"direct")["CiphertextBlob"]

    assert dave.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"direct"


# ==== conditions =================================================================================
def test_a_condition_on_the_encryption_context(identities: Identities, new_key):
    user = identities.principal()
    tenant_only = {
        "Effect": "Allow",
        "Principal": {"AWS": user.arn},
        "Action": ["kms:Encrypt", "kms:Decrypt"],
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:EncryptionContext:tenant": "t1"}},
    }
    key = new_key(Policy=key_policy_doc(tenant_only))

    blob = user.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={"tenant": "t1"})
    assert (
        user.kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext={"tenant": "t1"})[
            "Plaintext"
        ]
        == b"x"
    )
    with aws_error("AccessDeniedException"):
        user.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x", EncryptionContext={"tenant": "t2"})
    with aws_error("AccessDeniedException"):
        user.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")


def test_a_condition_on_the_alias_used(kms, identities: Identities, new_key):
    user = identities.principal()
    alias = new_alias()
    by_alias = {
        "Effect": "Allow",
        "Principal": {"AWS": user.arn},
        "Action": "kms:Encrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:RequestAlias": alias}},
    }
    key = new_key(Policy=key_policy_doc(by_alias))
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])

    user.kms.encrypt(KeyId=alias, Plaintext=b"x")
    with aws_error("AccessDeniedException"):
        user.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")


def test_a_condition_on_the_source_ip(identities: Identities, new_key):
    user = identities.principal(policies={"KmsAll": KMS_ALL})
    only_from = {
        "Effect": "Deny",
        "Principal": {"AWS": user.arn},
        "Action": "kms:*",
        "Resource": "*",
        "Condition": {"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
    }
    elsewhere = new_key(Policy=key_policy_doc(only_from))
    local = new_key(
        Policy=key_policy_doc(
            {**only_from, "Condition": {"NotIpAddress": {"aws:SourceIp": "127.0.0.0/8"}}}
        )
    )

    user.kms.encrypt(KeyId=local["KeyId"], Plaintext=b"x")
    with aws_error("AccessDeniedException"):
        user.kms.encrypt(KeyId=elsewhere["KeyId"], Plaintext=b"x")


def test_attribute_based_access_with_resource_tags(identities: Identities, new_key):
    tagged_only = allow("kms:Encrypt", Condition={"StringEquals": {"aws:ResourceTag/team": "pay"}})
    user = identities.principal(policies={"Abac": policy(tagged_only)})
    tagged = new_key(Tags=[{"TagKey": "team", "TagValue": "pay"}])
    untagged = new_key()

    user.kms.encrypt(KeyId=tagged["KeyId"], Plaintext=b"x")
    with aws_error("AccessDeniedException"):
        user.kms.encrypt(KeyId=untagged["KeyId"], Plaintext=b"x")


# ==== key policies: validation and the lockout safety check ======================================
def test_put_key_policy_refuses_a_policy_that_locks_the_caller_out(kms, service, key_id):
    other = identities_free_policy()

    with ledger_unchanged(service), aws_error("MalformedPolicyDocumentException", LOCKOUT):
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=other)


def identities_free_policy() -> str:
    """A valid key policy that names nobody who exists but the account's root... of another."""
    return policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": root("999999999999")},
            "Action": "kms:*",
            "Resource": "*",
        }
    )


def test_the_bypass_flag_skips_the_lockout_check_and_locks_the_caller_out(kms, key_id):
    kms.put_key_policy(
        KeyId=key_id,
        PolicyName="default",
        Policy=identities_free_policy(),
        BypassPolicyLockoutSafetyCheck=True,
    )

    with aws_error("AccessDeniedException"):
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=key_policy_doc())
    with aws_error("AccessDeniedException"):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")


def test_create_key_applies_the_lockout_check_to_its_policy(kms, service):
    with ledger_unchanged(service), aws_error("MalformedPolicyDocumentException", LOCKOUT):
        kms.create_key(Policy=identities_free_policy())

    key = kms.create_key(Policy=identities_free_policy(), BypassPolicyLockoutSafetyCheck=True)
    assert key["KeyMetadata"]["KeyState"] == "Enabled"


def test_create_key_stores_its_policy(kms, identities: Identities):
    user = identities.principal()
    document = key_policy_doc(
        {
            "Sid": "User",
            "Effect": "Allow",
            "Principal": {"AWS": user.arn},
            "Action": "kms:Encrypt",
            "Resource": "*",
        }
    )

    key_id = kms.create_key(Policy=document)["KeyMetadata"]["KeyId"]

    assert kms.get_key_policy(KeyId=key_id)["Policy"] == document
    user.kms.encrypt(KeyId=key_id, Plaintext=b"x")


def test_a_key_policy_naming_a_principal_that_does_not_exist_is_malformed(kms, key_id):
    ghost = {
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:user/ghost-x"},
        "Action": "kms:*",
        "Resource": "*",
    }

    with aws_error(
        "MalformedPolicyDocumentException",
        "Policy contains a statement with one or more invalid principals.",
    ):
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=key_policy_doc(ghost))


@pytest.mark.parametrize(
    "document",
    [
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "kms:*",
                    "Resource": "*",
                    "Extra": 1,
                }
            ]
        },
        {"Statement": [{"Effect": "Maybe", "Principal": "*", "Action": "kms:*", "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Principal": "*", "Action": 7, "Resource": "*"}]},
        {"Statement": [{"Effect": "Allow", "Action": "kms:*", "Resource": "*"}]},
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "kms:*",
                    "Resource": "*",
                    "Condition": {"StringEqualz": {"kms:ViaService": "x"}},
                }
            ]
        },
        {
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::*:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ]
        },
        {
            "Version": "2020-01-01",
            "Statement": [
                {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}
            ],
        },
    ],
    ids=[
        "unknown-element",
        "bad-effect",
        "action-not-a-string",
        "no-principal",
        "unknown-operator",
        "wildcard-principal-arn",
        "unknown-version",
    ],
)
def test_malformed_key_policies_are_refused(kms, key_id, service, document):
    with ledger_unchanged(service), aws_error("MalformedPolicyDocumentException"):
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(document))


# ==== grants =====================================================================================
def test_a_grant_takes_effect_at_once_and_its_revocation_too(kms, service, identities: Identities):
    grantee = identities.principal()
    key = kms.create_key()["KeyMetadata"]
    with aws_error("AccessDeniedException"):
        grantee.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")

    created = kms.create_grant(
        KeyId=key["KeyId"], GranteePrincipal=grantee.arn, Operations=["Encrypt", "Decrypt"]
    )
    blob = grantee.kms.encrypt(
        KeyId=key["Arn"], Plaintext=b"granted", GrantTokens=[created["GrantToken"]]
    )["CiphertextBlob"]
    assert grantee.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"granted"  # no token

    kms.revoke_grant(KeyId=key["KeyId"], GrantId=created["GrantId"])
    with aws_error("AccessDeniedException"):
        grantee.kms.decrypt(CiphertextBlob=blob)
    topics = [type(e).__name__ for e in service.runtime.ledger.events.get(_uuid(key["KeyId"]))]
    assert "GrantCreated" in topics
    assert topics[-1] == "GrantRevoked"  # the denied decrypt recorded nothing


def _uuid(key_id: str) -> Any:
    import uuid

    return uuid.UUID(key_id)


def test_list_grants_shows_each_grant_as_aws_does(kms, identities: Identities):
    grantee, retiree = identities.principal(), identities.principal()
    key = kms.create_key()["KeyMetadata"]
    created = kms.create_grant(
        KeyId=key["KeyId"],
        GranteePrincipal=grantee.arn,
        RetiringPrincipal=retiree.arn,
        Operations=["Decrypt"],
        Name="nightly-backup",
        Constraints={"EncryptionContextSubset": {"job": "backup"}},
    )

    grants = kms.list_grants(KeyId=key["KeyId"])["Grants"]

    assert len(grants) == 1
    entry = grants[0]
    assert entry["KeyId"] == key["Arn"]
    assert entry["GrantId"] == created["GrantId"]
    assert entry["Name"] == "nightly-backup"
    assert entry["GranteePrincipal"] == grantee.arn
    assert entry["RetiringPrincipal"] == retiree.arn
    assert entry["IssuingAccount"] == root(ACCOUNT_ID)
    assert entry["Operations"] == ["Decrypt"]
    assert entry["Constraints"] == {"EncryptionContextSubset": {"job": "backup"}}
    assert "CreationDate" in entry


def test_grant_constraints_limit_the_encryption_context(kms, identities: Identities):
    grantee = identities.principal()
    key = kms.create_key()["KeyMetadata"]
    kms.create_grant(
        KeyId=key["KeyId"],
        GranteePrincipal=grantee.arn,
        Operations=["Encrypt"],
        Constraints={"EncryptionContextEquals": {"Tenant": "t1"}},
    )

    grantee.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x", EncryptionContext={"tenant": "t1"})
    for context in ({"tenant": "t2"}, {"tenant": "t1", "extra": "e"}, {}):
        with aws_error("AccessDeniedException"):
            grantee.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x", EncryptionContext=context)


def test_the_retiring_principal_retires_a_grant_and_lists_it_first(kms, identities: Identities):
    grantee = identities.principal()
    retiree = identities.principal(policies={"List": policy(allow("kms:ListRetirableGrants"))})
    key = kms.create_key()["KeyMetadata"]
    created = kms.create_grant(
        KeyId=key["KeyId"],
        GranteePrincipal=grantee.arn,
        RetiringPrincipal=retiree.arn,
        Operations=["Encrypt"],
    )

    retirable = retiree.kms.list_retirable_grants(RetiringPrincipal=retiree.arn)["Grants"]
    assert [g["GrantId"] for g in retirable] == [created["GrantId"]]
    assert retirable[0]["KeyId"] == key["Arn"]

    retiree.kms.retire_grant(KeyId=key["Arn"], GrantId=created["GrantId"])
    with aws_error("AccessDeniedException"):
        grantee.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")
    assert kms.list_grants(KeyId=key["KeyId"])["Grants"] == []


def test_a_grantee_retires_its_grant_by_token_only_if_the_grant_says_so(
    kms, identities: Identities
):
    grantee = identities.principal()
    key = kms.create_key()["KeyMetadata"]
    plain = kms.create_grant(
        KeyId=key["KeyId"], GranteePrincipal=grantee.arn, Operations=["Encrypt"]
    )
    retirable = kms.create_grant(
        KeyId=key["KeyId"], GranteePrincipal=grantee.arn, Operations=["Encrypt", "RetireGrant"]
    )

    with aws_error("AccessDeniedException"):
        grantee.kms.retire_grant(GrantToken=plain["GrantToken"])
    grantee.kms.retire_grant(GrantToken=retirable["GrantToken"])

    assert [g["GrantId"] for g in kms.list_grants(KeyId=key["KeyId"])["Grants"]] == [
        plain["GrantId"]
    ]


def test_a_named_grant_is_created_once(kms, identities: Identities):
    grantee = identities.principal()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    request = {
        "KeyId": key_id,
        "GranteePrincipal": grantee.arn,
        "Operations": ["Decrypt"],
        "Name": "replica-sync",
    }

    first, again = kms.create_grant(**request), kms.create_grant(**request)
    changed = kms.create_grant(**{**request, "Operations": ["Decrypt", "Encrypt"]})

    assert first["GrantId"] == again["GrantId"]
    assert first["GrantToken"] != again["GrantToken"]
    assert changed["GrantId"] != first["GrantId"]
    assert len(kms.list_grants(KeyId=key_id)["Grants"]) == 2


def test_a_forged_grant_token_is_invalid(kms, key_id):
    with aws_error("InvalidGrantTokenException"):
        kms.encrypt(KeyId=key_id, Plaintext=b"x", GrantTokens=["KLGT1" + "A" * 128])
    with aws_error("InvalidGrantTokenException"):
        kms.retire_grant(GrantToken="not-a-token")


def test_a_grant_with_create_grant_passes_on_only_what_it_holds(kms, identities: Identities):
    delegate, other = identities.principal(), identities.principal()
    key = kms.create_key()["KeyMetadata"]
    kms.create_grant(
        KeyId=key["KeyId"], GranteePrincipal=delegate.arn, Operations=["Decrypt", "CreateGrant"]
    )

    delegate.kms.create_grant(KeyId=key["Arn"], GranteePrincipal=other.arn, Operations=["Decrypt"])
    with aws_error("AccessDeniedException"):
        delegate.kms.create_grant(
            KeyId=key["Arn"], GranteePrincipal=other.arn, Operations=["Decrypt", "Encrypt"]
        )


def test_create_grant_refuses_operations_the_key_cannot_do(kms, key_id, identities: Identities):
    grantee = identities.principal()
    with aws_error("ValidationException"):
        kms.create_grant(KeyId=key_id, GranteePrincipal=grantee.arn, Operations=["Sign"])


def test_create_grant_on_a_disabled_key_is_refused(kms, key_id, identities: Identities):
    kms.disable_key(KeyId=key_id)
    with aws_error("DisabledException"):
        kms.create_grant(
            KeyId=key_id, GranteePrincipal=identities.principal().arn, Operations=["Decrypt"]
        )


def test_revoke_grant_needs_a_valid_grant_id(kms, key_id):
    with aws_error("InvalidGrantIdException"):
        kms.revoke_grant(KeyId=key_id, GrantId="nope")
    with aws_error("NotFoundException"):
        kms.revoke_grant(KeyId=key_id, GrantId="0" * 64)


def test_a_grant_can_be_created_but_not_used_in_a_dry_run(kms, key_id, identities: Identities):
    with aws_error("DryRunOperationException"):
        kms.create_grant(
            KeyId=key_id,
            GranteePrincipal=identities.principal().arn,
            Operations=["Decrypt"],
            DryRun=True,
        )
    assert kms.list_grants(KeyId=key_id)["Grants"] == []


# ==== cross-account use ==========================================================================
def test_cross_account_use_needs_the_key_policy_and_the_identity_policy(
    kms, identities: Identities
):
    other = identities.account()
    stranger = identities.principal(other)
    key = kms.create_key()["KeyMetadata"]
    with aws_error(
        "AccessDeniedException", denied(stranger.arn, "Encrypt", key["Arn"], "resource")
    ):
        stranger.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")

    names_account = {
        "Effect": "Allow",
        "Principal": {"AWS": root(other)},
        "Action": ["kms:Encrypt", "kms:Decrypt", "kms:DisableKey"],
        "Resource": "*",
    }
    kms.put_key_policy(
        KeyId=key["KeyId"], PolicyName="default", Policy=key_policy_doc(names_account)
    )
    with aws_error(
        "AccessDeniedException", denied(stranger.arn, "Encrypt", key["Arn"], "identity")
    ):
        stranger.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")

    service_identity = identities.service.runtime.identity
    service_identity.put_principal_policy(
        stranger.arn, "UseKey", policy(allow(resource=key["Arn"]))
    )
    blob = stranger.kms.encrypt(KeyId=key["Arn"], Plaintext=b"across")["CiphertextBlob"]
    assert stranger.kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"across"
    assert kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"across"
    with aws_error("NotFoundException"):
        stranger.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")  # a bare id is its own account
    with aws_error("AccessDeniedException"):
        stranger.kms.disable_key(KeyId=key["Arn"])  # not a cross-account operation


def test_a_grant_to_a_role_of_another_account_needs_no_identity_policy(kms, identities: Identities):
    role = identities.principal(identities.account(), role=True)
    key = kms.create_key()["KeyMetadata"]
    kms.create_grant(KeyId=key["KeyId"], GranteePrincipal=role.arn, Operations=["Encrypt"])

    role.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")


# ==== the denial log =============================================================================
def test_every_denial_leaves_a_record(service, identities: Identities, key_id):
    user = identities.principal()
    key_arn = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{key_id}"

    with pytest.raises(ClientError) as refused:
        user.kms.encrypt(KeyId=key_id, Plaintext=b"x")
    request_id = refused.value.response["ResponseMetadata"]["RequestId"]

    records = service.runtime.service.access.denials.query(principal_arn=user.arn)
    assert len(records) == 1
    record = records[0]
    assert record.request_id == request_id
    assert (record.account_id, record.action, record.resource_arn) == (
        ACCOUNT_ID,
        "kms:Encrypt",
        key_arn,
    )
    assert record.error_code == "AccessDeniedException"
    assert record.message == refused.value.response["Error"]["Message"]
    assert record.source_ip == "127.0.0.1"
    assert record.access_key_id == user.access_key_id


# ==== trusted services (kms:ViaService) ==========================================================
def test_a_trusted_service_acts_for_a_user_and_sets_kms_via_service(
    identities: Identities, new_key
):
    user = identities.principal(policies={"KmsAll": KMS_ALL})
    only_via_ec2 = {
        "Effect": "Deny",
        "Principal": {"AWS": user.arn},
        "Action": "kms:*",
        "Resource": "*",
        "Condition": {"StringNotEquals": {"kms:ViaService": f"ec2.{REGION}.amazonaws.com"}},
    }
    key = new_key(Policy=key_policy_doc(only_via_ec2))
    ec2 = identities.principal(service_name="ec2.amazonaws.com")

    with aws_error("AccessDeniedException"):
        user.kms.encrypt(KeyId=key["KeyId"], Plaintext=b"x")
    via_ec2 = identities.acting_for(ec2, user.arn)
    blob = via_ec2.encrypt(KeyId=key["KeyId"], Plaintext=b"via ec2")["CiphertextBlob"]
    assert via_ec2.decrypt(CiphertextBlob=blob)["Plaintext"] == b"via ec2"


def test_only_a_trusted_service_may_act_for_another_principal(service, identities: Identities):
    impostor = identities.principal(policies={"KmsAll": KMS_ALL})

    with aws_error("AccessDeniedException") as refused:
        identities.acting_for(impostor, ADMIN_ARN).list_keys()
    assert "not a trusted service principal" in refused["message"]
    assert service.runtime.service.access.denials.query(principal_arn=impostor.arn)


def test_a_service_may_act_only_for_principals_that_exist(identities: Identities):
    s3 = identities.principal(service_name="s3.amazonaws.com")
    with aws_error("AccessDeniedException"):
        identities.acting_for(s3, f"arn:aws:iam::{ACCOUNT_ID}:user/nobody-here").list_keys()


def test_the_on_behalf_of_header_must_be_signed(raw, identities: Identities):
    ec2 = identities.principal(service_name="ec2.amazonaws.com")

    response = raw(
        "TrentService.ListKeys",
        {},
        access_key_id=ec2.access_key_id,
        secret_access_key=ec2.secret,
        extra_headers={"X-KeyLedger-On-Behalf-Of": ADMIN_ARN},
    )

    assert (response.status, response.error_type) == (400, "AccessDeniedException")
    assert "must appear once and be signed" in response.message


# ==== events =====================================================================================
def test_grant_and_identity_changes_are_events(service, kms, identities: Identities):
    user = identities.principal()
    service.runtime.identity.put_principal_policy(user.arn, "P", KMS_ALL)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    grant = kms.create_grant(KeyId=key_id, GranteePrincipal=user.arn, Operations=["Encrypt"])
    kms.retire_grant(KeyId=key_id, GrantId=grant["GrantId"])

    events = list(service.runtime.ledger.events.get(_uuid(key_id)))
    created = next(e for e in events if isinstance(e, Key.GrantCreated))
    assert created.grant["grantee_principal"] == user.arn
    assert created.actor["principal_arn"] == ADMIN_ARN
    assert isinstance(events[-1], Key.GrantRetired)
