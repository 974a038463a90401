"""Schemathesis over the REST API's OpenAPI document (``/openapi.json``).

Every operation of the document is fuzzed with schemathesis's generated cases, positive
(fitting the schema) and negative (not fitting it), a second time with a real key in the
``key_id`` path parameter (so cases get past the lookup), each request signed with SigV4
as the API requires. Every answer is held to `tools.chaos.checks.CallChecks` (no 5xx,
errors as ``{"__type", "message"}``, a rejected request leaves the ledger unchanged).
Schemathesis's own conformance checks (status codes and response bodies against the
document) are reported as figures: the document is the service's own description, and a
mismatch is worth reading, not a broken promise to a client.
"""

from __future__ import annotations

import time
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.errors import HypothesisException
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tools.chaos.checks import CallChecks, Issues, LedgerWatch
from tools.chaos.clients import Reply, Signer
from tools.chaos.fixtures import Fixtures
from tools.chaos.harness import Harness, log


class SigV4Auth(requests.auth.AuthBase):
    """Signs each prepared request (method, URL with query, Content-Type, body)."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        raw = request.body or b""
        body = raw.encode() if isinstance(raw, str) else raw if isinstance(raw, bytes) else b""
        headers: dict[str, str] = {}
        content_type = request.headers.get("Content-Type")
        if content_type:
            headers["Content-Type"] = str(content_type)
        signed = self.signer.sign(request.method or "GET", request.url or "", body, headers)
        for name in ("X-Amz-Date", "Authorization"):
            request.headers[name] = signed[name]
        return request


def _header(headers: dict[str, list[str]], name: str) -> str:
    for key, values in headers.items():
        if key.lower() == name and values:
            return values[0]
    return ""


def fuzz_rest(h: Harness) -> None:
    profile = h.profile
    base_url = h.service.endpoint
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    watch = LedgerWatch(h.service.postgres)
    checks = CallChecks(watch)
    conformance = Issues()
    unsent = Issues()
    invalid = Issues()  # operations schemathesis could not read from the document
    ungenerated = Issues()  # (operation, mode) pairs schemathesis generated no case for
    session = requests.Session()
    auth = SigV4Auth(Signer(h.service.creds))
    deadline = time.monotonic() + profile.fuzz_budget_s
    covered: set[str] = set()
    total = 0
    kms = h.kms()
    try:
        fixtures = Fixtures.create(kms, f"rest-{h.run_id}")
        watch.since()
        # Each operation gets an equal share of the budget left, and its first case even
        # past it: on a slow machine every operation is still fuzzed, each less deeply.
        operations = list(schema.get_all_operations())
        for number, result in enumerate(operations):
            total += 1
            if not isinstance(result, Ok):
                invalid.add(f"{type(result.err()).__name__}: {result.err()}")
                continue
            operation = result.ok()
            left = max(0.0, deadline - time.monotonic())
            operation_deadline = time.monotonic() + left / (len(operations) - number)
            names = {p.name for p in operation.path_parameters}
            fixed = [None] + ([{"key_id": fixtures.symmetric}] if "key_id" in names else [])
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                for path_parameters in fixed:
                    strategy = operation.as_strategy(
                        generation_mode=mode, path_parameters=path_parameters
                    )
                    try:
                        _run_cases(
                            h,
                            strategy,
                            session,
                            auth,
                            checks,
                            conformance,
                            unsent,
                            operation_deadline,
                        )
                    except HypothesisException as error:  # nothing to generate in this mode
                        ungenerated.add(f"{operation.label} {mode}: {type(error).__name__}")
            covered.add(operation.label)
    finally:
        session.close()
        watch.close()
        kms.close()
    log(
        f"fuzz (REST): {checks.calls:,} calls over {len(covered)}/{total} operations; "
        f"statuses {dict(sorted(checks.statuses.items()))}"
    )
    report = h.report
    report.invariant(
        "fuzz REST",
        "operations fuzzed",
        total > 0 and len(covered) == total,
        f"{len(covered)}/{total} ({checks.calls:,} calls)",
    )
    for name, issues in checks.invariants().items():
        report.issues("fuzz REST", name, issues, of=checks.calls)
    report.figure(
        "fuzz REST", "answers that do not match the OpenAPI document", f"{conformance.count:,}"
    )
    report.figure("fuzz REST", "cases the HTTP client could not send", f"{unsent.count:,}")
    report.figure("fuzz REST", "operation x mode with no case to generate", f"{ungenerated.count}")
    report.issues("fuzz REST", "operations the OpenAPI document describes badly", invalid)
    report.figures["fuzz_rest"] = checks.as_json() | {
        "schema_conformance": conformance.as_json(),
        "unsent": unsent.as_json(),
    }


def _run_cases(
    h: Harness,
    strategy: Any,
    session: requests.Session,
    auth: SigV4Auth,
    checks: CallChecks,
    conformance: Issues,
    unsent: Issues,
    deadline: float,
) -> None:
    base_url = h.service.endpoint
    timeout = min(h.profile.request_timeout_s, 10.0)
    tried: list[bool] = []  # the first case runs whatever the deadline

    @settings(
        max_examples=h.profile.rest_examples,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
        print_blob=False,
    )
    @hypothesis_seed(h.rng.randrange(2**31))
    @given(case=strategy)
    def run(case: Any) -> None:
        if time.monotonic() > deadline and tried:
            return
        tried.append(True)
        what = f"{case.method.upper()} {case.formatted_path}"
        sent = time.monotonic()
        try:
            response = case.call(base_url=base_url, session=session, auth=auth, timeout=timeout)
        except (requests.Timeout, requests.ConnectionError) as error:
            status = -1 if isinstance(error, requests.Timeout) else 0
            failed = Reply(status, b"", "", sent, time.monotonic(), repr(error))
            checks.check(what, failed, aws_json=False, request_bytes=0)
            return
        except Exception as error:  # the client refused what was generated (a bad header...)
            unsent.add(f"{what}: {type(error).__name__}: {error}")
            return
        reply = Reply(
            response.status_code,
            response.content,
            _header(response.headers, "x-amzn-requestid"),
            sent,
            time.monotonic(),
        )
        sent_bytes = len(response.request.body or b"") + len(response.request.url or "")
        checks.check(what, reply, aws_json=False, request_bytes=sent_bytes)
        try:
            case.validate_response(
                response,
                checks=[not_a_server_error, status_code_conformance, response_schema_conformance],
            )
        except FailureGroup as failures:
            conformance.add(f"{what} -> {response.status_code}: {failures.exceptions[0]}")
        except AssertionError as failure:
            conformance.add(f"{what} -> {response.status_code}: {failure}")

    run()
