"""Every key state by every operation: allowed, or refused with AWS's error and message.

The tables are AWS's key-state table (/work/shared/design/reference/aws-kms-api.md §6,
"Key states", from AWS's key-state.md) for the states the aggregate has: Enabled,
Disabled, PendingDeletion, PendingImport, and Deleted (internal: the waiting period ended;
callers see NotFound). Unavailable, Creating, Updating and PendingReplicaDeletion belong to
custom key stores and multi-Region keys, which KeyLedger does not model.

Cells:  ok   allowed
        DIS  DisabledError           "<arn> is disabled."                       (footnote 1)
        PDEL InvalidStateError       "<arn> is pending deletion."               (3)
        NPD  InvalidStateError       "<arn> is not pending deletion."           (4)
        PIMP InvalidStateError       "<arn> is pending import."                 (5)
        EXT  UnsupportedOperationError "<arn> origin is EXTERNAL which is not valid for this
                                     operation."                              (6)
        NF   NotFoundError           "Key '<arn>' does not exist"
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from domain import key_states
from domain.errors import (
    DisabledError,
    InvalidStateError,
    NotFoundError,
    UnsupportedOperationError,
)
from domain.key_states import ANY_STATE, CRYPTOGRAPHIC, NOT_PENDING_DELETION
from domain.keys import Key
from tests.domain.builders import ACTOR, NOW, STATES, key_in, material

ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"

OUTCOMES: dict[str, tuple[type[Exception], str] | None] = {
    "ok": None,
    "DIS": (DisabledError, "{arn} is disabled."),
    "PDEL": (InvalidStateError, "{arn} is pending deletion."),
    "NPD": (InvalidStateError, "{arn} is not pending deletion."),
    "PIMP": (InvalidStateError, "{arn} is pending import."),
    "EXT": (
        UnsupportedOperationError,
        "{arn} origin is EXTERNAL which is not valid for this operation.",
    ),
    "NF": (NotFoundError, "Key '{arn}' does not exist"),
}


def parse(table: str) -> list[tuple[str, str, str]]:
    """(row, state, cell) for every cell of a whitespace-aligned table."""
    cells = []
    for line in table.strip().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        row, *outcomes = line.split()
        assert len(outcomes) == len(STATES), line
        cells.extend((row, state, outcome) for state, outcome in zip(STATES, outcomes, strict=True))
    return cells


def check(outcome: str, arn: str, call: Callable[[], Any]) -> None:
    expected = OUTCOMES[outcome]
    if expected is None:
        call()
        return
    error, message = expected
    with pytest.raises(error) as raised:
        call()
    assert type(raised.value) is error
    assert raised.value.message == message.format(arn=arn)  # type: ignore[attr-defined]


# --- the state check, by operation name (domain.key_states) ---------------------------------
# AWS §6, row by row. GetKeyRotationStatus: PendingImport keys are EXTERNAL, refused for
# their origin (footnote 6) by the use case, not by state. DeleteImportedKeyMaterial in
# PendingImport is allowed with no effect. Operations newer than AWS's table (RotateKeyOnDemand,
# ListKeyRotations, DeriveSharedSecret, GetKeyLastUsage, Encapsulate, Decapsulate) follow
# the reference's notes under the table.
STATE_TABLE = """
# operation                           Enabled Disabled PendingDeletion PendingImport Deleted
CancelKeyDeletion                     NPD     NPD      ok              NPD           NF
CreateAlias                           ok      ok       PDEL            ok            NF
UpdateAlias                           ok      ok       PDEL            ok            NF
DeleteAlias                           ok      ok       ok              ok            NF
ListAliases                           ok      ok       ok              ok            NF
CreateGrant                           ok      DIS      PDEL            PIMP          NF
ListGrants                            ok      ok       ok              ok            NF
RetireGrant                           ok      ok       ok              ok            NF
RevokeGrant                           ok      ok       ok              ok            NF
Encrypt                               ok      DIS      PDEL            PIMP          NF
Decrypt                               ok      DIS      PDEL            PIMP          NF
ReEncryptFrom                         ok      DIS      PDEL            PIMP          NF
ReEncryptTo                           ok      DIS      PDEL            PIMP          NF
GenerateDataKey                       ok      DIS      PDEL            PIMP          NF
GenerateDataKeyWithoutPlaintext       ok      DIS      PDEL            PIMP          NF
GenerateDataKeyPair                   ok      DIS      PDEL            PIMP          NF
GenerateDataKeyPairWithoutPlaintext   ok      DIS      PDEL            PIMP          NF
Sign                                  ok      DIS      PDEL            PIMP          NF
Verify                                ok      DIS      PDEL            PIMP          NF
GenerateMac                           ok      DIS      PDEL            PIMP          NF
VerifyMac                             ok      DIS      PDEL            PIMP          NF
GetPublicKey                          ok      DIS      PDEL            PIMP          NF
DeriveSharedSecret                    ok      DIS      PDEL            PIMP          NF
Encapsulate                           ok      DIS      PDEL            PIMP          NF
Decapsulate                           ok      DIS      PDEL            PIMP          NF
DescribeKey                           ok      ok       ok              ok            NF
GetKeyLastUsage                       ok      ok       ok              ok            NF
GetKeyPolicy                          ok      ok       ok              ok            NF
PutKeyPolicy                          ok      ok       ok              ok            NF
ListKeyPolicies                       ok      ok       ok              ok            NF
ListResourceTags                      ok      ok       ok              ok            NF
DeleteImportedKeyMaterial             ok      ok       ok              ok            NF
EnableKey                             ok      ok       PDEL            PIMP          NF
DisableKey                            ok      ok       PDEL            PIMP          NF
EnableKeyRotation                     ok      DIS      PDEL            EXT           NF
DisableKeyRotation                    ok      DIS      PDEL            EXT           NF
GetKeyRotationStatus                  ok      ok       ok              ok            NF
RotateKeyOnDemand                     ok      DIS      PDEL            PIMP          NF
ListKeyRotations                      ok      ok       PDEL            PIMP          NF
GetParametersForImport                ok      ok       PDEL            ok            NF
ImportKeyMaterial                     ok      ok       PDEL            ok            NF
ScheduleKeyDeletion                   ok      ok       PDEL            ok            NF
TagResource                           ok      ok       PDEL            ok            NF
UntagResource                         ok      ok       PDEL            ok            NF
UpdateKeyDescription                  ok      ok       PDEL            ok            NF
"""


@pytest.mark.parametrize(("operation", "state", "outcome"), parse(STATE_TABLE))
def test_state_check(operation: str, state: str, outcome: str) -> None:
    check(outcome, ARN, lambda: key_states.check_operation_allowed(state, operation, ARN))


def test_the_state_table_names_every_operation_the_domain_knows() -> None:
    known = CRYPTOGRAPHIC | ANY_STATE | NOT_PENDING_DELETION
    rows = {row for row, _, _ in parse(STATE_TABLE)}
    internal = {"ScheduleKeyDeletionCheck"}  # a policy check's name, not an operation
    assert known - internal <= rows


# --- the aggregate's commands -------------------------------------------------------------
# Each command on a key brought to each state by commands (tests/domain/builders.py): an
# AWS_KMS key, or for the import rows an EXTERNAL key with imported material; PendingImport
# is always an EXTERNAL key whose material was deleted. A refused command records nothing.
def _rotate_on_demand(key: Key) -> None:
    if key.is_external:  # the material imported for it (NEW_KEY_MATERIAL) is not there
        key.rotate_on_demand(now=NOW, actor=ACTOR, material=None)
    else:
        fresh = material(len(key.materials) + 1, rotation_type="ON_DEMAND")
        key.rotate_on_demand(now=NOW, actor=ACTOR, material=fresh)


def _reimport(key: Key) -> None:
    key.plan_import(
        now=NOW,
        material_id=key.materials[0].material_id,
        import_type=None,
        key_material_id=None,
        expiration_model="KEY_MATERIAL_DOES_NOT_EXPIRE",
        valid_to=None,
    )


COMMANDS: dict[str, tuple[str, Callable[[Key], Any]]] = {
    # name: (origin of the key in the non-PendingImport columns, the command)
    "enable": ("AWS_KMS", lambda k: k.enable(now=NOW, actor=ACTOR)),
    "disable": ("AWS_KMS", lambda k: k.disable(now=NOW, actor=ACTOR)),
    "schedule_deletion": (
        "AWS_KMS",
        lambda k: k.schedule_deletion(now=NOW, actor=ACTOR, pending_window_days=30),
    ),
    "cancel_deletion": ("AWS_KMS", lambda k: k.cancel_deletion(now=NOW, actor=ACTOR)),
    "change_description": (
        "AWS_KMS",
        lambda k: k.change_description(now=NOW, actor=ACTOR, description="d"),
    ),
    "tag": ("AWS_KMS", lambda k: k.tag(now=NOW, actor=ACTOR, tags={"team": "ledger"})),
    "untag": ("AWS_KMS", lambda k: k.untag(now=NOW, actor=ACTOR, tag_keys=["team"])),
    "put_policy": ("AWS_KMS", lambda k: k.put_policy(now=NOW, actor=ACTOR, policy="{}")),
    "create_grant": (
        "AWS_KMS",
        lambda k: k.create_grant(
            now=NOW, actor=ACTOR, grant={"grant_id": "g2", "operations": ["Decrypt"]}
        ),
    ),
    "retire_grant": (
        "AWS_KMS",
        lambda k: k.end_grant(now=NOW, actor=ACTOR, grant_id="g1", revoke=False),
    ),
    "revoke_grant": (
        "AWS_KMS",
        lambda k: k.end_grant(now=NOW, actor=ACTOR, grant_id="g1", revoke=True),
    ),
    "create_alias": (
        "AWS_KMS",
        lambda k: k.add_alias(
            now=NOW, actor=ACTOR, alias_name="alias/new", operation="CreateAlias"
        ),
    ),
    "update_alias_to": (
        "AWS_KMS",
        lambda k: k.add_alias(
            now=NOW, actor=ACTOR, alias_name="alias/moved", operation="UpdateAlias"
        ),
    ),
    "delete_alias": (
        "AWS_KMS",
        lambda k: k.remove_alias(now=NOW, actor=ACTOR, alias_name="alias/kept"),
    ),
    "enable_rotation": (
        "AWS_KMS",
        lambda k: k.enable_rotation(now=NOW, actor=ACTOR, period_days=180),
    ),
    "disable_rotation": ("AWS_KMS", lambda k: k.disable_rotation(now=NOW, actor=ACTOR)),
    "rotate_on_demand": ("AWS_KMS", _rotate_on_demand),
    "encrypt": ("AWS_KMS", lambda k: k.check_allowed("Encrypt")),
    "sign": ("AWS_KMS", lambda k: k.check_allowed("Sign")),
    "get_parameters_for_import": (
        "EXTERNAL",
        lambda k: k.issue_import_parameters(
            now=NOW,
            actor=ACTOR,
            token_id="ab" * 16,
            wrapping_algorithm="RSAES_OAEP_SHA_256",
            wrapping_key_spec="RSA_2048",
            wrapped_private_key=b"p",
        ),
    ),
    "reimport_same_material": ("EXTERNAL", _reimport),
    "delete_imported_material": ("EXTERNAL", lambda k: k.material_to_delete(None)),
}

# The rows AWS's table gives for the operation each command serves (DeleteAlias on a
# deleted key: its aliases went with it, so there is nothing to remove).
COMMAND_TABLE = """
# command                    Enabled Disabled PendingDeletion PendingImport Deleted
enable                       ok      ok       PDEL            PIMP          NF
disable                      ok      ok       PDEL            PIMP          NF
schedule_deletion            ok      ok       PDEL            ok            NF
cancel_deletion              NPD     NPD      ok              NPD           NF
change_description           ok      ok       PDEL            ok            NF
tag                          ok      ok       PDEL            ok            NF
untag                        ok      ok       PDEL            ok            NF
put_policy                   ok      ok       ok              ok            NF
create_grant                 ok      DIS      PDEL            PIMP          NF
retire_grant                 ok      ok       ok              ok            NF
revoke_grant                 ok      ok       ok              ok            NF
create_alias                 ok      ok       PDEL            ok            NF
update_alias_to              ok      ok       PDEL            ok            NF
delete_alias                 ok      ok       ok              ok            ok
enable_rotation              ok      DIS      PDEL            EXT           NF
disable_rotation             ok      DIS      PDEL            EXT           NF
rotate_on_demand             ok      DIS      PDEL            PIMP          NF
encrypt                      ok      DIS      PDEL            PIMP          NF
sign                         ok      DIS      PDEL            PIMP          NF
get_parameters_for_import    ok      ok       PDEL            ok            NF
reimport_same_material       ok      ok       PDEL            ok            NF
delete_imported_material     ok      ok       ok              ok            NF
"""


@pytest.mark.parametrize(("command", "state", "outcome"), parse(COMMAND_TABLE))
def test_command_in_state(command: str, state: str, outcome: str) -> None:
    origin, run = COMMANDS[command]
    key = key_in(state, origin=origin)
    before = (key.state, key.version, dict(key.__dict__))
    check(outcome, key.arn, lambda: run(key))
    if outcome != "ok":
        assert key.pending_events == []
        assert (key.state, key.version, key.__dict__) == before


def test_every_command_has_a_row() -> None:
    assert {row for row, _, _ in parse(COMMAND_TABLE)} == set(COMMANDS)


# --- transitions (AWS §6: "Transitions") -------------------------------------------------------
TRANSITIONS = [
    # (state, command, origin, state after)
    (key_states.DISABLED, "enable", "AWS_KMS", key_states.ENABLED),
    (key_states.ENABLED, "enable", "AWS_KMS", key_states.ENABLED),  # no-op
    (key_states.ENABLED, "disable", "AWS_KMS", key_states.DISABLED),
    (key_states.DISABLED, "disable", "AWS_KMS", key_states.DISABLED),  # no-op
    (key_states.ENABLED, "schedule_deletion", "AWS_KMS", key_states.PENDING_DELETION),
    (key_states.DISABLED, "schedule_deletion", "AWS_KMS", key_states.PENDING_DELETION),
    (key_states.PENDING_IMPORT, "schedule_deletion", "EXTERNAL", key_states.PENDING_DELETION),
    (key_states.PENDING_DELETION, "cancel_deletion", "AWS_KMS", key_states.DISABLED),
    (key_states.PENDING_DELETION, "cancel_deletion", "EXTERNAL", key_states.DISABLED),
]


@pytest.mark.parametrize(("state", "command", "origin", "after"), TRANSITIONS)
def test_transition(state: str, command: str, origin: str, after: str) -> None:
    key = key_in(state, origin=origin)
    COMMANDS[command][1](key)
    assert key.state == after
    assert len(key.pending_events) == (0 if state == after else 1)


def test_a_key_without_material_goes_back_to_pending_import_when_deletion_is_cancelled() -> None:
    key = key_in(key_states.PENDING_IMPORT)
    key.schedule_deletion(now=NOW, actor=ACTOR, pending_window_days=7)
    key.cancel_deletion(now=NOW, actor=ACTOR)
    assert key.state == key_states.PENDING_IMPORT


def test_the_waiting_period_ends_in_deletion_and_takes_the_aliases() -> None:
    key = key_in(key_states.PENDING_DELETION)
    with pytest.raises(InvalidStateError):
        key.destroy_material(now=NOW + timedelta(days=7) - timedelta(seconds=1), actor=ACTOR)
    key.destroy_material(now=NOW + timedelta(days=7), actor=ACTOR)
    assert (key.state, key.aliases, key.next_rotation_date) == (key_states.DELETED, [], None)
