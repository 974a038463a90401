"""Aliases, tags and key policies through boto3 (reference §2, §10, §11, §16 "Aliases",
"Tags", "Key policy")."""

from __future__ import annotations

import json

import pytest

from domain.identifiers import PREDEFINED_AWS_ALIASES
from tests.aws.conftest import aws_error, ledger_unchanged, new_alias
from tests.conftest import ACCOUNT_ID, REGION

ARN_PREFIX = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/"
ALIAS_PREFIX_MESSAGE = (
    'Alias must start with the prefix "alias/". Please see '
    "https://docs.aws.amazon.com/kms/latest/developerguide/kms-alias.html"
)


def alias_arn(alias: str) -> str:
    return f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:{alias}"


def aliases_of(kms, key_id: str) -> list[dict]:
    return kms.list_aliases(KeyId=key_id)["Aliases"]


# --- CreateAlias ---------------------------------------------------------------------------
def test_create_alias_makes_the_alias_name_the_key(kms, key_id):
    alias = new_alias()

    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key_id


def test_create_alias_accepts_a_target_key_arn(kms, key_id):
    alias = new_alias()

    kms.create_alias(AliasName=alias, TargetKeyId=ARN_PREFIX + key_id)

    assert [a["AliasName"] for a in aliases_of(kms, key_id)] == [alias]


def test_create_alias_refuses_a_name_already_taken(kms, key_id, service):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    other = kms.create_key()["KeyMetadata"]["KeyId"]

    with (
        ledger_unchanged(service),
        aws_error(
            "AlreadyExistsException", f"An alias with the name {alias_arn(alias)} already exists"
        ),
    ):
        kms.create_alias(AliasName=alias, TargetKeyId=other)
    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key_id


def test_create_alias_requires_the_alias_prefix(kms, key_id, service):
    with ledger_unchanged(service), aws_error("ValidationException", ALIAS_PREFIX_MESSAGE):
        kms.create_alias(AliasName="payroll", TargetKeyId=key_id)


def test_create_alias_refuses_characters_outside_the_pattern(kms, key_id):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value 'alias/bad name' at 'aliasName' failed to satisfy "
        "constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9:/_-]+$",
    ):
        kms.create_alias(AliasName="alias/bad name", TargetKeyId=key_id)


@pytest.mark.parametrize("operation", ["CreateAlias", "UpdateAlias"])
def test_an_alias_name_with_a_colon_is_refused_although_the_pattern_admits_it(
    raw, key_id, service, operation
):
    # AWS's answer for alias/my:alias, as moto's tests record it.
    with ledger_unchanged(service):
        response = raw(
            f"TrentService.{operation}", {"AliasName": "alias/my:alias", "TargetKeyId": key_id}
        )

    assert (response.status, response.body) == (
        400,
        {
            "__type": "ValidationException",
            "message": "alias/my:alias contains invalid characters for an alias",
        },
    )


def test_create_alias_accepts_letters_digits_slashes_underscores_and_dashes(kms, key_id):
    name = new_alias() + "/Az09_-/"

    kms.create_alias(AliasName=name, TargetKeyId=key_id)

    assert kms.describe_key(KeyId=name)["KeyMetadata"]["KeyId"] == key_id


def test_create_alias_refuses_the_reserved_aws_prefix(kms, key_id, service):
    with ledger_unchanged(service), aws_error("InvalidAliasNameException"):
        kms.create_alias(AliasName="alias/aws/mine", TargetKeyId=key_id)


def test_create_alias_answers_not_found_for_an_unknown_target(kms):
    with aws_error("NotFoundException"):
        kms.create_alias(AliasName=new_alias(), TargetKeyId="00000000-0000-4000-8000-0000000000aa")


