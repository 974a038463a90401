"""Hostile text in every string member of every AWS JSON operation.

For each operation of botocore's KMS model and each string leaf of its input (tags,
descriptions, aliases, policies, grant names and constraints, encryption context keys and
values, retiring principals, enums, ids...), the harness sends the operation's valid
request with that one member replaced by hostile text: NUL, lone surrogates, bidi
overrides, stacks of combining marks, non-characters (U+FFFF...), emoji sequences, a
mix of all, and a huge string. Policies also get the text inside a valid document. Every
call is held to `tools.chaos.checks.CallChecks`; a call that succeeds carries the text
to the projections (key directory, grants, aliases, audit trail), and a refused one to
the audit trail through its record.

Then a marker: a key created after the hostile calls must appear in the audit trail
(``GET /v1/audit/events`` and CloudTrail's ``LookupEvents``) and in ``ListKeys`` within
a bound, and every projection must reach the ledger's head: none stalled on what it read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import botocore.session
from botocore.serialize import create_serializer

from tools.chaos.checks import CallChecks, LedgerWatch
from tools.chaos.clients import KMS_TARGET_PREFIX, KmsClient, RestClient, Signer, kms_model
from tools.chaos.fixtures import Fixtures, expect
from tools.chaos.harness import Harness, log
from tools.chaos.shapes import Requests, show_path, string_paths

POLICY_PATH = ("Policy",)
HUGE_ASCII_CHARS = 480_000  # just under the service's 512 KiB body limit
NO_ANSWER_LIMIT = 5  # consecutive calls without an answer: the service is stuck, stop


def hostile_texts(huge_chars: int) -> dict[str, str]:
    return {
        "nul": "chaos\x00nul\x00",
        "surrogate": "lone \ud800 and \udfff surrogates",
        "bidi": "\u202eevil\u202c \u2066isolate\u2069 \u200frtl\u200e",
        "combining": "e" + "\u0301\u0308\u0327\u0338" * 64,
        "nonchar": "\uffff\ufffe\U0010ffff\ufdd0\U0001fffe",
        "emoji": "\U0001f600\U0001f469\u200d\U0001f469\u200d\U0001f467"
        "\U0001f3f3\ufe0f\u200d\U0001f308",
        # Everything but a lone surrogate (which gets a whole request refused at parsing).
        "mixed": "h\x00\u202e\u0301\uffff\U0001f600\u2028\u0085\x1b[31m'\"\\;--",
        "huge": ("\u00e9\U0001f600Z" * (huge_chars // 3 + 1))[:huge_chars],
        "huge-ascii": "Z" * HUGE_ASCII_CHARS,
    }


def policy_with(fixtures: Fixtures, text: str) -> str:
    """The fixture key's policy plus a statement carrying ``text`` (a valid document)."""
    document: dict[str, Any] = json.loads(fixtures.policy)
    document.setdefault("Statement", []).append(
        {
            "Sid": text,
            "Effect": "Allow",
            "Principal": {"AWS": fixtures.admin_arn},
            "Action": "kms:DescribeKey",
            "Resource": "*",
            "Condition": {"StringEquals": {f"kms:EncryptionContext:{text}": text}},
        }
    )
    return json.dumps(document)


def hostile(h: Harness) -> None:
    profile = h.profile
    client = h.kms()
    watch = LedgerWatch(h.service.postgres)
    checks = CallChecks(watch)
    texts = hostile_texts(profile.huge_text_chars)
    try:
        fixtures = Fixtures.create(client, f"hostile-{h.run_id}")
        requests = Requests(fixtures)
        watch.since()
        plan: list[tuple[str, tuple[str, ...], str, dict[str, Any]]] = []
        for operation in kms_model().operation_names:
            shape = kms_model().operation_model(operation).input_shape
            for path in string_paths(shape):
                for variant in profile.hostile_variants:
                    params = requests.with_value(operation, path, texts[variant])
                    plan.append((operation, path, variant, params))
                    if path == POLICY_PATH:
                        document = policy_with(fixtures, texts[variant])
                        plan.append(
                            (
                                operation,
                                path,
                                f"{variant} in a document",
                                requests.with_value(operation, path, document),
                            )
                        )
        deadline = time.monotonic() + profile.fuzz_budget_s * 2
        silent = 0
        done = 0
        members = {(op, path) for op, path, _, _ in plan}
        for operation, path, variant, params in plan:
            if time.monotonic() > deadline or silent >= NO_ANSWER_LIMIT:
                break
            body = client.body_of(operation, params)
            reply = client.send(KMS_TARGET_PREFIX + operation, body)
            what = f"{operation} {show_path(path)}={variant}"
            checks.check(what, reply, aws_json=True, request_bytes=len(body))
            silent = silent + 1 if reply.status <= 0 else 0
            done += 1
        log(
            f"hostile: {done:,} calls over {len(members)} members of "
            f"{len(kms_model().operation_names)} operations; statuses "
            f"{dict(sorted(checks.statuses.items()))}"
        )
        report = h.report
        report.invariant(
            "hostile text",
            "every member of every operation tried",
            done == len(plan),
            f"{done:,}/{len(plan):,} calls, {len(members)} members",
            [] if done == len(plan) else ["stopped: time budget or a service not answering"],
        )
        for name, issues in checks.invariants().items():
            report.issues("hostile text", name, issues, of=checks.calls)
        report.figure(
            "hostile text", "refused calls without a record", f"{checks.unrecorded().count:,}"
        )
        h.report.figures["hostile"] = checks.as_json()
        _marker(h, client, checks.call_of)
    finally:
        watch.close()
        client.close()


