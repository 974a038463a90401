"""The CPU one KMS call costs KeyLedger's Python request path, without HTTP or PostgreSQL.

``python -m tools.bench.request_profile [--operation Encrypt] [--requests 20000]
[--concurrency 64] [--profile FILE]`` builds the in-memory runtime (the same use cases,
authentication, authorization, auditing and group-commit writer as the service, over the
in-memory event store), signs real SigV4 requests, and calls the AWS JSON handler with
``concurrency`` requests in flight on one event loop, as a worker does. It prints the
process's CPU microseconds per call; ``--profile`` writes a cProfile of the run (read it
with ``python -m pstats FILE``).

The figure leaves out what the suite's CPU per request adds (uvicorn and the socket
writes, psycopg and PostgreSQL, the projections): it isolates the part of issue 17's
budget that is KeyLedger's own code, and is steady enough on a busy machine to compare
two versions of it (process CPU time, not wall time).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import logging
import secrets
import time
from typing import Any

from app.bootstrap import InMemoryRuntime
from app.entrypoints.aws_json.handler import AwsJsonHandler
from app.settings import load_settings
from app.support.logs import configure_logging
from tools.bench.bench import Credentials, _Signer, operation_bodies

REGION = "us-east-1"
HOST = "127.0.0.1:8080"


async def _send_nothing(_message: dict[str, Any]) -> None:
    return None


class _Collect:
    """An ASGI ``send`` that keeps the status and body."""

    def __init__(self) -> None:
        self.status = 0
        self.body = b""

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")


def _scope(signer: _Signer, operation: str, body: bytes) -> dict[str, Any]:
    target = f"TrentService.{operation}"
    amz_date, authorization = signer.prepare(target, body).sign(time.time())
    headers = [
        (b"host", HOST.encode()),
        (b"user-agent", b"keyledger-request-profile"),
        (b"content-type", b"application/x-amz-json-1.1"),
        (b"x-amz-target", target.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-amz-date", amz_date.encode()),
        (b"authorization", authorization.encode()),
    ]
    return {
        "type": "http",
        "method": "POST",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
    }


async def _call(handler: AwsJsonHandler, scope: dict[str, Any], body: bytes) -> _Collect:
    answer = _Collect()
    await handler.answer(scope, body, answer)
    return answer


async def _measure(options: argparse.Namespace) -> tuple[float, int]:
    access_key_id = "AKIA" + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)
    settings = load_settings(test_clock=True, scheduler_interval_seconds=3600)
    runtime = InMemoryRuntime.build(settings)
    await runtime.writer.start_async()  # on this loop, as a worker's writer
    await asyncio.to_thread(  # it waits for the writer: not on the writer's loop
        runtime.identity.ensure_administrator, settings.default_account_id, access_key_id, secret
    )
    handler = AwsJsonHandler(runtime.service, runtime.identity, runtime.auditor, [REGION])
    signer = _Signer(Credentials(access_key_id, secret, REGION), HOST)

    created = await _call(handler, _scope(signer, "CreateKey", b"{}"), b"{}")
    key_id = _json(created)["KeyMetadata"]["KeyId"]
    plaintext = base64.b64encode(b"x" * 64).decode()
    encrypt_body = f'{{"KeyId":"{key_id}","Plaintext":"{plaintext}"}}'.encode()
    encrypted = await _call(handler, _scope(signer, "Encrypt", encrypt_body), encrypt_body)
    body = operation_bodies(key_id, _json(encrypted)["CiphertextBlob"])[options.operation]
    # Signed in advance: the client's signing is not the service's CPU.
    scopes = [_scope(signer, options.operation, body) for _ in range(options.requests)]

    async def lane(start: int) -> int:
        failed = 0
        for index in range(start, options.requests, options.concurrency):
            answer = await _call(handler, scopes[index], body)
            failed += answer.status != 200
        return failed

    profiler = cProfile.Profile() if options.profile else None
    began = time.process_time()
    if profiler is not None:
        profiler.enable()
    failures = await asyncio.gather(*(lane(n) for n in range(options.concurrency)))
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(options.profile)
    cpu = time.process_time() - began
    await runtime.writer.aclose()
    return 1e6 * cpu / options.requests, sum(failures)


def _json(answer: _Collect) -> Any:
    import orjson

    if answer.status != 200:
        raise SystemExit(f"setup call failed: {answer.status} {answer.body!r}")
    return orjson.loads(answer.body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench.request_profile")
    parser.add_argument("--operation", default="Encrypt", help="Encrypt, Decrypt, GenerateDataKey")
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="runs; the least CPU is printed")
    parser.add_argument("--profile", help="write a cProfile of the last round to this file")
    parser.add_argument(
        "--log", action="store_true", help="write the call log lines to stderr, as the service"
    )
    options = parser.parse_args(argv)
    configure_logging("info" if options.log else "warning")
    logging.getLogger("keyledger").setLevel(logging.INFO if options.log else logging.WARNING)
    results = []
    for _ in range(options.rounds):
        per_call, failed = asyncio.run(_measure(options))
        if failed:
            print(f"{failed} calls failed")
            return 1
        results.append(per_call)
    print(
        f"{options.operation}: {min(results):.1f} us CPU per call (rounds: "
        + ", ".join(f"{r:.1f}" for r in results)
        + f"; {options.requests} calls, {options.concurrency} in flight, in-memory store)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
