"""Identifiers: key ids, ARNs and alias names, parsed the way AWS KMS reads them."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache

from domain.errors import InvalidAliasNameError, InvalidArnError, NotFoundError, ValidationError

KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MULTI_REGION_KEY_ID_PATTERN = re.compile(r"^mrk-[0-9a-f]{32}$")
ALIAS_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9:/_-]+$")
ACCOUNT_ID_PATTERN = re.compile(r"^\d{12}$")
REGION_PATTERN = re.compile(r"^([a-z]+-){2,3}\d+$")
ARN_PATTERN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]*):(?P<account>\d{12}):"
    r"(?P<resource>key|alias)/(?P<name>.+)$"
)
AWS_MANAGED_ALIAS_PREFIX = "alias/aws/"
# The aliases AWS creates in every account ahead of their AWS managed keys; ListAliases
# lists one without a TargetKeyId until its key exists (AWS's ListAliases documentation;
# the names are moto's and LocalStack's list of them).
PREDEFINED_AWS_ALIASES = tuple(
    AWS_MANAGED_ALIAS_PREFIX + service
    for service in (
        "acm",
        "dynamodb",
        "ebs",
        "elasticfilesystem",
        "es",
        "glue",
        "kinesisvideo",
        "lambda",
        "rds",
        "redshift",
        "s3",
        "secretsmanager",
        "ssm",
        "xray",
    )
)
ALIAS_PREFIX = "alias/"
# Deterministic ids for name-keyed aggregates (aliases, accounts, access keys).
NAMESPACE = uuid.UUID("5b0e3c5e-4a3b-4f43-9d61-6b6579ed6765")


class ReferenceKind(Enum):
    KEY_ID = "key_id"
    KEY_ARN = "key_arn"
    ALIAS_NAME = "alias_name"
    ALIAS_ARN = "alias_arn"


@dataclass(frozen=True)
class KeyReference:
    """What a caller wrote in a KeyId member, resolved to account and region."""

    kind: ReferenceKind
    account_id: str
    region: str
    name: str  # the key id, or the alias name ("alias/...")

    @property
    def is_alias(self) -> bool:
        return self.kind in (ReferenceKind.ALIAS_NAME, ReferenceKind.ALIAS_ARN)

    @property
    def key_uuid(self) -> uuid.UUID | None:
        """The aggregate id of the key a key id or key ARN names: the key id itself, or for
        a multi-Region key id (``mrk-``) its key in this reference's Region. None for an
        alias."""
        if self.is_alias:
            return None
        if KEY_ID_PATTERN.match(self.name):
            return _uuid_of(self.name)
        return multi_region_aggregate_id(self.name, self.region)


def multi_region_aggregate_id(key_id: str, region: str) -> uuid.UUID:
    """The aggregate id of the key of the multi-Region set ``key_id`` in ``region``
    (domain.multi_region explains why no account is in it)."""
    return uuid.uuid5(NAMESPACE, f"multi-region-key:{region}:{key_id}")


def is_key_id(value: str) -> bool:
    """A key id as AWS writes one: a lowercase UUID, or ``mrk-`` and 32 hex digits."""
    return bool(KEY_ID_PATTERN.match(value) or MULTI_REGION_KEY_ID_PATTERN.match(value))


def key_arn(partition: str, region: str, account_id: str, key_id: str) -> str:
    return f"arn:{partition}:kms:{region}:{account_id}:key/{key_id}"


def alias_arn(partition: str, region: str, account_id: str, alias_name: str) -> str:
    return f"arn:{partition}:kms:{region}:{account_id}:{alias_name}"


def parse_key_reference(
    value: str, *, account_id: str, region: str, allow_alias: bool = True
) -> KeyReference:
    """Parse a KeyId member (key id, key ARN, alias name or alias ARN).

    Management operations pass ``allow_alias=False``: AWS then answers NotFound for an
    alias name, as it does for any string that names no key, and InvalidArn for an alias
    ARN.
    """
    if value.startswith("arn:"):
        match = ARN_PATTERN.match(value)
        if match is None:
            raise InvalidArnError(f"Invalid arn {value}")
        resource, name = match["resource"], match["name"]
        if resource == "key":
            if not is_key_id(name):
                raise NotFoundError(f"Invalid keyId '{value}'")
            return KeyReference(ReferenceKind.KEY_ARN, match["account"], match["region"], name)
        if not allow_alias:
            # AWS's answer to an alias ARN where only a key will do (as relayed by Lambda's
            # CreateGrant: "InvalidArnException KMS Message: Key Aliases are not supported
            # for this operation.").
            raise InvalidArnError("Key Aliases are not supported for this operation.")
        return KeyReference(
            ReferenceKind.ALIAS_ARN, match["account"], match["region"], f"alias/{name}"
        )
    if value.startswith(ALIAS_PREFIX):
        if not allow_alias:
            raise NotFoundError(f"Invalid keyId '{value}'")
        return KeyReference(ReferenceKind.ALIAS_NAME, account_id, region, value)
    if is_key_id(value):
        return KeyReference(ReferenceKind.KEY_ID, account_id, region, value)
    raise NotFoundError(f"Invalid keyId '{value}'")


def validate_alias_name(alias_name: str, *, allow_aws_managed: bool = False) -> None:
    if not alias_name.startswith(ALIAS_PREFIX):
        raise ValidationError(
            'Alias must start with the prefix "alias/". Please see '
            "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
        )
    if alias_name == ALIAS_PREFIX or not ALIAS_NAME_PATTERN.match(alias_name):
        raise ValidationError(
            f"1 validation error detected: Value '{alias_name}' at 'aliasName' failed to "
            f"satisfy constraint: Member must satisfy regular expression pattern: "
            f"^[a-zA-Z0-9:/_-]+$"
        )
    if alias_name.startswith(AWS_MANAGED_ALIAS_PREFIX) and not allow_aws_managed:
        raise InvalidAliasNameError(
            "Alias names beginning with alias/aws/ are reserved for AWS managed keys."
        )


def validate_new_alias_name(alias_name: str) -> None:
    """CreateAlias and UpdateAlias: the model's pattern admits ':', but KMS refuses an alias
    named with it (moto's record of AWS's answer: ``alias/my:alias contains invalid
    characters for an alias``); letters, digits, '/', '_' and '-' remain."""
    validate_alias_name(alias_name)
    if ":" in alias_name:
        raise ValidationError(f"{alias_name} contains invalid characters for an alias")


def alias_aggregate_id(account_id: str, region: str, alias_name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"alias:{account_id}:{region}:{alias_name}")


def account_aggregate_id(account_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"account:{account_id}")


def principal_aggregate_id(principal_arn: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"principal:{principal_arn}")


def access_key_aggregate_id(access_key_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"access-key:{access_key_id}")


@lru_cache(maxsize=4096)
def _uuid_of(key_id: str) -> uuid.UUID:
    """A key id's UUID: parsed once for the keys in use (two parses a call otherwise)."""
    return uuid.UUID(key_id)