def test_create_alias_fails_for_a_key_pending_deletion(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."):
        kms.create_alias(AliasName=new_alias(), TargetKeyId=key_id)


def test_create_alias_works_for_a_disabled_key(kms, key_id):
    kms.disable_key(KeyId=key_id)
    alias = new_alias()

    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == key_id


# --- UpdateAlias ----------------------------------------------------------------------------
def test_update_alias_points_the_alias_at_another_key(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    other = kms.create_key()["KeyMetadata"]["KeyId"]

    kms.update_alias(AliasName=alias, TargetKeyId=other)

    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == other
    assert aliases_of(kms, key_id) == []
    assert [a["AliasName"] for a in aliases_of(kms, other)] == [alias]


def test_update_alias_answers_not_found_for_an_unknown_alias(kms, key_id):
    alias = new_alias()

    with aws_error("NotFoundException", f"Alias {alias_arn(alias)} is not found."):
        kms.update_alias(AliasName=alias, TargetKeyId=key_id)


def test_update_alias_refuses_a_target_pending_deletion(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    target = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.schedule_key_deletion(KeyId=target, PendingWindowInDays=7)

    with aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{target} is pending deletion."):
        kms.update_alias(AliasName=alias, TargetKeyId=target)


def test_update_alias_moves_an_alias_away_from_a_key_pending_deletion(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)
    target = kms.create_key()["KeyMetadata"]["KeyId"]

    kms.update_alias(AliasName=alias, TargetKeyId=target)

    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == target


def test_create_alias_refuses_an_aws_managed_target(kms):
    managed = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]["KeyId"]

    with aws_error("AccessDeniedException"):
        kms.create_alias(AliasName=new_alias(), TargetKeyId=managed)


# --- DeleteAlias ----------------------------------------------------------------------------
def test_delete_alias_removes_the_alias(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    kms.delete_alias(AliasName=alias)

    with aws_error("NotFoundException"):
        kms.describe_key(KeyId=alias)
    assert aliases_of(kms, key_id) == []


def test_delete_alias_answers_not_found_for_an_unknown_alias(kms, service):
    alias = new_alias()

    with ledger_unchanged(service), aws_error("NotFoundException"):
        kms.delete_alias(AliasName=alias)


def test_delete_alias_works_while_the_key_is_pending_deletion(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    kms.delete_alias(AliasName=alias)

    assert aliases_of(kms, key_id) == []


def test_a_deleted_alias_name_can_be_created_again(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    kms.delete_alias(AliasName=alias)
    other = kms.create_key()["KeyMetadata"]["KeyId"]

    kms.create_alias(AliasName=alias, TargetKeyId=other)

    assert kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"] == other


# --- ListAliases ----------------------------------------------------------------------------
def test_list_aliases_filtered_by_key_lists_only_that_keys_aliases(kms, key_id):
    names = sorted([new_alias(), new_alias()])
    for name in names:
        kms.create_alias(AliasName=name, TargetKeyId=key_id)
    kms.create_alias(AliasName=new_alias(), TargetKeyId=kms.create_key()["KeyMetadata"]["KeyId"])

    listed = aliases_of(kms, key_id)

    assert [a["AliasName"] for a in listed] == names
    assert [a["AliasArn"] for a in listed] == [alias_arn(n) for n in names]
    assert all(a["TargetKeyId"] == key_id for a in listed)
    assert all("CreationDate" in a and "LastUpdatedDate" in a for a in listed)


def test_list_aliases_accepts_a_key_arn_filter(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    listed = kms.list_aliases(KeyId=ARN_PREFIX + key_id)["Aliases"]

    assert [a["AliasName"] for a in listed] == [alias]


@pytest.mark.parametrize("count", [4, 5])  # the account's aliases end a page, or do not
def test_list_aliases_pages_with_limit_and_marker(other_account, count):
    kms = other_account.kms
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    names = sorted(new_alias() for _ in range(count))
    for name in names:
        kms.create_alias(AliasName=name, TargetKeyId=key_id)

    pages = [kms.list_aliases(Limit=2)]
    while pages[-1]["Truncated"]:
        pages.append(kms.list_aliases(Limit=2, Marker=pages[-1]["NextMarker"]))

    # The account's aliases, then AWS's predefined aliases that have no key yet.
    expected = names + list(PREDEFINED_AWS_ALIASES)
    sizes = [2] * (len(expected) // 2) + [1] * (len(expected) % 2)
    assert [len(page["Aliases"]) for page in pages] == sizes
    listed = [a["AliasName"] for page in pages for a in page["Aliases"]]
    assert listed == expected


def test_list_aliases_lists_predefined_aliases_without_a_target_key(other_account):
    # AWS's ListAliases: "The response might also include aliases that have no TargetKeyId
    # field. These are predefined aliases that AWS has created but has not yet associated
    # with a KMS key."
    account = other_account.account_id

    answer = other_account.kms.list_aliases()

    assert answer["Aliases"] == [
        {"AliasName": name, "AliasArn": f"arn:aws:kms:{REGION}:{account}:{name}"}
        for name in PREDEFINED_AWS_ALIASES
    ]
    assert answer["Truncated"] is False and "NextMarker" not in answer


def test_a_predefined_alias_gets_its_target_once_its_aws_managed_key_exists(other_account):
    kms = other_account.kms
    managed = kms.describe_key(KeyId="alias/aws/s3")["KeyMetadata"]

    listed = kms.list_aliases()["Aliases"]

    s3 = [a for a in listed if a["AliasName"] == "alias/aws/s3"]
    assert len(s3) == 1 and s3[0]["TargetKeyId"] == managed["KeyId"]
    assert all("TargetKeyId" not in a for a in listed if a["AliasName"] != "alias/aws/s3")
    assert kms.list_aliases(KeyId=managed["KeyId"])["Aliases"] == s3


def test_list_aliases_rejects_a_marker_it_did_not_issue(kms):
    with aws_error("InvalidMarkerException"):
        kms.list_aliases(Marker="!!bogus!!")


def test_list_aliases_answers_not_found_for_an_unknown_key(kms):
    with aws_error("NotFoundException"):
        kms.list_aliases(KeyId="00000000-0000-4000-8000-0000000000ab")


# --- Tags ---------------------------------------------------------------------------------
def tags_of(kms, key_id: str) -> dict[str, str]:
    return {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key_id)["Tags"]}


def test_tag_resource_adds_tags(kms, key_id):
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "team", "TagValue": "payments"}])

    assert tags_of(kms, key_id) == {"team": "payments"}


def test_tag_resource_replaces_the_value_of_an_existing_tag(kms, key_id):
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "dev"}])

    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "env", "TagValue": "prod"}])

    assert tags_of(kms, key_id) == {"env": "prod"}


