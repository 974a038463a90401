"""Multi-Region keys: ids, their aggregates' ids, and what every key of a set shares.

A multi-Region key is a set of keys with one key id (``mrk-`` and 32 hex digits), one in
each Region of the set: a primary and its replicas. Each is an aggregate of its own, whose
id derives from the key id and its Region (``multi_region_aggregate_id``), so a KeyId or a
ciphertext naming ``mrk-...`` finds the key of the caller's Region without any lookup.

The aggregate id leaves the account out on purpose: a ciphertext names its key without an
account (another account may decrypt with it, as with any key), and ``mrk-`` ids are 128
random bits. Resolution still checks the account a KeyId or ARN names.
"""

from __future__ import annotations

import secrets
from typing import TypedDict

from domain.errors import AlreadyExistsError, NotFoundError, UnsupportedOperationError
from domain.identifiers import MULTI_REGION_KEY_ID_PATTERN, multi_region_aggregate_id

__all__ = ["multi_region_aggregate_id"]

PREFIX = "mrk-"
PRIMARY, REPLICA = "PRIMARY", "REPLICA"


class MultiRegionState(TypedDict):
    """What every key of a set holds about the set (kept alike by events on each key)."""

    key_id: str  # mrk-...
    primary_region: str
    regions: list[str]  # every Region of the set, the primary's among them, sorted


def new_multi_region_key_id() -> str:
    """``mrk-`` and 32 lowercase hex digits, as AWS writes them."""
    return PREFIX + secrets.token_hex(16)


def is_multi_region_key_id(value: str) -> bool:
    return bool(MULTI_REGION_KEY_ID_PATTERN.match(value))


def key_id_bytes(key_id: str) -> bytes:
    """The 16 bytes a ciphertext header holds for a multi-Region key id (Region-free)."""
    return bytes.fromhex(key_id.removeprefix(PREFIX))


def key_id_from_bytes(value: bytes) -> str:
    return PREFIX + value.hex()


def primary_state(key_id: str, region: str) -> MultiRegionState:
    return MultiRegionState(key_id=key_id, primary_region=region, regions=[region])


def not_primary(key_arn: str) -> UnsupportedOperationError:
    """AWS's answer when an operation needs a multi-Region primary key (recorded)."""
    return UnsupportedOperationError(f"{key_arn} is not a multi-region primary key.")


def check_can_replicate_to(state: MultiRegionState, key_arn: str, replica_region: str) -> None:
    """The replica Region must differ from every Region of the set."""
    if replica_region in state["regions"]:
        # LocalStack's text; AWS's own was not recorded.
        raise AlreadyExistsError(
            f"Unable to replicate key {state['key_id']} to region {replica_region}, as the "
            f"key already exist there"
        )


def check_new_primary(state: MultiRegionState, primary_region: str, replica_arn: str) -> None:
    """UpdatePrimaryRegion names a Region where the set has a replica."""
    if primary_region not in state["regions"]:
        raise NotFoundError(f"Key '{replica_arn}' does not exist")
