"""A model-driven fuzzer over every AWS JSON operation of botocore's KMS model.

For each operation, hypothesis draws requests from strategies built from the operation's
input shape: valid-ish ones (the fixtures' ids, enums from the model, values within the
model's lengths and ranges, optional members at random) and invalid ones (one mutation of
a valid-ish request: a required member dropped, a member of the wrong JSON type, a string
or list past its maximum or below its minimum, a value outside its enum or range, bad
base64, an unknown member, hostile text; or a body that is not a JSON object at all).
Every answer is held to `tools.chaos.checks.CallChecks` (no 5xx, AWS's error shape, a
rejected request leaves the ledger unchanged). Failures are recorded, not raised, so
hypothesis neither stops nor shrinks.
"""

from __future__ import annotations

import json
import time
from typing import Any

from botocore.model import Shape
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from tools.chaos.checks import CallChecks, LedgerWatch
from tools.chaos.clients import KMS_TARGET_PREFIX, KmsClient, kms_model
from tools.chaos.fixtures import Fixtures
from tools.chaos.harness import Harness, log
from tools.chaos.hostile import hostile_texts
from tools.chaos.shapes import Requests, members_of, required_of, to_wire

MAX_ITEMS = 3
MAX_TEXT = 40
# Run last: they can take the fixtures out of service for the operations after them.
DESTRUCTIVE = (
    "PutKeyPolicy",
    "RevokeGrant",
    "RetireGrant",
    "DeleteAlias",
    "DisableKey",
    "DeleteImportedKeyMaterial",
    "ScheduleKeyDeletion",
)
NOT_OBJECTS: tuple[bytes, ...] = (
    b"",
    b"{",
    b"[]",
    b"null",
    b'"text"',
    b"42",
    b"{}" * 2,
    b'{"a":1,"a":2}',
    b"\xff\xfe",
    b"[" * 5_000 + b"]" * 5_000,
    b'{"x":' + b"1" * 5_000 + b"}",
    b'{"x":1e999}',
)


