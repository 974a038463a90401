"""Multi-Region keys through boto3, in two Regions of one deployment: a primary created with
MultiRegion=true, its replica (ReplicateKey), ciphertexts that cross Regions,
UpdatePrimaryRegion, AWS's rules on rotation and deletion (PendingReplicaDeletion), and
AWS's answers to what it refuses. The clock is shared: tests compute dates from it."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from tests.aws.conftest import aws_error
from tests.conftest import Service

PRIMARY_REGION, REPLICA_REGION, THIRD_REGION = "us-east-1", "eu-west-1", "ap-southeast-2"


def kms(service: Service, region: str) -> Any:
    return service.client("kms", region=region)


def run_due_jobs(service: Service, delta: timedelta) -> None:
    service.runtime.clock.advance(delta)
    service.runtime.service.jobs.run_due_jobs()


def new_primary(service: Service, **members: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = kms(service, PRIMARY_REGION).create_key(MultiRegion=True, **members)[
        "KeyMetadata"
    ]
    return metadata


def replicate(service: Service, key_id: str, region: str = REPLICA_REGION, **members: Any) -> Any:
    return kms(service, PRIMARY_REGION).replicate_key(KeyId=key_id, ReplicaRegion=region, **members)


def test_create_key_with_multi_region_makes_a_primary_with_an_mrk_id(service: Service) -> None:
    key = new_primary(service)

    assert re.fullmatch(r"mrk-[0-9a-f]{32}", key["KeyId"])
    assert key["Arn"].endswith(f":{PRIMARY_REGION}:{key['AWSAccountId']}:key/{key['KeyId']}")
    assert key["MultiRegion"] is True
    assert key["MultiRegionConfiguration"] == {
        "MultiRegionKeyType": "PRIMARY",
        "PrimaryKey": {"Arn": key["Arn"], "Region": PRIMARY_REGION},
        "ReplicaKeys": [],
    }


def test_an_ordinary_key_is_not_multi_region_and_has_no_configuration(service: Service) -> None:
    key = kms(service, PRIMARY_REGION).create_key()["KeyMetadata"]

    assert key["MultiRegion"] is False
    assert "MultiRegionConfiguration" not in key


def test_replicate_key_answers_the_replica_creating_with_its_policy_and_tags(
    service: Service,
) -> None:
    key = new_primary(service)

    answer = replicate(
        service, key["KeyId"], Description="replica", Tags=[{"TagKey": "t", "TagValue": "v"}]
    )

    replica = answer["ReplicaKeyMetadata"]
    replica_arn = key["Arn"].replace(PRIMARY_REGION, REPLICA_REGION)
    assert (replica["KeyId"], replica["Arn"]) == (key["KeyId"], replica_arn)
    assert (replica["KeyState"], replica["Enabled"]) == ("Creating", False)
    assert "CurrentKeyMaterialId" not in replica
    assert replica["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert '"kms:*"' in answer["ReplicaPolicy"]
    assert answer["ReplicaTags"] == [{"TagKey": "t", "TagValue": "v"}]


def test_primary_and_replica_each_describe_the_whole_set(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    replica_arn = key["Arn"].replace(PRIMARY_REGION, REPLICA_REGION)
    expected_replicas = [{"Arn": replica_arn, "Region": REPLICA_REGION}]

    primary = kms(service, PRIMARY_REGION).describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    replica = kms(service, REPLICA_REGION).describe_key(KeyId=key["KeyId"])["KeyMetadata"]

    assert primary["MultiRegionConfiguration"]["ReplicaKeys"] == expected_replicas
    assert replica["MultiRegionConfiguration"] == {
        "MultiRegionKeyType": "REPLICA",
        "PrimaryKey": {"Arn": key["Arn"], "Region": PRIMARY_REGION},
        "ReplicaKeys": expected_replicas,
    }
    assert replica["KeyState"] == "Enabled"
    assert replica["CurrentKeyMaterialId"] == primary["CurrentKeyMaterialId"]


def test_a_ciphertext_made_in_one_region_decrypts_in_the_other(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    context = {"order": "42"}

    blob = kms(service, PRIMARY_REGION).encrypt(
        KeyId=key["KeyId"], Plaintext=b"secret", EncryptionContext=context
    )["CiphertextBlob"]
    answer = kms(service, REPLICA_REGION).decrypt(CiphertextBlob=blob, EncryptionContext=context)
    back = kms(service, REPLICA_REGION).encrypt(KeyId=key["KeyId"], Plaintext=b"back")

    assert answer["Plaintext"] == b"secret"
    assert answer["KeyId"] == key["Arn"].replace(PRIMARY_REGION, REPLICA_REGION)
    assert (
        kms(service, PRIMARY_REGION).decrypt(CiphertextBlob=back["CiphertextBlob"])["Plaintext"]
        == b"back"
    )


def test_a_ciphertext_decrypts_in_the_other_region_after_the_primary_rotates(
    service: Service,
) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    primary = kms(service, PRIMARY_REGION)
    primary.rotate_key_on_demand(KeyId=key["KeyId"])

    blob = primary.encrypt(KeyId=key["KeyId"], Plaintext=b"rotated")["CiphertextBlob"]

    replica = kms(service, REPLICA_REGION)
    assert replica.decrypt(CiphertextBlob=blob)["Plaintext"] == b"rotated"
    rotations = replica.list_key_rotations(KeyId=key["KeyId"])["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["ON_DEMAND"]


def test_enabling_rotation_on_the_primary_shows_on_the_replica(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])

    kms(service, PRIMARY_REGION).enable_key_rotation(KeyId=key["KeyId"], RotationPeriodInDays=90)

    status = kms(service, REPLICA_REGION).get_key_rotation_status(KeyId=key["KeyId"])
    assert (status["KeyRotationEnabled"], status["RotationPeriodInDays"]) == (True, 90)


def test_a_replica_refuses_rotation_settings_as_not_a_primary_key(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    replica_arn = key["Arn"].replace(PRIMARY_REGION, REPLICA_REGION)

    with aws_error(
        "UnsupportedOperationException", f"{replica_arn} is not a multi-region primary key."
    ):
        kms(service, REPLICA_REGION).enable_key_rotation(KeyId=key["KeyId"])


def test_replicating_a_replica_is_refused_as_not_a_primary_key(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    replica_arn = key["Arn"].replace(PRIMARY_REGION, REPLICA_REGION)

    with aws_error(
        "UnsupportedOperationException", f"{replica_arn} is not a multi-region primary key."
    ):
        kms(service, REPLICA_REGION).replicate_key(KeyId=key["KeyId"], ReplicaRegion=THIRD_REGION)


def test_replicating_an_ordinary_key_is_refused_as_not_a_primary_key(service: Service) -> None:
    key = kms(service, PRIMARY_REGION).create_key()["KeyMetadata"]

    with aws_error(
        "UnsupportedOperationException", f"{key['Arn']} is not a multi-region primary key."
    ):
        replicate(service, key["KeyId"])


def test_replicating_into_a_region_of_the_set_is_refused(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])

    with aws_error("AlreadyExistsException"):
        replicate(service, key["KeyId"])


def test_replicating_a_disabled_primary_is_refused_as_disabled(service: Service) -> None:
    key = new_primary(service)
    kms(service, PRIMARY_REGION).disable_key(KeyId=key["KeyId"])

    with aws_error("DisabledException", f"{key['Arn']} is disabled."):
        replicate(service, key["KeyId"])


def test_a_multi_region_key_id_names_no_key_in_a_region_without_a_replica(
    service: Service,
) -> None:
    key = new_primary(service)
    arn = key["Arn"].replace(PRIMARY_REGION, REPLICA_REGION)

    with aws_error("NotFoundException", f"Key '{arn}' does not exist"):
        kms(service, REPLICA_REGION).describe_key(KeyId=key["KeyId"])


def test_policy_tags_description_and_state_are_each_keys_own(service: Service) -> None:
    key = new_primary(service, Description="primary")
    replicate(service, key["KeyId"], Description="replica")
    replica = kms(service, REPLICA_REGION)

    replica.tag_resource(KeyId=key["KeyId"], Tags=[{"TagKey": "only", "TagValue": "replica"}])
    replica.disable_key(KeyId=key["KeyId"])

    primary = kms(service, PRIMARY_REGION)
    assert primary.list_resource_tags(KeyId=key["KeyId"])["Tags"] == []
    described = primary.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert (described["Description"], described["KeyState"]) == ("primary", "Enabled")
    assert replica.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Description"] == "replica"


def test_aliases_are_each_regions_own(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    alias = "alias/mrk-" + key["KeyId"][-8:]
    kms(service, REPLICA_REGION).create_alias(AliasName=alias, TargetKeyId=key["KeyId"])

    blob = kms(service, REPLICA_REGION).encrypt(KeyId=alias, Plaintext=b"x")["CiphertextBlob"]

    assert kms(service, PRIMARY_REGION).decrypt(CiphertextBlob=blob)["Plaintext"] == b"x"
    with aws_error("NotFoundException"):
        kms(service, PRIMARY_REGION).encrypt(KeyId=alias, Plaintext=b"x")


def test_list_aliases_of_a_multi_region_key_names_it_by_its_mrk_id(service: Service) -> None:
    key = new_primary(service)
    alias = "alias/listed-" + key["KeyId"][-8:]
    client = kms(service, PRIMARY_REGION)
    client.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])

    for named in (key["KeyId"], key["Arn"]):
        listed = client.list_aliases(KeyId=named)["Aliases"]
        assert [(a["AliasName"], a["TargetKeyId"]) for a in listed] == [(alias, key["KeyId"])]
    everything = client.get_paginator("list_aliases").paginate().build_full_result()["Aliases"]
    assert {a["AliasName"]: a.get("TargetKeyId") for a in everything}[alias] == key["KeyId"]


def test_update_primary_region_swaps_primary_and_replica(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    new_arn = key["Arn"].replace(PRIMARY_REGION, REPLICA_REGION)

    kms(service, PRIMARY_REGION).update_primary_region(
        KeyId=key["KeyId"], PrimaryRegion=REPLICA_REGION
    )

    old = kms(service, PRIMARY_REGION).describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    new = kms(service, REPLICA_REGION).describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    for described in (old, new):
        assert described["MultiRegionConfiguration"]["PrimaryKey"] == {
            "Arn": new_arn,
            "Region": REPLICA_REGION,
        }
        assert described["MultiRegionConfiguration"]["ReplicaKeys"] == [
            {"Arn": key["Arn"], "Region": PRIMARY_REGION}
        ]
    assert old["MultiRegionConfiguration"]["MultiRegionKeyType"] == "REPLICA"
    assert new["MultiRegionConfiguration"]["MultiRegionKeyType"] == "PRIMARY"


def test_update_primary_region_on_a_replica_is_refused_as_not_a_primary_key(
    service: Service,
) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    replica_arn = key["Arn"].replace(PRIMARY_REGION, REPLICA_REGION)

    with aws_error(
        "UnsupportedOperationException", f"{replica_arn} is not a multi-region primary key."
    ):
        kms(service, REPLICA_REGION).update_primary_region(
            KeyId=key["KeyId"], PrimaryRegion=PRIMARY_REGION
        )


def test_update_primary_region_to_a_region_without_a_replica_is_not_found(
    service: Service,
) -> None:
    key = new_primary(service)
    arn = key["Arn"].replace(PRIMARY_REGION, THIRD_REGION)

    with aws_error("NotFoundException", f"Key '{arn}' does not exist"):
        kms(service, PRIMARY_REGION).update_primary_region(
            KeyId=key["KeyId"], PrimaryRegion=THIRD_REGION
        )


def test_a_primary_with_replicas_waits_for_them_in_pending_replica_deletion(
    service: Service,
) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    primary = kms(service, PRIMARY_REGION)

    answer = primary.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)

    assert (answer["KeyState"], answer["PendingWindowInDays"]) == ("PendingReplicaDeletion", 7)
    assert "DeletionDate" not in answer
    described = primary.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert described["KeyState"] == "PendingReplicaDeletion"
    assert described["PendingDeletionWindowInDays"] == 7
    with aws_error("KMSInvalidStateException", f"{key['Arn']} is pending replica deletion."):
        primary.encrypt(KeyId=key["KeyId"], Plaintext=b"x")


def test_a_primary_pending_replica_deletion_can_be_cancelled(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    primary = kms(service, PRIMARY_REGION)
    primary.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)

    primary.cancel_key_deletion(KeyId=key["KeyId"])

    assert primary.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["KeyState"] == "Disabled"


def test_the_primary_window_starts_when_its_last_replica_is_deleted(service: Service) -> None:
    key = new_primary(service)
    replicate(service, key["KeyId"])
    primary, replica = kms(service, PRIMARY_REGION), kms(service, REPLICA_REGION)
    primary.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)
    replica.schedule_key_deletion(KeyId=key["KeyId"], PendingWindowInDays=7)

    run_due_jobs(service, timedelta(days=7, minutes=1))

    with aws_error("NotFoundException"):
        replica.describe_key(KeyId=key["KeyId"])
    described = primary.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
    assert described["KeyState"] == "PendingDeletion"
    assert described["MultiRegionConfiguration"]["ReplicaKeys"] == []
    run_due_jobs(service, timedelta(days=7, minutes=1))
    with aws_error("NotFoundException"):
        primary.describe_key(KeyId=key["KeyId"])


@pytest.mark.parametrize(
    ("key_spec", "key_usage"),
    [("HMAC_256", "GENERATE_VERIFY_MAC"), ("ECC_NIST_P256", "SIGN_VERIFY")],
)
def test_hmac_and_asymmetric_multi_region_keys_share_their_material(
    service: Service, key_spec: str, key_usage: str
) -> None:
    key = new_primary(service, KeySpec=key_spec, KeyUsage=key_usage)
    replicate(service, key["KeyId"])
    primary, replica = kms(service, PRIMARY_REGION), kms(service, REPLICA_REGION)

    if key_usage == "GENERATE_VERIFY_MAC":
        mac = primary.generate_mac(KeyId=key["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256")
        verified = replica.verify_mac(
            KeyId=key["KeyId"], Message=b"m", MacAlgorithm="HMAC_SHA_256", Mac=mac["Mac"]
        )["MacValid"]
    else:
        signature = primary.sign(
            KeyId=key["KeyId"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256"
        )["Signature"]
        verified = replica.verify(
            KeyId=key["KeyId"], Message=b"m", SigningAlgorithm="ECDSA_SHA_256", Signature=signature
        )["SignatureValid"]
    assert verified is True


def test_list_keys_names_a_multi_region_key_by_its_mrk_id(service: Service) -> None:
    key = new_primary(service)

    listed = kms(service, PRIMARY_REGION).list_keys(Limit=1000)["Keys"]

    assert {"KeyId": key["KeyId"], "KeyArn": key["Arn"]} in listed
