"""What the AWS JSON operation modules share: the operation signature and the shaping of
answers (timestamps, base64, pages, key metadata, tags)."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from app.auth.credentials import Caller
from app.usecases.keys import KeyService
from app.usecases.results import KeyDescription, MultiRegionConfiguration, Page

Operation = Callable[[KeyService, Caller, dict[str, Any]], Awaitable[dict[str, Any]]]


def epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def key_metadata(key: KeyDescription) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "AWSAccountId": key.account_id,
        "KeyId": key.key_id,
        "Arn": key.arn,
        "CreationDate": epoch(key.creation_date),
        "Enabled": key.enabled,
        "Description": key.description,
        "KeyUsage": key.key_usage,
        "KeyState": key.key_state,
        "Origin": key.origin,
        "KeyManager": key.key_manager,
        "CustomerMasterKeySpec": key.key_spec,
        "KeySpec": key.key_spec,
        "MultiRegion": key.multi_region,
    }
    algorithm_lists = {
        "EncryptionAlgorithms": key.encryption_algorithms,
        "SigningAlgorithms": key.signing_algorithms,
        "MacAlgorithms": key.mac_algorithms,
        "KeyAgreementAlgorithms": key.key_agreement_algorithms,
        "EncapsulationAlgorithms": key.encapsulation_algorithms,
    }
    metadata.update({name: list(found) for name, found in algorithm_lists.items() if found})
    if key.deletion_date is not None:
        metadata["DeletionDate"] = epoch(key.deletion_date)
    if key.expiration_model is not None:
        metadata["ExpirationModel"] = key.expiration_model
    if key.valid_to is not None:
        metadata["ValidTo"] = epoch(key.valid_to)
    if key.current_material_id is not None:
        metadata["CurrentKeyMaterialId"] = key.current_material_id
    if key.custom_key_store_id is not None:
        metadata["CustomKeyStoreId"] = key.custom_key_store_id
    if key.cloud_hsm_cluster_id is not None:
        metadata["CloudHsmClusterId"] = key.cloud_hsm_cluster_id
    if key.xks_key_id is not None:
        metadata["XksKeyConfiguration"] = {"Id": key.xks_key_id}
    if key.multi_region_configuration is not None:
        metadata["MultiRegionConfiguration"] = multi_region_configuration(
            key.multi_region_configuration
        )
    if key.pending_deletion_window_days is not None:
        metadata["PendingDeletionWindowInDays"] = key.pending_deletion_window_days
    return metadata


def multi_region_configuration(configuration: MultiRegionConfiguration) -> dict[str, Any]:
    return {
        "MultiRegionKeyType": configuration.key_type,
        "PrimaryKey": {
            "Arn": configuration.primary.arn,
            "Region": configuration.primary.region,
        },
        "ReplicaKeys": [{"Arn": r.arn, "Region": r.region} for r in configuration.replicas],
    }


def paged(page: Page[Any], name: str, items: list[Any]) -> dict[str, Any]:
    answer: dict[str, Any] = {name: items, "Truncated": page.truncated}
    if page.next_marker:
        answer["NextMarker"] = page.next_marker
    return answer


def tag_pairs(params: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple((t["TagKey"], t["TagValue"]) for t in params.get("Tags") or [])
