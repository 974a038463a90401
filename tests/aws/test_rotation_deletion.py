"""Rotation and deletion through boto3 (reference §6, §7, §8). Tests that move the service
clock create their own keys and compute every date from the service clock; the server is
shared, so later tests see the clock where these left it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.aws.conftest import aws_error, ledger_unchanged, new_alias, service_now
from tests.conftest import ACCOUNT_ID, REGION

ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"
CLOSE = timedelta(seconds=10)


def pass_time(service, delta: timedelta) -> None:
    """Move the service clock and run the rotations and deletions that became due."""
    service.runtime.clock.advance(delta)
    service.runtime.service.jobs.run_due_jobs()


# --- ScheduleKeyDeletion --------------------------------------------------------------------
def test_schedule_key_deletion_defaults_to_a_30_day_window(kms, key_id, service):
    now = service_now(service)

    answer = kms.schedule_key_deletion(KeyId=key_id)

    assert answer["KeyId"] == ARN_PREFIX + key_id
    assert answer["KeyState"] == "PendingDeletion"
    assert answer["PendingWindowInDays"] == 30
    assert abs(answer["DeletionDate"] - (now + timedelta(days=30))) < CLOSE


@pytest.mark.parametrize("days", [7, 30])
def test_schedule_key_deletion_accepts_windows_from_7_to_30_days(kms, key_id, service, days):
    now = service_now(service)

    answer = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=days)

    assert answer["PendingWindowInDays"] == days
    assert abs(answer["DeletionDate"] - (now + timedelta(days=days))) < CLOSE


@pytest.mark.parametrize("days", [1, 6, 31, 365])
def test_schedule_key_deletion_refuses_windows_outside_7_to_30_days(kms, key_id, service, days):
    # AWS's text: "ValidationException: PendingWindowInDays must be between 7 and 30" (its
    # answer to a window of 1 day, as Skyscanner/kms-issuer#8 logged it).
    with (
        ledger_unchanged(service),
        aws_error("ValidationException", "PendingWindowInDays must be between 7 and 30"),
    ):
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=days)

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "Enabled"


def test_schedule_key_deletion_refuses_a_window_above_the_model_maximum(unvalidated_kms, key_id):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '366' at 'pendingWindowInDays' failed to satisfy "
        "constraint: Member must have value less than or equal to 365",
    ):
        unvalidated_kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=366)


def test_pending_deletion_shows_in_describe_key(kms, key_id):
    deletion_date = kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)["DeletionDate"]

    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]

    assert (metadata["KeyState"], metadata["Enabled"]) == ("PendingDeletion", False)
    assert metadata["DeletionDate"] == deletion_date


def test_schedule_key_deletion_twice_answers_invalid_state(kms, key_id, service):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with (
        ledger_unchanged(service),
        aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."),
    ):
        kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)


def test_schedule_key_deletion_works_on_a_disabled_key(kms, key_id):
    kms.disable_key(KeyId=key_id)

    assert kms.schedule_key_deletion(KeyId=key_id)["KeyState"] == "PendingDeletion"


def test_encrypt_fails_while_the_key_is_pending_deletion(kms, key_id, service):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with (
        ledger_unchanged(service),
        aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."),
    ):
        kms.encrypt(KeyId=key_id, Plaintext=b"x")


def test_decrypt_fails_while_the_key_is_pending_deletion(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"x")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."):
        kms.decrypt(CiphertextBlob=ciphertext)


def test_generate_data_key_fails_while_the_key_is_pending_deletion(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."):
        kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")


def test_describe_key_works_while_the_key_is_pending_deletion(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyId"] == key_id


# --- CancelKeyDeletion -------------------------------------------------------------------------
def test_cancel_key_deletion_leaves_the_key_disabled(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    answer = kms.cancel_key_deletion(KeyId=key_id)

    assert answer["KeyId"] == ARN_PREFIX + key_id
    metadata = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert metadata["KeyState"] == "Disabled"
    assert "DeletionDate" not in metadata


def test_a_key_whose_deletion_was_cancelled_decrypts_once_enabled(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"saved")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    kms.cancel_key_deletion(KeyId=key_id)
    kms.enable_key(KeyId=key_id)

    assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"saved"


def test_cancel_key_deletion_of_a_key_not_pending_deletion_answers_invalid_state(
    kms, key_id, service
):
    with (
        ledger_unchanged(service),
        aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is not pending deletion."),
    ):
        kms.cancel_key_deletion(KeyId=key_id)


# --- deletion completes when the window ends ----------------------------------------------------
def test_key_is_deleted_when_its_window_ends(kms, key_id, service):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    pass_time(service, timedelta(days=7, minutes=1))

    with aws_error("NotFoundException", f"Key '{ARN_PREFIX}{key_id}' does not exist"):
        kms.describe_key(KeyId=key_id)


def test_key_is_not_deleted_before_its_window_ends(kms, key_id, service):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=30)

    pass_time(service, timedelta(days=29))

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["KeyState"] == "PendingDeletion"


def test_deleting_a_key_deletes_its_aliases(kms, key_id, service):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    pass_time(service, timedelta(days=7, minutes=1))

    with aws_error("NotFoundException"):
        kms.describe_key(KeyId=alias)
    listed = [
        a["AliasName"] for a in kms.get_paginator("list_aliases").paginate().search("Aliases")
    ]
    assert alias not in listed


def test_the_alias_of_a_deleted_key_can_name_a_new_key(kms, key_id, service):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    pass_time(service, timedelta(days=7, minutes=1))
    replacement = kms.create_key()["KeyMetadata"]["KeyId"]

    kms.create_alias(AliasName=alias, TargetKeyId=replacement)

    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == replacement


def test_ciphertexts_of_a_deleted_key_no_longer_decrypt(kms, key_id, service):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"gone")["CiphertextBlob"]
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    pass_time(service, timedelta(days=7, minutes=1))

    with aws_error("NotFoundException"):
        kms.decrypt(CiphertextBlob=ciphertext)


def test_a_deleted_key_is_no_longer_listed(kms, key_id, service):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    pass_time(service, timedelta(days=7, minutes=1))

    listed = {k["KeyId"] for k in kms.get_paginator("list_keys").paginate().search("Keys")}
    assert key_id not in listed


def test_a_deleted_key_cannot_have_its_deletion_cancelled(kms, key_id, service):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    pass_time(service, timedelta(days=7, minutes=1))

    with aws_error("NotFoundException"):
        kms.cancel_key_deletion(KeyId=key_id)


# --- rotation settings --------------------------------------------------------------------------
def test_rotation_is_disabled_for_a_new_key(kms, key_id):
    status = kms.get_key_rotation_status(KeyId=key_id)

    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status


def test_enable_key_rotation_defaults_to_a_365_day_period(kms, key_id):
    created = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CreationDate"]

    kms.enable_key_rotation(KeyId=key_id)

    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 365
    assert abs(status["NextRotationDate"] - (created + timedelta(days=365))) < CLOSE


@pytest.mark.parametrize("days", [90, 2560])
def test_enable_key_rotation_accepts_periods_from_90_to_2560_days(kms, key_id, days):
    created = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CreationDate"]

    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=days)

    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["RotationPeriodInDays"] == days
    assert abs(status["NextRotationDate"] - (created + timedelta(days=days))) < CLOSE


def test_enable_key_rotation_again_changes_the_period(kms, key_id):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=180)

    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=400)

    assert kms.get_key_rotation_status(KeyId=key_id)["RotationPeriodInDays"] == 400


def test_enable_key_rotation_refuses_a_period_under_90_days(unvalidated_kms, key_id, service):
    with (
        ledger_unchanged(service),
        aws_error(
            "ValidationException",
            "1 validation error detected: Value '89' at 'rotationPeriodInDays' failed to "
            "satisfy constraint: Member must have value greater than or equal to 90",
        ),
    ):
        unvalidated_kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=89)


def test_enable_key_rotation_refuses_a_period_over_2560_days(kms, key_id):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '2561' at 'rotationPeriodInDays' failed to "
        "satisfy constraint: Member must have value less than or equal to 2560",
    ):
        kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=2561)


def test_disable_key_rotation_turns_rotation_off(kms, key_id):
    kms.enable_key_rotation(KeyId=key_id)

    kms.disable_key_rotation(KeyId=key_id)

    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is False
    assert "NextRotationDate" not in status


def test_enable_key_rotation_on_a_disabled_key_answers_disabled(kms, key_id):
    kms.disable_key(KeyId=key_id)

    with aws_error("DisabledException", f"{ARN_PREFIX}{key_id} is disabled."):
        kms.enable_key_rotation(KeyId=key_id)


def test_enable_key_rotation_while_pending_deletion_answers_invalid_state(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."):
        kms.enable_key_rotation(KeyId=key_id)


def test_get_key_rotation_status_answers_not_found_for_an_unknown_key(kms):
    with aws_error("NotFoundException"):
        kms.get_key_rotation_status(KeyId="00000000-0000-4000-8000-0000000000cc")


def test_rotation_status_reads_false_while_pending_deletion(kms, key_id):
    kms.enable_key_rotation(KeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is False


def test_cancelling_deletion_restores_the_rotation_setting(kms, key_id):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=200)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    kms.cancel_key_deletion(KeyId=key_id)

    status = kms.get_key_rotation_status(KeyId=key_id)
    assert (status["KeyRotationEnabled"], status["RotationPeriodInDays"]) == (True, 200)


# --- automatic rotation ----------------------------------------------------------------------
def test_key_rotates_automatically_when_its_period_passes(kms, key_id, service):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    before = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]

    pass_time(service, timedelta(days=90, minutes=1))

    after = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert after != before
    rotations = kms.list_key_rotations(KeyId=key_id)["Rotations"]
    assert [(r["KeyMaterialId"], r["RotationType"]) for r in rotations] == [(after, "AUTOMATIC")]


def test_key_does_not_rotate_before_its_period_passes(kms, key_id, service):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    before = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]

    pass_time(service, timedelta(days=89))

    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"] == before


def test_automatic_rotation_schedules_the_next_rotation_one_period_later(kms, key_id, service):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)

    pass_time(service, timedelta(days=90, minutes=1))

    rotated_at = kms.list_key_rotations(KeyId=key_id)["Rotations"][0]["RotationDate"]
    next_date = kms.get_key_rotation_status(KeyId=key_id)["NextRotationDate"]
    assert abs(next_date - (rotated_at + timedelta(days=90))) < CLOSE
    assert next_date > service_now(service)


def test_ciphertexts_from_before_a_rotation_still_decrypt(kms, key_id, service):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    old_material = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"old")["CiphertextBlob"]

    pass_time(service, timedelta(days=90, minutes=1))

    decrypted = kms.decrypt(CiphertextBlob=ciphertext)
    assert (decrypted["Plaintext"], decrypted["KeyMaterialId"]) == (b"old", old_material)


def test_ciphertexts_after_a_rotation_use_the_new_material(kms, key_id, service):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    old_material = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]

    pass_time(service, timedelta(days=90, minutes=1))
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"new")["CiphertextBlob"]

    decrypted = kms.decrypt(CiphertextBlob=ciphertext)
    current = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert decrypted["KeyMaterialId"] == current != old_material


def test_a_disabled_key_is_not_rotated(kms, key_id, service):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    kms.disable_key(KeyId=key_id)

    pass_time(service, timedelta(days=90, minutes=1))

    assert kms.list_key_rotations(KeyId=key_id)["Rotations"] == []


def test_an_overdue_rotation_happens_once_the_key_is_enabled_again(kms, key_id, service):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    kms.disable_key(KeyId=key_id)
    pass_time(service, timedelta(days=90, minutes=1))

    kms.enable_key(KeyId=key_id)
    pass_time(service, timedelta(minutes=1))

    rotations = kms.list_key_rotations(KeyId=key_id)["Rotations"]
    assert [r["RotationType"] for r in rotations] == ["AUTOMATIC"]


def test_a_key_with_rotation_disabled_is_not_rotated(kms, key_id, service):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    kms.disable_key_rotation(KeyId=key_id)

    pass_time(service, timedelta(days=90, minutes=1))

    assert kms.list_key_rotations(KeyId=key_id)["Rotations"] == []


# --- on-demand rotation ------------------------------------------------------------------------
def test_rotate_key_on_demand_adds_new_current_material(kms, key_id):
    before = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]

    kms.rotate_key_on_demand(KeyId=key_id)

    after = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    assert after != before


def test_rotate_key_on_demand_answers_the_key_arn_as_aws_does(raw, key_id):
    # AWS answers the ARN whichever form KeyId took (localstack's AWS-validated
    # test_rotate_on_demand_returns_arn_for_key_id, recorded 2025-11).
    response = raw("TrentService.RotateKeyOnDemand", {"KeyId": key_id})

    assert response.status == 200
    assert response.body == {"KeyId": ARN_PREFIX + key_id}


def test_ciphertexts_from_before_an_on_demand_rotation_still_decrypt(kms, key_id):
    ciphertext = kms.encrypt(KeyId=key_id, Plaintext=b"before")["CiphertextBlob"]

    kms.rotate_key_on_demand(KeyId=key_id)

    assert kms.decrypt(CiphertextBlob=ciphertext)["Plaintext"] == b"before"


def test_list_key_rotations_lists_only_rotations_by_default(kms, key_id, service):
    kms.rotate_key_on_demand(KeyId=key_id)
    current = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]

    rotations = kms.list_key_rotations(KeyId=key_id)["Rotations"]

    assert len(rotations) == 1
    assert rotations[0]["KeyId"] in (key_id, ARN_PREFIX + key_id)
    assert rotations[0]["KeyMaterialId"] == current
    assert rotations[0]["RotationType"] == "ON_DEMAND"
    assert abs(rotations[0]["RotationDate"] - service_now(service)) < CLOSE
    assert (
        kms.list_key_rotations(KeyId=key_id, IncludeKeyMaterial="ROTATIONS_ONLY")["Rotations"]
        == rotations
    )


def test_list_key_rotations_with_all_key_material_includes_the_original(kms, key_id):
    original = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]
    kms.rotate_key_on_demand(KeyId=key_id)
    current = kms.describe_key(KeyId=key_id)["KeyMetadata"]["CurrentKeyMaterialId"]

    listed = kms.list_key_rotations(KeyId=key_id, IncludeKeyMaterial="ALL_KEY_MATERIAL")

    assert [r["KeyMaterialId"] for r in listed["Rotations"]] == [original, current]
    assert "RotationType" not in listed["Rotations"][0]


def test_list_key_rotations_pages_with_limit_and_marker(kms, key_id):
    for _ in range(3):
        kms.rotate_key_on_demand(KeyId=key_id)

    first = kms.list_key_rotations(KeyId=key_id, Limit=2)
    second = kms.list_key_rotations(KeyId=key_id, Limit=2, Marker=first["NextMarker"])

    assert (len(first["Rotations"]), first["Truncated"]) == (2, True)
    assert (len(second["Rotations"]), second["Truncated"]) == (1, False)


def test_rotate_key_on_demand_on_a_disabled_key_answers_disabled(kms, key_id, service):
    kms.disable_key(KeyId=key_id)

    with (
        ledger_unchanged(service),
        aws_error("DisabledException", f"{ARN_PREFIX}{key_id} is disabled."),
    ):
        kms.rotate_key_on_demand(KeyId=key_id)


def test_rotate_key_on_demand_while_pending_deletion_answers_invalid_state(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."):
        kms.rotate_key_on_demand(KeyId=key_id)


def test_rotate_key_on_demand_stops_at_25_rotations(kms, key_id):
    for _ in range(25):
        kms.rotate_key_on_demand(KeyId=key_id)

    with aws_error(
        "LimitExceededException",
        "The on-demand rotations limit has been reached for the given keyId. No more on-demand "
        f"rotations can be performed for this key: {ARN_PREFIX}{key_id}",
    ):
        kms.rotate_key_on_demand(KeyId=key_id)


def test_rotate_key_on_demand_does_not_move_the_automatic_schedule(kms, key_id):
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    scheduled = kms.get_key_rotation_status(KeyId=key_id)["NextRotationDate"]

    kms.rotate_key_on_demand(KeyId=key_id)

    assert kms.get_key_rotation_status(KeyId=key_id)["NextRotationDate"] == scheduled