def test_tag_keys_are_case_sensitive(kms, key_id):
    kms.tag_resource(
        KeyId=key_id,
        Tags=[{"TagKey": "Env", "TagValue": "a"}, {"TagKey": "env", "TagValue": "b"}],
    )

    assert tags_of(kms, key_id) == {"Env": "a", "env": "b"}


def test_untag_resource_removes_the_named_tags(kms, key_id):
    kms.tag_resource(
        KeyId=key_id, Tags=[{"TagKey": "a", "TagValue": "1"}, {"TagKey": "b", "TagValue": "2"}]
    )

    kms.untag_resource(KeyId=key_id, TagKeys=["a", "not-there"])

    assert tags_of(kms, key_id) == {"b": "2"}


def test_tag_resource_refuses_the_reserved_aws_prefix(kms, key_id, service):
    with (
        ledger_unchanged(service),
        aws_error("TagException", "Tags beginning with aws: are reserved"),
    ):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "aws:createdBy", "TagValue": "x"}])
    assert tags_of(kms, key_id) == {}


@pytest.mark.parametrize("tag_key", ["AWS:createdBy", "Aws:createdBy", "aWs:createdBy"])
def test_tag_resource_refuses_the_reserved_prefix_in_any_case(kms, key_id, service, tag_key):
    # Recorded: CreateKey with the tag key AWS:key1 (localstack snapshot, "uppercase_prefix").
    with (
        ledger_unchanged(service),
        aws_error("TagException", "Tags beginning with aws: are reserved"),
    ):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": tag_key, "TagValue": "x"}])
    assert tags_of(kms, key_id) == {}


def test_untag_resource_refuses_the_reserved_aws_prefix(kms, key_id):
    with aws_error("TagException", "Tags beginning with aws: are reserved"):
        kms.untag_resource(KeyId=key_id, TagKeys=["aws:createdBy"])


def test_tag_resource_refuses_duplicate_tag_keys(kms, key_id, service):
    with ledger_unchanged(service), aws_error("TagException", "Duplicate tag keys"):
        kms.tag_resource(
            KeyId=key_id,
            Tags=[{"TagKey": "dup", "TagValue": "1"}, {"TagKey": "dup", "TagValue": "2"}],
        )


def test_tag_resource_refuses_more_than_50_tags_in_one_request(kms, key_id, service):
    tags = [{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)]

    with ledger_unchanged(service), aws_error("TagException", "Too many tags"):
        kms.tag_resource(KeyId=key_id, Tags=tags)


def test_tag_resource_refuses_to_go_beyond_50_tags_on_a_key(kms, key_id):
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": f"k{i}", "TagValue": "v"} for i in range(50)])

    with aws_error("TagException", "Too many tags"):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "one-more", "TagValue": "v"}])
    assert len(tags_of(kms, key_id)) == 50


def test_tag_resource_allows_replacing_a_value_on_a_key_with_50_tags(kms, key_id):
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": f"k{i}", "TagValue": "v"} for i in range(50)])

    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "k0", "TagValue": "new"}])

    assert tags_of(kms, key_id)["k0"] == "new"


def test_create_key_refuses_more_than_50_tags(kms, service):
    with ledger_unchanged(service), aws_error("TagException", "Too many tags"):
        kms.create_key(Tags=[{"TagKey": f"k{i}", "TagValue": "v"} for i in range(51)])


