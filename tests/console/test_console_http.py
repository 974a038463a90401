"""The auditor's console over real HTTP: sign-in, its session cookie and CSRF tokens,
who sees what, escaping, and the records its use leaves (docs/console.md)."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote

import httpx

from tests.access.conftest import Identities, Principal, allow, policy
from tests.audit.conftest import records
from tests.conftest import Service
from tests.console.conftest import Console, signed_in
from tests.support.waiting import eventually


def _set_cookie(response: httpx.Response, name: str) -> str:
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert headers, f"no {name} cookie set"
    return headers[0]


def _trail(service: Service, event_name: str, principal: Principal) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def recorded() -> bool:
        found[:] = [
            r
            for r in records(service.client("cloudtrail"), "EventName", event_name)
            if r["userIdentity"].get("arn") == principal.arn
        ]
        return bool(found)

    assert eventually(recorded, timeout=10), f"no {event_name} record of {principal.arn}"
    return found


def test_sign_in_with_a_wrong_secret_is_refused_and_opens_no_session(
    console: Console, auditor: Principal
) -> None:
    answer = console.sign_in(auditor.access_key_id, "not-the-secret")

    assert answer.status_code == 401
    assert "Sign-in failed" in answer.text
    assert "keyledger_console=" not in answer.headers.get("set-cookie", "")
    assert console.get("/keys").status_code == 303


def test_a_failed_sign_in_is_recorded_as_a_console_login_failure(
    service: Service, console: Console, auditor: Principal
) -> None:
    console.sign_in(auditor.access_key_id, "not-the-secret")

    (record,) = _trail(service, "ConsoleLogin", auditor)
    assert record["eventSource"] == "signin.amazonaws.com"
    assert record["eventType"] == "AwsConsoleSignIn"
    assert record["responseElements"] == {"ConsoleLogin": "Failure"}
    assert record["errorMessage"] == "Failed authentication"


def test_sign_in_sets_an_http_only_same_site_strict_session_cookie(
    console: Console, auditor: Principal
) -> None:
    answer = console.sign_in(auditor.access_key_id, auditor.secret)

    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/keys"
    cookie = _set_cookie(answer, "keyledger_console").lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie
    assert "max-age=900" in cookie  # the idle bound (console_idle_seconds)
    assert "secure" not in cookie  # plain HTTP here; over TLS the cookie is Secure


def test_a_successful_sign_in_is_recorded_as_console_login(
    service: Service, auditor: Principal
) -> None:
    signed_in(service, auditor)

    (record,) = _trail(service, "ConsoleLogin", auditor)
    assert record["eventType"] == "AwsConsoleSignIn"
    assert record["responseElements"] == {"ConsoleLogin": "Success"}
    assert "errorCode" not in record
    assert record["userIdentity"]["accessKeyId"] == auditor.access_key_id


def test_pages_redirect_to_sign_in_without_a_session(console: Console) -> None:
    for path in ("/keys", "/trail", "/reports", "/ledger", "/keys/anything"):
        answer = console.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == "/console/sign-in"


def test_a_forged_or_altered_session_cookie_is_no_session(
    service: Service, auditor: Principal
) -> None:
    console = signed_in(service, auditor)
    token = console.http.cookies["keyledger_console"]
    altered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    console.http.cookies.clear()
    console.http.cookies.set("keyledger_console", altered, path="/console")

    assert console.get("/keys").status_code == 303


def test_sign_in_without_its_csrf_token_is_refused(console: Console, auditor: Principal) -> None:
    console.get("/sign-in")  # sets the CSRF cookie; the form field is left out below
    answer = console.http.post(
        "/console/sign-in",
        data={"access_key_id": auditor.access_key_id, "secret_access_key": auditor.secret},
    )

    assert answer.status_code == 403
    assert "keyledger_console=" not in answer.headers.get("set-cookie", "")


def test_sign_out_needs_the_sessions_csrf_token(service: Service, auditor: Principal) -> None:
    console = signed_in(service, auditor)

    refused = console.http.post("/console/sign-out", data={"csrf": "guessed"})
    assert refused.status_code == 403
    assert console.get("/keys").status_code == 200  # still signed in

    token = console.csrf("/keys")
    signed_out = console.http.post("/console/sign-out", data={"csrf": token})
    assert signed_out.status_code == 303
    assert console.get("/keys").status_code == 303
    _trail(service, "ConsoleSignOut", auditor)


def test_pages_carry_a_strict_content_security_policy(service: Service, auditor: Principal) -> None:
    console = signed_in(service, auditor)

    for path in ("/sign-in", "/keys", "/trail", "/reports", "/ledger"):
        answer = console.get(path)
        assert "default-src 'self'" in answer.headers["content-security-policy"], path
        assert "unsafe-inline" not in answer.headers["content-security-policy"]
        assert answer.headers["x-frame-options"] == "DENY"
        assert "<script>" not in answer.text  # no inline script: only src='self'


def test_a_principal_sees_only_the_keys_it_may_read(
    service: Service, identities: Identities, auditor: Principal
) -> None:
    own = auditor.kms  # the auditor may not create keys: an administrator of its account does
    other = identities.principal(identities.account(), policies={"All": policy(allow())})
    theirs = other.kms.create_key(Description="another account's key")["KeyMetadata"]["KeyId"]
    writer = identities.principal(auditor.account_id, policies={"All": policy(allow())})
    mine = writer.kms.create_key(Description="my account's key")["KeyMetadata"]["KeyId"]
    del own

    console = signed_in(service, auditor)
    listing = console.get("/keys").text

    assert mine in listing
    assert theirs not in listing
    opened = console.get(f"/keys/{theirs}")
    assert opened.status_code == 404
    assert "another account" not in opened.text


def test_a_principal_without_permission_is_told_so_and_sees_no_key(
    service: Service, identities: Identities
) -> None:
    writer = identities.principal(identities.account(), policies={"All": policy(allow())})
    key_id = writer.kms.create_key(Description="secret plans")["KeyMetadata"]["KeyId"]
    nobody = identities.principal(writer.account_id, policies={})

    console = signed_in(service, nobody)
    listing = console.get("/keys")
    opened = console.get(f"/keys/{key_id}")

    assert key_id not in listing.text
    assert "not authorized" in listing.text.lower() or "accessdenied" in listing.text.lower()
    assert "secret plans" not in opened.text


def test_hostile_descriptions_tags_and_policies_are_escaped(
    service: Service, identities: Identities
) -> None:
    admin = identities.principal(
        identities.account(),
        policies={"All": policy(allow(), allow("cloudtrail:LookupEvents"))},
    )
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    key_id = admin.kms.create_key(
        Description=hostile, Tags=[{"TagKey": "t<b>", "TagValue": hostile}]
    )["KeyMetadata"]["KeyId"]
    key_policy = json.loads(admin.kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    key_policy["Statement"][0]["Sid"] = hostile
    admin.kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(key_policy))

    console = signed_in(service, admin)
    pages = [console.get("/keys").text, console.get(f"/keys/{key_id}").text]

    for page in pages:
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert "&lt;script&gt;alert(" in page
    assert "t&lt;b&gt;" in pages[1]


def test_opening_a_key_is_recorded_as_the_api_calls_it_makes(
    service: Service, identities: Identities, auditor: Principal
) -> None:
    writer = identities.principal(auditor.account_id, policies={"All": policy(allow())})
    key_id = writer.kms.create_key(Description="audited view")["KeyMetadata"]["KeyId"]

    console = signed_in(service, auditor)
    page = console.get(f"/keys/{key_id}")

    assert page.status_code == 200
    described = _trail(service, "DescribeKey", auditor)
    assert any(r["requestParameters"] == {"keyId": key_id} for r in described)
    _trail(service, "ListGrants", auditor)


def test_who_can_decrypt_as_of_a_date_uses_the_policy_the_key_had_then(
    service: Service, identities: Identities
) -> None:
    account = identities.account()
    admin = identities.principal(
        account, policies={"All": policy(allow(), allow("cloudtrail:LookupEvents"))}
    )
    later = identities.principal(account, name=f"added-later-{uuid.uuid4().hex[:6]}", role=True)
    key_id = admin.kms.create_key(Description="as of")["KeyMetadata"]["KeyId"]
    document = json.loads(admin.kms.get_key_policy(KeyId=key_id, PolicyName="default")["Policy"])
    document["Statement"].append(
        {
            "Sid": "AddedLater",
            "Effect": "Allow",
            "Principal": {"AWS": later.arn},
            "Action": "kms:Decrypt",
            "Resource": "*",
        }
    )
    admin.kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps(document))
    created = next(iter(service.runtime.service.keys.history.history(uuid.UUID(key_id)))).timestamp

    console = signed_in(service, admin)
    now = console.get(f"/keys/{key_id}").text
    then = console.get(f"/keys/{key_id}", as_of=created.isoformat()).text

    assert later.arn in now.split('id="access"')[1].split("As of a date")[0]
    access_then = then.split("As of a date")[1].split("<h4>")[0]
    assert later.arn not in access_then
    assert "identity policies as they are now" in access_then


def test_hostile_paths_and_queries_never_fail_the_console(
    service: Service, auditor: Principal
) -> None:
    console = signed_in(service, auditor)
    odd = ["\x00", "%00", "x" * 5000, "alias/../../etc", "💥" * 300, "'\"><svg onload=1>", " "]
    in_paths = [quote(value, safe="/") for value in odd]
    paths = [f"/keys/{value}" for value in in_paths] + [f"/reports/{value}" for value in in_paths]
    queries = (
        [("/keys", {"q": value, "state": value, "marker": value, "spec": value}) for value in odd]
        + [
            ("/trail", {"next_token": value, "start": value, "end": value, "event_name": value})
            for value in odd
        ]
        + [("/reports/unused-keys", {"days": value}) for value in odd]
        + [("/reports/cost", {"month": value}) for value in odd]
        + [("/reports/who-can-decrypt", {"key": value}) for value in odd]
        + [("/trail", {"start": "2026-02-01", "end": "2026-01-01"})]
    )

    answers = [console.http.get("/console" + path) for path in paths]
    answers += [console.get(path, **params) for path, params in queries]

    assert [a.status_code for a in answers if a.status_code >= 500] == []
    for answer in answers:
        assert "<svg onload" not in answer.text


def test_a_sign_in_with_an_unknown_access_key_is_refused_without_a_record(
    console: Console,
) -> None:
    answer = console.sign_in("AKLGNOSUCHKEY0000001", "whatever")

    assert answer.status_code == 401
    assert "Sign-in failed" in answer.text