class Strategies:
    """Hypothesis strategies for one operation's members, in wire form (JSON values)."""

    def __init__(self, requests: Requests, operation: str) -> None:
        self.requests = requests
        self.operation = operation

    def member(self, name: str, shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
        semantic = to_wire(shape, self.requests.value(self.operation, name, shape))
        return st.one_of(st.just(semantic), self.generic(shape, depth))

    def generic(self, shape: Shape, depth: int = 0) -> st.SearchStrategy[Any]:
        kind = shape.type_name
        low = shape.metadata.get("min")
        high = shape.metadata.get("max")
        if kind == "string":
            enum = getattr(shape, "enum", None)
            if enum:
                return st.sampled_from(list(enum))
            low_n = int(low or 0)
            return st.text(
                min_size=low_n, max_size=max(low_n, min(int(high or MAX_TEXT), MAX_TEXT))
            )
        if kind == "blob":
            low_n = int(low or 0)
            top = max(low_n, min(int(high or 64), 64))
            return st.binary(min_size=low_n, max_size=top).map(lambda b: to_wire(shape, b))
        if kind in ("integer", "long"):
            return st.integers(
                int(low) if low is not None else -(2**31), int(high) if high is not None else 2**31
            )
        if kind == "boolean":
            return st.booleans()
        if kind == "timestamp":
            return st.integers(0, 2**33)
        if depth > 4:
            return st.just({} if kind in ("structure", "map") else [])
        if kind == "list":
            member = shape.member  # type: ignore[attr-defined]
            return st.lists(
                self.member(member.name, member, depth + 1),
                min_size=int(low or 0),
                max_size=max(int(low or 0), MAX_ITEMS),
            )
        if kind == "map":
            return st.dictionaries(
                self.generic(shape.key, depth + 1),  # type: ignore[attr-defined]
                self.generic(shape.value, depth + 1),  # type: ignore[attr-defined]
                max_size=MAX_ITEMS,
            )
        if kind == "structure":
            return self.structure(shape, depth + 1)
        return st.none()

    def structure(self, shape: Shape, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
        members = members_of(shape)
        required = set(required_of(shape))
        return st.fixed_dictionaries(
            {name: self.member(name, members[name], depth) for name in required},
            optional={
                name: self.member(name, m, depth)
                for name, m in members.items()
                if name not in required
            },
        )


def _mutate(data: st.DataObject, shape: Shape, request: dict[str, Any], texts: list[str]) -> str:
    """Apply one invalidating change to ``request`` (in place); return what it was."""
    members = members_of(shape)
    required = [n for n in required_of(shape) if n in request]
    names = list(members)
    kinds = ["wrong-type", "unknown-member", "hostile"]
    if required:
        kinds.append("drop-required")
    if names:
        kinds += ["too-long", "too-short", "bad-enum", "out-of-range", "bad-base64"]
    kind = data.draw(st.sampled_from(kinds), label="mutation")
    if kind == "drop-required":
        name = data.draw(st.sampled_from(required))
        del request[name]
        return f"without {name}"
    if kind == "unknown-member":
        request["ChaosUnknownMember"] = data.draw(st.sampled_from([1, "x", [], {}]))
        return "unknown member"
    if not names:
        request["ChaosUnknownMember"] = data.draw(st.sampled_from(texts))
        return "unknown member with hostile text"
    name = data.draw(st.sampled_from(names), label="member")
    member = members[name]
    low, high = member.metadata.get("min"), member.metadata.get("max")
    wrong: Any
    if kind == "wrong-type":
        wrong = data.draw(
            st.sampled_from([0, -1, 1.5, "text", [], {}, True, None, [None], {"a": {}}])
        )
    elif kind == "hostile":
        wrong = data.draw(st.sampled_from(texts))
    elif kind == "too-long" and high is not None:
        size = int(high) + data.draw(st.integers(1, 64))
        wrong = ["x"] * size if member.type_name == "list" else "x" * size
        if member.type_name == "blob":
            wrong = to_wire(member, b"x" * size)
        elif member.type_name in ("integer", "long"):
            wrong = size
    elif kind == "too-short" and low:
        wrong = [] if member.type_name == "list" else ""
        if member.type_name in ("integer", "long"):
            wrong = int(low) - 1
    elif kind == "bad-enum" and getattr(member, "enum", None):
        wrong = data.draw(st.sampled_from(["NOT_AN_ENUM", "", "symmetric_default", "\x00"]))
    elif kind == "out-of-range" and member.type_name in ("integer", "long"):
        wrong = data.draw(st.sampled_from([2**31, 2**63, -(2**63) - 1, 10**30, -1]))
    elif kind == "bad-base64" and member.type_name == "blob":
        wrong = data.draw(st.sampled_from(["%%%", "A", "====", "\u00e9t\u00e9", "QUJD\n"]))
    else:
        wrong = data.draw(st.sampled_from([0, "text", [], {}, None]))
        kind = "wrong-type"
    request[name] = wrong
    return f"{kind} {name}={_short(wrong)}"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}...({len(text):,} chars)"


def fuzz_kms(h: Harness) -> None:
    profile = h.profile
    client = h.kms(timeout=min(profile.request_timeout_s, 10.0))
    watch = LedgerWatch(h.service.postgres)
    checks = CallChecks(watch)
    texts = [t for name, t in hostile_texts(300).items() if name != "huge-ascii"]
    deadline = time.monotonic() + profile.fuzz_budget_s
    covered: set[str] = set()
    try:
        fixtures = Fixtures.create(client, f"fuzz-{h.run_id}")
        requests = Requests(fixtures)
        watch.since()
        names = sorted(kms_model().operation_names, key=lambda n: (n in DESTRUCTIVE, n))
        for operation in names:
            if time.monotonic() > deadline:
                break
            _fuzz_operation(h, client, checks, requests, operation, texts, deadline)
            covered.add(operation)
    finally:
        watch.close()
        client.close()
    total = len(kms_model().operation_names)
    log(
        f"fuzz (AWS JSON): {checks.calls:,} calls over {len(covered)}/{total} operations; "
        f"statuses {dict(sorted(checks.statuses.items()))}"
    )
    report = h.report
    report.invariant(
        "fuzz AWS JSON",
        "operations fuzzed",
        len(covered) == total,
        f"{len(covered)}/{total} ({checks.calls:,} calls)",
        sorted(set(names) - covered)[:5],
    )
    for name, issues in checks.invariants().items():
        report.issues("fuzz AWS JSON", name, issues, of=checks.calls)
    report.figures["fuzz_aws_json"] = checks.as_json()


def _fuzz_operation(
    h: Harness,
    client: KmsClient,
    checks: CallChecks,
    requests: Requests,
    operation: str,
    texts: list[str],
    deadline: float,
) -> None:
    shape = kms_model().operation_model(operation).input_shape
    strategies = Strategies(requests, operation)
    target = KMS_TARGET_PREFIX + operation

    @settings(
        max_examples=h.profile.kms_examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=False,
    )
    @hypothesis_seed(h.seed + sum(map(ord, operation)))
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        if time.monotonic() > deadline:
            return
        mode = data.draw(st.sampled_from(["valid", "invalid", "invalid", "not-an-object"]))
        if mode == "not-an-object" or shape is None:
            body = data.draw(st.sampled_from(NOT_OBJECTS))
            what = f"{operation} body {body[:20]!r}"
        else:
            request = data.draw(strategies.structure(shape))
            what = f"{operation} valid-ish"
            if mode == "invalid":
                what = f"{operation} {_mutate(data, shape, request, texts)}"
            body = json.dumps(request).encode()
        checks.check(what, client.send(target, body), aws_json=True, request_bytes=len(body))

    run()
