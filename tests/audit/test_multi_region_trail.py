"""CloudTrail records of multi-Region keys, as AWS logs them: ReplicateKey in the primary's
Region and CreateKey in the replica's, UpdatePrimaryRegion, and SynchronizeMultiRegionKey
when a rotation of the primary reaches a replica."""

from __future__ import annotations

from typing import Any

from tests.audit.conftest import by_request, records, request_id
from tests.conftest import Service

PRIMARY_REGION, REPLICA_REGION = "us-east-1", "eu-west-1"


def trail(service: Service, region: str, arn: str) -> list[dict[str, Any]]:
    return records(service.client("cloudtrail", region=region), "ResourceName", arn)


def replicated_key(service: Service) -> tuple[dict[str, Any], str, dict[str, Any]]:
    kms = service.client("kms", region=PRIMARY_REGION)
    key = kms.create_key(MultiRegion=True)["KeyMetadata"]
    answer = kms.replicate_key(KeyId=key["KeyId"], ReplicaRegion=REPLICA_REGION)
    return key, answer["ReplicaKeyMetadata"]["Arn"], answer


def test_replicate_key_is_logged_as_replicate_key_and_create_key_in_each_region(
    service: Service,
) -> None:
    key, replica_arn, answer = replicated_key(service)

    in_primary = by_request(trail(service, PRIMARY_REGION, key["Arn"]), request_id(answer))
    in_replica = by_request(trail(service, REPLICA_REGION, replica_arn), request_id(answer))

    assert [(r["eventName"], r["awsRegion"]) for r in in_primary] == [
        ("ReplicateKey", PRIMARY_REGION)
    ]
    assert in_primary[0]["requestParameters"]["replicaRegion"] == REPLICA_REGION
    assert [(r["eventName"], r["awsRegion"]) for r in in_replica] == [("CreateKey", REPLICA_REGION)]
    assert in_replica[0]["responseElements"]["keyMetadata"]["multiRegion"] is True


def test_a_rotation_of_the_primary_is_a_synchronize_event_on_the_replica(
    service: Service,
) -> None:
    key, replica_arn, _ = replicated_key(service)

    service.client("kms", region=PRIMARY_REGION).rotate_key_on_demand(KeyId=key["KeyId"])

    names = [r["eventName"] for r in trail(service, REPLICA_REGION, replica_arn)]
    assert "SynchronizeMultiRegionKey" in names


def test_update_primary_region_is_logged_on_the_old_and_the_new_primary(
    service: Service,
) -> None:
    key, replica_arn, _ = replicated_key(service)

    answer = service.client("kms", region=PRIMARY_REGION).update_primary_region(
        KeyId=key["KeyId"], PrimaryRegion=REPLICA_REGION
    )

    for region, arn in ((PRIMARY_REGION, key["Arn"]), (REPLICA_REGION, replica_arn)):
        found = by_request(trail(service, region, arn), request_id(answer))
        assert [r["eventName"] for r in found] == ["UpdatePrimaryRegion"]
        assert found[0]["requestParameters"]["primaryRegion"] == REPLICA_REGION
