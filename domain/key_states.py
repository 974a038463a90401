"""Key states and which operations each allows, with AWS KMS's errors and messages."""

from __future__ import annotations

from domain.errors import (
    DisabledError,
    InvalidStateError,
    NotFoundError,
    UnsupportedOperationError,
)

ENABLED = "Enabled"
DISABLED = "Disabled"
PENDING_DELETION = "PendingDeletion"
PENDING_IMPORT = "PendingImport"
# A multi-Region primary key scheduled for deletion while replicas remain: it waits for
# them, then its own window starts (PendingDeletion).
PENDING_REPLICA_DELETION = "PendingReplicaDeletion"
PENDING = (PENDING_DELETION, PENDING_REPLICA_DELETION)
# Internal: the deletion window ended and the material is destroyed; callers see NotFound.
DELETED = "Deleted"

CRYPTOGRAPHIC = frozenset(
    {
        "Encrypt",
        "Decrypt",
        "ReEncryptFrom",
        "ReEncryptTo",
        "GenerateDataKey",
        "GenerateDataKeyWithoutPlaintext",
        "GenerateDataKeyPair",
        "GenerateDataKeyPairWithoutPlaintext",
        "Sign",
        "Verify",
        "GenerateMac",
        "VerifyMac",
        "GetPublicKey",
        "DeriveSharedSecret",
        "CreateGrant",
        "Encapsulate",
        "Decapsulate",
    }
)
ANY_STATE = frozenset(
    {
        "DescribeKey",
        "DeleteAlias",
        "GetKeyPolicy",
        "PutKeyPolicy",
        "ListKeyPolicies",
        "ListResourceTags",
        "ListGrants",
        "RetireGrant",
        "RevokeGrant",
        "GetKeyRotationStatus",
        "ScheduleKeyDeletionCheck",
        "GetKeyLastUsage",
        "ListAliases",
        "DeleteImportedKeyMaterial",
    }
)
NOT_PENDING_DELETION = frozenset(
    {
        "CreateAlias",
        "UpdateAlias",
        "TagResource",
        "UntagResource",
        "UpdateKeyDescription",
        "GetParametersForImport",
        "ImportKeyMaterial",
    }
)


def check_operation_allowed(state: str, operation: str, key_arn: str) -> None:
    """Raise the error AWS answers when ``operation`` meets a key in ``state``."""
    if state == DELETED:
        raise NotFoundError(f"Key '{key_arn}' does not exist")
    if operation in ANY_STATE:
        return
    if operation == "CancelKeyDeletion":  # the one operation that needs PendingDeletion
        if state not in PENDING:
            raise InvalidStateError(f"{key_arn} is not pending deletion.")
        return
    if state == PENDING_DELETION:
        raise InvalidStateError(f"{key_arn} is pending deletion.")
    if state == PENDING_REPLICA_DELETION:
        raise InvalidStateError(f"{key_arn} is pending replica deletion.")
    if operation in NOT_PENDING_DELETION:
        return
    if state == PENDING_IMPORT:
        if operation == "ScheduleKeyDeletion":  # a key awaiting its material may be deleted
            return
        if operation in ("EnableKeyRotation", "DisableKeyRotation"):
            raise UnsupportedOperationError(
                f"{key_arn} origin is EXTERNAL which is not valid for this operation."
            )
        raise InvalidStateError(f"{key_arn} is pending import.")
    if operation in ("EnableKey", "DisableKey", "ScheduleKeyDeletion", "ListKeyRotations"):
        return
    if state == DISABLED:
        raise DisabledError(f"{key_arn} is disabled.")
