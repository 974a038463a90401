"""The explain API (now and as of a past time), the identity admin API, grants and denials
under /v1, and the CLI's identity and explain commands."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.entrypoints.cli import main as cli
from tests.access.conftest import (
    ADMIN_ARN,
    KMS_ALL,
    Identities,
    allow,
    key_policy_doc,
    policy,
    root,
)
from tests.api.test_rest_api import RestClient, assert_error
from tests.conftest import ACCOUNT_ID, REGION, Service

EC2_VIA = f"ec2.{REGION}.amazonaws.com"


@pytest.fixture
def rest(service: Service) -> Iterator[RestClient]:
    client = RestClient(service, service.access_key_id, service.secret_access_key)
    yield client
    client.http.close()


def explain(rest: RestClient, **body: Any) -> dict[str, Any]:
    response = rest.post("/v1/authz/explain", body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def cross_account_setup(kms: Any, identities: Identities) -> dict[str, Any]:
    """A key of the operator account that a role of account B may decrypt through EC2."""
    account_b = identities.account()
    role = identities.principal(
        account_b, role=True, policies={"Use": policy(allow(["kms:Decrypt", "kms:DescribeKey"]))}
    )
    through_ec2 = {
        "Sid": "CopierThroughEc2",
        "Effect": "Allow",
        "Principal": {"AWS": role.arn},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": EC2_VIA, "kms:CallerAccount": account_b}},
    }
    key = kms.create_key(Policy=key_policy_doc(through_ec2))["KeyMetadata"]
    return {"account_b": account_b, "role": role, "key": key}


# ==== explain ============================================================================
def test_explain_names_the_statements_that_allow(rest: RestClient, cross_account_setup):
    role, key = cross_account_setup["role"], cross_account_setup["key"]

    answer = explain(
        rest,
        principal_arn=role.arn,
        action="kms:Decrypt",
        key_id=key["Arn"],
        via_service="ec2.amazonaws.com",
    )

    assert answer["allowed"] is True
    assert answer["decision"] == "Allow"
    assert answer["message"] is None
    sources = {(s["source"], s["sid"]) for s in answer["statements"]}
    assert ("key policy", "CopierThroughEc2") in sources
    assert ("identity policy Use", None) in sources
    assert answer["context"]["kms:viaservice"] == [EC2_VIA]
    assert answer["context"]["kms:calleraccount"] == [cross_account_setup["account_b"]]
    assert answer["resource_arn"] == key["Arn"]


def test_explain_shows_the_condition_that_failed(rest: RestClient, cross_account_setup):
    role, key = cross_account_setup["role"], cross_account_setup["key"]

    answer = explain(rest, principal_arn=role.arn, action="Decrypt", key_id=key["Arn"])

    assert answer["allowed"] is False
    assert answer["decision"] == "ImplicitDeny"
    assert answer["message"] == (
        f"User: {role.arn} is not authorized to perform: kms:Decrypt on resource: {key['Arn']} "
        "because no resource-based policy allows the kms:Decrypt action"
    )
    copier = next(t for t in answer["evaluated"] if t["sid"] == "CopierThroughEc2")
    assert copier["principal"] == "names the caller"
    assert "kms:viaservice" in copier["failed_condition"]
    assert copier["applies"] is False


def test_explain_answers_as_of_a_past_time(
    rest: RestClient, service: Service, kms: Any, identities: Identities
):
    user = identities.principal(policies={"All": KMS_ALL})
    key = kms.create_key()["KeyMetadata"]
    before = service.runtime.clock.now()
    deny = {
        "Sid": "NoMore",
        "Effect": "Deny",
        "Principal": {"AWS": user.arn},
        "Action": "kms:*",
        "Resource": "*",
    }
    kms.put_key_policy(KeyId=key["KeyId"], PolicyName="default", Policy=key_policy_doc(deny))

    now = explain(rest, principal_arn=user.arn, action="kms:Encrypt", key_id=key["KeyId"])
    then = explain(
        rest,
        principal_arn=user.arn,
        action="kms:Encrypt",
        key_id=key["KeyId"],
        at=before.isoformat(),
    )

    assert (now["decision"], [s["sid"] for s in now["statements"]]) == ("ExplicitDeny", ["NoMore"])
    assert then["decision"] == "Allow"
    assert then["key_version"] < now["key_version"]


def test_explain_answers_as_of_before_a_policy_was_attached(
    rest: RestClient, service: Service, kms: Any, identities: Identities
):
    user = identities.principal()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    before = service.runtime.clock.now()
    service.runtime.identity.put_principal_policy(user.arn, "Late", KMS_ALL)

    then = explain(
        rest, principal_arn=user.arn, action="kms:Encrypt", key_id=key_id, at=before.isoformat()
    )

    assert (then["decision"], then["allowed"]) == ("ImplicitDeny", False)
    assert explain(rest, principal_arn=user.arn, action="kms:Encrypt", key_id=key_id)["allowed"]


def test_explain_names_the_grant_that_allows(rest: RestClient, kms: Any, identities: Identities):
    user = identities.principal()
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    grant = kms.create_grant(KeyId=key_id, GranteePrincipal=user.arn, Operations=["Encrypt"])

    answer = explain(rest, principal_arn=user.arn, action="kms:Encrypt", key_id=key_id)

    assert answer["grants"] == [grant["GrantId"]]
    assert answer["evaluated_grants"][0]["applies"] is True


def test_explaining_needs_permission(service: Service, identities: Identities, key_id):
    user = identities.principal(policies={"EncryptOnly": policy(allow("kms:Encrypt"))})
    client = RestClient(service, user.access_key_id, user.secret)

    about_admin = client.post(
        "/v1/authz/explain", {"principal_arn": ADMIN_ARN, "action": "kms:Decrypt", "key_id": key_id}
    )
    about_self = client.post(
        "/v1/authz/explain", {"principal_arn": user.arn, "action": "kms:Decrypt", "key_id": key_id}
    )

    assert_error(about_admin, 403, "AccessDeniedException")
    assert_error(about_self, 403, "AccessDeniedException")  # needs kms:GetKeyPolicy


# ==== the identity admin API ===============================================================
def test_the_admin_api_creates_a_working_identity(rest: RestClient, service: Service):
    account = "".join(str(d) for d in [5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7])
    response = rest.post("/v1/iam/accounts", {"account_id": account, "name": "apps"})
    assert response.status_code in (201, 409), response.text
    created = rest.post(
        "/v1/iam/principals",
        {
            "account_id": account,
            "name": f"svc-{service.runtime.clock.now().timestamp():.0f}",
            "type": "role",
            "policies": {"Kms": KMS_ALL},
        },
    )
    assert created.status_code == 201, created.text
    principal = created.json()
    assert principal["type"] == "role" and principal["policies"] == {"Kms": KMS_ALL}

    pair = rest.post(f"/v1/iam/principals/{principal['arn']}/access-keys")
    assert pair.status_code == 201, pair.text
    client = service.client(
        "kms",
        access_key_id=pair.json()["access_key_id"],
        secret_access_key=pair.json()["secret_access_key"],
    )
    key_id = client.create_key()["KeyMetadata"]["KeyId"]
    client.encrypt(KeyId=key_id, Plaintext=b"x")

    deleted = rest.delete(f"/v1/iam/principals/{principal['arn']}/policies/Kms")
    assert deleted.status_code == 204
    assert rest.get(f"/v1/iam/principals/{principal['arn']}").json()["policies"] == {}


def test_the_admin_api_designates_trusted_services(rest: RestClient, identities: Identities):
    principal = identities.principal()

    response = rest.put(
        f"/v1/iam/principals/{principal.arn}/service", {"service_name": "ec2.amazonaws.com"}
    )

    assert response.status_code == 204, response.text
    assert rest.get(f"/v1/iam/principals/{principal.arn}").json()["service_name"] == (
        "ec2.amazonaws.com"
    )


def test_an_account_administers_only_itself(service: Service, identities: Identities):
    account = identities.account()
    admin = identities.principal(account, policies={"Admin": policy(allow("*"))})
    client = RestClient(service, admin.access_key_id, admin.secret)

    own = client.post("/v1/iam/principals", {"account_id": account, "name": "own-user"})
    foreign = client.post("/v1/iam/principals", {"account_id": ACCOUNT_ID, "name": "foreign"})
    new_account = client.post("/v1/iam/accounts", {"account_id": "123412341234"})
    service_trust = client.put(
        f"/v1/iam/principals/{own.json()['arn']}/service", {"service_name": "ec2.amazonaws.com"}
    )

    assert own.status_code == 201, own.text
    assert_error(foreign, 403, "AccessDeniedException")
    assert_error(new_account, 403, "AccessDeniedException")
    assert_error(service_trust, 403, "AccessDeniedException")


def test_identity_administration_needs_an_identity_policy(service: Service, identities: Identities):
    user = identities.principal(policies={"Kms": KMS_ALL})
    client = RestClient(service, user.access_key_id, user.secret)

    response = client.put(f"/v1/iam/principals/{user.arn}/policies/More", {"policy": KMS_ALL})

    body = assert_error(response, 403, "AccessDeniedException")
    assert "iam:PutUserPolicy" in body["message"]


def test_malformed_identity_policies_are_refused(rest: RestClient, identities: Identities):
    user = identities.principal()
    with_principal = policy({**allow(), "Principal": "*"})

    response = rest.put(f"/v1/iam/principals/{user.arn}/policies/Bad", {"policy": with_principal})

    assert_error(response, 400, "MalformedPolicyDocumentException")


# ==== denials and grants under /v1 ========================================================
def test_denials_are_listed_for_auditors(rest: RestClient, identities: Identities, key_id):
    user = identities.principal()
    with pytest.raises(Exception, match="AccessDenied"):
        user.kms.encrypt(KeyId=key_id, Plaintext=b"x")

    response = rest.get("/v1/authz/denials", params={"principal_arn": user.arn})

    assert response.status_code == 200, response.text
    [denial] = response.json()["denials"]
    assert denial["action"] == "kms:Encrypt"
    assert denial["error_code"] == "AccessDeniedException"


def test_grants_under_v1(rest: RestClient, identities: Identities, kms: Any):
    grantee = identities.principal()
    key = kms.create_key()["KeyMetadata"]

    created = rest.post(
        "/v1/grants",
        {"key_id": key["KeyId"], "grantee_principal": grantee.arn, "operations": ["Encrypt"]},
    )
    assert created.status_code == 201, created.text
    grantee.kms.encrypt(KeyId=key["Arn"], Plaintext=b"x")
    listed = rest.get("/v1/grants", params={"key_id": key["KeyId"]}).json()["grants"]
    assert [g["grant_id"] for g in listed] == [created.json()["grant_id"]]

    revoked = rest.delete(
        f"/v1/grants/{created.json()['grant_id']}", params={"key_id": key["KeyId"]}
    )
    assert revoked.status_code == 204, revoked.text
    assert rest.get("/v1/grants", params={"key_id": key["KeyId"]}).json()["grants"] == []


def test_key_policy_bypass_flag_under_v1(rest: RestClient, kms: Any):
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    foreign = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": root("999999999999")},
            "Action": "kms:*",
            "Resource": "*",
        }
    )

    refused = rest.put(f"/v1/keys/{key_id}/policy", {"policy": foreign})
    bypassing = {"policy": foreign, "bypass_policy_lockout_safety_check": True}
    accepted = rest.put(f"/v1/keys/{key_id}/policy", bypassing)

    assert_error(refused, 400, "MalformedPolicyDocumentException")
    assert accepted.status_code == 204, accepted.text


# ==== the CLI ===========================================================================
@pytest.fixture
def cli_env(service: Service, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """The CLI pointed at the test deployment's database and root key."""
    settings = service.runtime.settings
    assert settings.root_key is not None
    monkeypatch.setenv("KEYLEDGER_DATABASE_URL", service.runtime.database_url)
    monkeypatch.setenv("KEYLEDGER_ROOT_KEY", settings.root_key.get_secret_value())
    monkeypatch.setenv("KEYLEDGER_DATA_DIR", str(tmp_path))