def test_tag_resource_refuses_a_value_longer_than_256_characters(kms, key_id):
    with aws_error(
        "ValidationException",
        "1 validation error detected: Value '"
        + "v" * 257
        + "' at 'tags.1.member.tagValue' failed to satisfy constraint: "
        "Member must have length less than or equal to 256",
    ):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "k", "TagValue": "v" * 257}])


def test_tag_resource_fails_while_pending_deletion(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    with aws_error("KMSInvalidStateException", f"{ARN_PREFIX}{key_id} is pending deletion."):
        kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "k", "TagValue": "v"}])


def test_list_resource_tags_works_while_pending_deletion(kms, key_id):
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": "k", "TagValue": "v"}])
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    assert tags_of(kms, key_id) == {"k": "v"}


def test_list_resource_tags_pages_with_limit_and_marker(kms, key_id):
    kms.tag_resource(KeyId=key_id, Tags=[{"TagKey": f"k{i}", "TagValue": "v"} for i in range(5)])

    first = kms.list_resource_tags(KeyId=key_id, Limit=3)
    second = kms.list_resource_tags(KeyId=key_id, Limit=3, Marker=first["NextMarker"])

    assert (first["Truncated"], second["Truncated"]) == (True, False)
    keys = [t["TagKey"] for t in first["Tags"] + second["Tags"]]
    assert sorted(keys) == [f"k{i}" for i in range(5)]


# --- Key policy ---------------------------------------------------------------------------
def policy(sid: str = "Admins", padding: int = 0) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": sid + "x" * padding,
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                }
            ],
        },
        ensure_ascii=False,
    )


def test_get_key_policy_returns_the_default_policy(kms, key_id):
    answer = kms.get_key_policy(KeyId=key_id, PolicyName="default")

    assert answer["PolicyName"] == "default"
    document = json.loads(answer["Policy"])
    assert document["Version"] == "2012-10-17"
    assert document["Statement"] == [
        {
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
            "Action": "kms:*",
            "Resource": "*",
        }
    ]


def test_get_key_policy_defaults_the_policy_name(kms, key_id):
    assert kms.get_key_policy(KeyId=key_id)["PolicyName"] == "default"


def test_put_key_policy_replaces_the_policy(kms, key_id):
    new_policy = policy("Replaced")

    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=new_policy)

    assert kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"] == new_policy


def test_put_key_policy_refuses_malformed_json(kms, key_id, service):
    with ledger_unchanged(service), aws_error("MalformedPolicyDocumentException"):
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy='{"Statement": [')


def test_put_key_policy_refuses_a_document_without_statements(kms, key_id):
    with aws_error("MalformedPolicyDocumentException"):
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy='{"Version":"2012-10-17"}')


def test_put_key_policy_accepts_a_document_of_exactly_32_kb(kms, key_id):
    base = len(policy(padding=0).encode())
    document = policy(padding=32_768 - base)
    assert len(document.encode()) == 32_768

    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=document)

    assert kms.get_key_policy(KeyId=key_id)["Policy"] == document


def test_put_key_policy_refuses_a_document_over_32_kb(kms, key_id, service):
    base = len(policy(padding=0).encode())
    document = policy(padding=32_769 - base)

    with ledger_unchanged(service), aws_error("LimitExceededException"):
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=document)


def test_put_key_policy_refuses_characters_beyond_latin_1(kms, key_id, service):
    with ledger_unchanged(service), aws_error("ValidationException") as error:
        kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=policy("Euro\u20ac"))

    assert (
        "at 'policy' failed to satisfy constraint: Member must satisfy regular expression"
        in (error["message"])
    )


@pytest.mark.parametrize("operation", ["get", "put"])
def test_policy_names_other_than_default_are_refused(kms, key_id, service, operation):
    with ledger_unchanged(service), aws_error("NotFoundException"):
        if operation == "get":
            kms.get_key_policy(KeyId=key_id, PolicyName="custom")
        else:
            kms.put_key_policy(KeyId=key_id, PolicyName="custom", Policy=policy())


def test_list_key_policies_lists_only_default(kms, key_id):
    answer = kms.list_key_policies(KeyId=key_id)

    assert answer["PolicyNames"] == ["default"]
    assert answer["Truncated"] is False


def test_get_key_policy_works_while_pending_deletion(kms, key_id):
    kms.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    assert kms.get_key_policy(KeyId=key_id)["PolicyName"] == "default"


def test_get_key_policy_does_not_accept_an_alias(kms, key_id):
    alias = new_alias()
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)

    with aws_error("NotFoundException"):
        kms.get_key_policy(KeyId=alias)