def _marker(h: Harness, client: KmsClient, call_of: Callable[[str], str]) -> None:
    """A key created after the hostile calls: in the trail and in ListKeys, within a bound."""
    bound = h.profile.marker_bound_s
    created = client.call("CreateKey", {"Description": "chaos marker"})
    marker = str(expect(created, "CreateKey (marker)")["KeyMetadata"]["KeyId"])
    started = time.monotonic()
    rest = h.rest()
    in_trail = in_lookup = in_list = None
    try:
        while time.monotonic() - started < bound and None in (in_trail, in_lookup, in_list):
            now = time.monotonic() - started
            if in_trail is None and _in_rest_trail(rest, marker, created.request_id):
                in_trail = now
            if in_lookup is None and _in_lookup_events(client, marker, created.request_id):
                in_lookup = now
            if in_list is None and _in_list_keys(client, marker):
                in_list = now
            time.sleep(0.2)
    finally:
        rest.close()
    report = h.report

    def shown(value: float | None) -> str:
        return f"{value:.2f} s" if value is not None else f"not within {bound:g} s"

    report.invariant(
        "hostile text", "marker in GET /v1/audit/events", in_trail is not None, shown(in_trail)
    )
    report.invariant(
        "hostile text", "marker in LookupEvents", in_lookup is not None, shown(in_lookup)
    )
    report.invariant("hostile text", "marker key in ListKeys", in_list is not None, shown(in_list))
    stalled = _stalled_projections(h, bound, call_of)
    report.invariant(
        "hostile text",
        "projections reach the ledger's head",
        not stalled,
        ", ".join(stalled) or "all",
        stalled,
    )
    h.report.figures["marker"] = {
        "trail_s": in_trail,
        "lookup_events_s": in_lookup,
        "list_keys_s": in_list,
        "stalled_projections": stalled,
    }


def _in_rest_trail(rest: RestClient, key_id: str, request_id: str) -> bool:
    reply = rest.request("GET", "/v1/audit/events", query={"key": key_id, "limit": "50"})
    document = reply.json() if reply.status == 200 else None
    events = document.get("events", []) if isinstance(document, dict) else []
    return any(isinstance(e, dict) and e.get("requestID") == request_id for e in events)


def _in_lookup_events(client: KmsClient, key_id: str, request_id: str) -> bool:
    model = botocore.session.get_session().get_service_model("cloudtrail")
    serialized = create_serializer("json", include_validation=False).serialize_to_request(
        {"LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": key_id}]},
        model.operation_model("LookupEvents"),
    )
    target = serialized["headers"]["X-Amz-Target"]
    reply = client.send(target, serialized["body"], signer=Signer(client.creds, "cloudtrail"))
    document = reply.json() if reply.status == 200 else None
    events = document.get("Events", []) if isinstance(document, dict) else []
    for event in events:
        try:
            record = json.loads(event.get("CloudTrailEvent", "{}"))
        except (TypeError, ValueError):
            continue
        if record.get("requestID") == request_id:
            return True
    return False


def _in_list_keys(client: KmsClient, key_id: str) -> bool:
    marker: str | None = None
    for _ in range(100):  # pages
        params: dict[str, Any] = {"Limit": 1000}
        if marker:
            params["Marker"] = marker
        reply = client.call("ListKeys", params)
        document = reply.json() if reply.status == 200 else None
        if not isinstance(document, dict):
            return False
        if any(k.get("KeyId") == key_id for k in document.get("Keys", [])):
            return True
        marker = document.get("NextMarker")
        if not document.get("Truncated") or not marker:
            return False
    return False


def _stalled_projections(
    h: Harness, bound: float, call_of: Callable[[str], str] = lambda _: ""
) -> list[str]:
    """Projections still behind the ledger's head (as it was now) after ``bound`` s, each
    with the event it is stuck before (and the call that appended it, if known)."""
    postgres = h.service.postgres
    with postgres.connect() as conn:
        row = conn.execute(
            "SELECT coalesce(max(notification_id), 0) FROM keyledger_events"
        ).fetchone()
        head = int(row[0]) if row else 0
        deadline = time.monotonic() + bound
        positions: dict[str, int] = {}
        while True:
            rows = conn.execute(
                "SELECT projection_name, notification_id FROM projection_tracking"
            ).fetchall()
            positions = {str(n): int(p or 0) for n, p in rows if int(p or 0) < head}
            if not positions or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        stalled = []
        for name, position in sorted(positions.items()):
            found = conn.execute(
                "SELECT notification_id, topic, originator_id::text FROM keyledger_events"
                " WHERE notification_id > %s ORDER BY notification_id LIMIT 1",
                (position,),
            ).fetchone()
            at = ""
            if found:
                at = f", stuck before #{found[0]} {str(found[1]).rsplit(':', 1)[-1]}"
                call = call_of(str(found[2]))
                at += f" of {call}" if call else ""
            stalled.append(f"{name} ({head - position:,} events behind{at})")
    return stalled