def test_the_cli_manages_policies_and_explains(
    cli_env: None, capsys: pytest.CaptureFixture[str], identities: Identities, kms: Any
):
    user = identities.principal()
    key = kms.create_key()["KeyMetadata"]
    explain_args = [
        "authz",
        "explain",
        "--principal",
        user.arn,
        "--action",
        "kms:Encrypt",
        "--key",
        key["Arn"],
    ]

    assert cli.main(explain_args) == 1
    assert "ImplicitDeny" in capsys.readouterr().out
    assert (
        cli.main(
            [
                "principals",
                "put-policy",
                "--principal",
                user.arn,
                "--name",
                "Kms",
                "--document",
                KMS_ALL,
            ]
        )
        == 0
    )
    assert cli.main(explain_args) == 0
    out = capsys.readouterr().out
    assert "Allow: the Allow statement 'Enable IAM User Permissions' of the key policy" in out
    assert cli.main(["principals", "show", user.arn]) == 0
    assert json.loads(capsys.readouterr().out)["policies"] == {"Kms": KMS_ALL}


def test_the_cli_designates_a_service_principal(
    cli_env: None, capsys: pytest.CaptureFixture[str], identities: Identities
):
    principal = identities.principal()

    assert (
        cli.main(
            [
                "principals",
                "set-service",
                "--principal",
                principal.arn,
                "--service",
                "ec2.amazonaws.com",
            ]
        )
        == 0
    )

    assert "trusted as ec2.amazonaws.com" in capsys.readouterr().out
