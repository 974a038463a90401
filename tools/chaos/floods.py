"""Floods beside legitimate load, and oversized bodies.

The legitimate load (unpaced, a few connections) is measured three times for the same
duration: alone, beside a no-op flood (``GET /healthz``) and beside a flood of Encrypt
calls signed with random unknown access key ids, both floods at the same rate from a
process of their own (so the harness's GIL does not throttle the legitimate load).
Unknown ids must all be refused (4xx, never 5xx, never 2xx).

Oversized bodies (1-50 MB actually sent, and a few that declare a huge Content-Length
and send 1 MB of it) go to the AWS protocol and to the REST API while the load runs: the
service must refuse them (413) before reading them, not read them whole nor wait for a
body that never comes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import multiprocessing
import random
import select
import socket
import statistics
import string
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tools.bench.bench import Credentials
from tools.chaos.checks import LedgerWatch
from tools.chaos.clients import JSON_CONTENT_TYPE, KMS_TARGET_PREFIX, Signer
from tools.chaos.harness import Harness, log
from tools.chaos.load import percentile

UNKNOWN_REQUESTS = 2_000  # distinct unknown access key ids, sent in turn
FLOOD_START_DELAY_S = 3.0  # the flood process builds its requests meanwhile
CHUNK = 1 << 20
HUGE_CLAIM = 10 << 30  # the Content-Length a huge claim declares
ANSWER_WAIT_S = 5.0
REFUSAL_RECORD_BOUND = 4096  # bytes: a record of a caller the service could not identify


# --- the flood process ----------------------------------------------------------------------
@dataclass(frozen=True)
class FloodSpec:
    kind: str  # "healthz" or "unknown-ids"
    host: str
    port: int
    rate: float
    connections: int
    seconds: float
    start_at: float  # time.time() to begin
    key_id: str
    region: str
    seed: int


@dataclass
class FloodResult:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    seconds: float = 0.0
    p99_ms: float | None = None


def _unknown_id_requests(spec: FloodSpec) -> list[bytes]:
    rng = random.Random(spec.seed)
    alphabet = string.ascii_uppercase + string.digits
    body = json.dumps({"KeyId": spec.key_id, "Plaintext": "Zmxvb2Q="}).encode()
    url = f"http://{spec.host}:{spec.port}/"
    requests = []
    for _ in range(UNKNOWN_REQUESTS):
        creds = Credentials(
            "AKIA" + "".join(rng.choices(alphabet, k=16)),
            "".join(rng.choices(alphabet, k=40)),
            spec.region,
        )
        headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": KMS_TARGET_PREFIX + "Encrypt"}
        signed = Signer(creds).sign("POST", url, body, headers)
        lines = [
            "POST / HTTP/1.1",
            f"Host: {spec.host}:{spec.port}",
            f"Content-Length: {len(body)}",
        ]
        lines += [f"{name}: {value}" for name, value in signed.items()]
        requests.append(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return requests


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """(status, server closes) of one response, its body read and dropped."""
    head = (await reader.readuntil(b"\r\n\r\n")).lower()
    status = int(head[9:12])
    closes = b"\r\nconnection: close" in head
    marker = head.find(b"\r\ncontent-length:")
    if marker >= 0:
        end = head.find(b"\r\n", marker + 2)
        await reader.readexactly(int(head[marker + 17 : end]))
    elif b"chunked" in head:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status, closes


async def _flood(spec: FloodSpec, requests: list[bytes]) -> FloodResult:
    result = FloodResult()
    statuses: collections.Counter[int] = collections.Counter()
    latencies: list[float] = []
    await asyncio.sleep(max(0.0, spec.start_at - time.time()))
    start = time.monotonic()
    end = start + spec.seconds
    interval = spec.connections / spec.rate

    async def lane(index: int) -> None:
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        next_at = start + index / spec.rate
        turn = index
        while (now := time.monotonic()) < end:
            if next_at > now:
                await asyncio.sleep(next_at - now)
            next_at = max(next_at + interval, time.monotonic() - 1.0)
            try:
                if stream is None:
                    stream = await asyncio.wait_for(
                        asyncio.open_connection(spec.host, spec.port), 2.0
                    )
                reader, writer = stream
                sent = time.monotonic()
                writer.write(requests[turn % len(requests)])
                turn += spec.connections
                result.sent += 1
                status, closes = await asyncio.wait_for(_read_answer(reader), 5.0)
                latencies.append(1e3 * (time.monotonic() - sent))
                statuses[status] += 1
                if closes:
                    writer.close()
                    stream = None
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
                result.failures += 1
                if stream is not None:
                    stream[1].close()
                stream = None
                await asyncio.sleep(0.05)
        if stream is not None:
            stream[1].close()

    await asyncio.gather(*(lane(i) for i in range(spec.connections)))
    result.seconds = time.monotonic() - start
    result.statuses = dict(statuses)
    result.p99_ms = percentile(sorted(latencies), 0.99)
    return result


def flood_worker(spec: FloodSpec) -> FloodResult:
    """Run one flood (in a process of its own)."""
    if spec.kind == "healthz":
        requests = [f"GET /healthz HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n\r\n".encode()]
    else:
        requests = _unknown_id_requests(spec)
    return asyncio.run(_flood(spec, requests))


def _warm(_: int) -> int:
    return 0


# --- the scenario ---------------------------------------------------------------------------
FLOOD_CONDITIONS = (
    ("no flood", ""),
    ("no-op flood (GET /healthz)", "healthz"),
    ("unknown-id flood", "unknown-ids"),
)


def floods(h: Harness) -> None:
    """Each condition in turn, ``flood_rounds`` times (a slow spell of the machine then
    touches every condition alike); the medians are reported and judged."""
    profile = h.profile
    figures: dict[str, object] = {
        "flood_rate": profile.flood_rate,
        "legit_connections": profile.flood_load_threads,
        "rounds": profile.flood_rounds,
    }
    rounds: dict[str, list[dict[str, Any]]] = {kind or "none": [] for _, kind in FLOOD_CONDITIONS}
    context = multiprocessing.get_context("spawn")
    watch = LedgerWatch(h.service.postgres)
    with contextlib.closing(watch), ProcessPoolExecutor(1, mp_context=context) as pool:
        pool.submit(_warm, 0).result(timeout=60)
        for _ in range(profile.flood_rounds):
            for label, kind in FLOOD_CONDITIONS:
                rounds[kind or "none"].append(_one_condition(h, pool, watch, label, kind))
    for kind, measured in rounds.items():
        figures[kind] = {
            **measured[-1],
            "legit_ops_per_s": round(statistics.median(m["legit_ops_per_s"] for m in measured), 1),
            "legit_ops_per_s_each_round": [m["legit_ops_per_s"] for m in measured],
        }
    h.report.figures["floods"] = figures
    _judge_target(h, figures)


def _one_condition(
    h: Harness, pool: ProcessPoolExecutor, watch: LedgerWatch, label: str, kind: str
) -> dict[str, Any]:
    """Legitimate load beside one flood condition (none, no-op, unknown ids), judged."""
    profile = h.profile
    start_at = time.time() + FLOOD_START_DELAY_S
    spec = FloodSpec(
        kind,
        "127.0.0.1",
        h.service.port,
        profile.flood_rate,
        profile.flood_connections,
        profile.flood_seconds,
        start_at,
        h.keys[0],
        h.service.creds.region,
        h.rng.randrange(2**31),
    )
    future = pool.submit(flood_worker, spec) if kind else None
    begin = time.monotonic() + (start_at - time.time())
    head = watch.current_head()
    with h.load(rate=0, threads=profile.flood_load_threads):
        time.sleep(max(0.0, begin - time.monotonic()) + profile.flood_seconds)
    stats = h.recorder.window(begin + 0.5, begin + profile.flood_seconds)
    flood = future.result(timeout=profile.flood_seconds + 60) if future else None
    if flood is not None and kind == "unknown-ids":
        _judge_records(h, flood, *watch.records_since(head))
    shown = f"{stats.ops_per_s:,.0f} ops/s, p99 {_ms(stats.p99_ms)}"
    if flood is not None:
        achieved = flood.sent / max(flood.seconds, 1e-9)
        shown += f" (flood {achieved:,.0f} req/s, p99 {_ms(flood.p99_ms)})"
    log(f"flood: legitimate load beside {label}: {shown}")
    h.report.figure("floods", f"legit beside {label}", shown)
    if flood is not None:
        _judge_flood(h, label, kind, flood)
    return {
        "legit_ops_per_s": round(stats.ops_per_s, 1),
        "legit_p99_ms": stats.p99_ms,
        "legit_p50_ms": stats.p50_ms,
        "legit_failed": stats.failed,
        "flood": None
        if flood is None
        else {
            "sent": flood.sent,
            "statuses": flood.statuses,
            "failures": flood.failures,
            "p99_ms": flood.p99_ms,
        },
    }


def _judge_target(h: Harness, figures: dict[str, object]) -> None:
    """Issue 11: under a flood of random unknown ids, legitimate throughput stays at least
    as high as under a no-op flood of the same rate (medians of the rounds)."""
    noop, unknown = figures.get("healthz"), figures.get("unknown-ids")
    if not isinstance(noop, dict) or not isinstance(unknown, dict):
        return
    share = unknown["legit_ops_per_s"] / max(noop["legit_ops_per_s"], 1e-9)
    shown = (
        f"{unknown['legit_ops_per_s']:,.0f} vs {noop['legit_ops_per_s']:,.0f} ops/s ({share:.2f}x)"
    )
    h.report.figure("floods", "legit beside unknown-id flood / beside no-op flood", shown)
    target = h.profile.flood_target_share
    if target is not None:
        h.report.invariant(
            "floods",
            f"flood target: unknown-id flood leaves >= {target:.0%} of the no-op"
            " flood's legitimate throughput",
            share >= target,
            shown,
        )


def _judge_flood(h: Harness, label: str, kind: str, flood: FloodResult) -> None:
    server_errors = sum(n for status, n in flood.statuses.items() if status >= 500)
    h.report.invariant(
        "floods",
        f"{label}: no 5xx",
        server_errors == 0,
        f"{server_errors:,} of {flood.sent:,}; statuses {dict(sorted(flood.statuses.items()))}",
    )
    if kind == "unknown-ids":
        admitted = sum(n for status, n in flood.statuses.items() if status < 400)
        h.report.invariant(
            "floods",
            "unknown access key ids all refused (4xx)",
            admitted == 0,
            f"{admitted:,} admitted",
        )


def _judge_records(h: Harness, flood: FloodResult, records: int, largest: int) -> None:
    """What refusals of unknown access key ids cost the ledger: at most one record of
    constant size each (the caller is unknown: nothing it sent is kept)."""
    h.report.figure(
        "floods",
        "ledger records per unknown-id request",
        f"{records / max(flood.sent, 1):.2f} ({records:,} for {flood.sent:,}), "
        f"largest {largest:,} B",
    )
    h.report.invariant(
        "floods",
        f"unknown-id refusals: at most one record each, of <= {REFUSAL_RECORD_BOUND:,} bytes",
        records <= flood.sent and largest <= REFUSAL_RECORD_BOUND,
        f"{records:,} records for {flood.sent:,} requests, largest {largest:,} bytes",
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


# --- oversized bodies -----------------------------------------------------------------------
@dataclass
class Oversized:
    target: str  # "AWS JSON" or "REST"
    size: int  # bytes the harness would send
    declared: int  # its Content-Length
    sent: int = 0  # bytes sent before the server answered or stopped reading
    status: int = 0  # -1: no answer within ANSWER_WAIT_S after sending
    seconds: float = 0.0

    @property
    def refused(self) -> bool:
        """413, or any refusal that came before the whole declared body was read."""
        if self.status == 413:
            return True
        return self.status >= 400 and self.sent < self.declared

    def describe(self) -> str:
        answer = "no answer" if self.status <= 0 else str(self.status)
        return (
            f"{self.target} {self.size / 2**20:.0f} MB (declared {self.declared:,}): "
            f"{answer} after {self.sent / 2**20:.1f} MB sent, {self.seconds:.2f} s"
        )


def _send_big(h: Harness, target: str, size: int, declared: int) -> Oversized:
    port = h.service.port
    body = b"A" * size
    if target == "REST":
        path, headers = "/v1/keys", {"Content-Type": "application/json"}
    else:
        path = "/"
        headers = {"Content-Type": JSON_CONTENT_TYPE, "X-Amz-Target": KMS_TARGET_PREFIX + "Encrypt"}
    signed = Signer(h.service.creds).sign("POST", h.service.endpoint + path, body, headers)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {declared}"]
    head = ("\r\n".join(lines + [f"{k}: {v}" for k, v in signed.items()]) + "\r\n\r\n").encode()
    result = Oversized(target, size, declared)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_WAIT_S) as sock:
        try:
            sock.sendall(head)
            view = memoryview(body)
            while result.sent < size:
                if select.select([sock], [], [], 0)[0]:
                    break  # the server answered (or hung up) before the end of the body
                sock.sendall(view[result.sent : result.sent + CHUNK])
                result.sent += min(CHUNK, size - result.sent)
        except OSError:
            pass  # reset, or the server stopped reading for ANSWER_WAIT_S
        try:
            answer = sock.recv(4096)
            result.status = int(answer[9:12]) if answer.startswith(b"HTTP/") else 0
        except (OSError, ValueError):
            result.status = -1
    result.seconds = time.monotonic() - started
    return result


def oversized(h: Harness) -> None:
    profile = h.profile
    results: list[Oversized] = []
    with h.load():
        time.sleep(0.5)
        rss_before = h.service.rss_mb()
        plan = [(mb << 20, mb << 20) for mb in profile.oversized_mb]
        plan += [(CHUNK, HUGE_CLAIM)] * profile.huge_claims
        for index, (size, declared) in enumerate(plan):
            target = "AWS JSON" if index % 2 == 0 else "REST"
            with contextlib.suppress(OSError):
                found = _send_big(h, target, size, declared)
                results.append(found)
                log(f"oversized: {found.describe()}")
        rss_after = h.service.rss_mb()
    refused = [r for r in results if r.refused]
    h.report.invariant(
        "floods",
        "oversized bodies refused (413) before being read",
        bool(results) and len(refused) == len(results),
        f"{len(refused)}/{len(results)}",
        [r.describe() for r in results if not r.refused],
    )
    h.report.figure(
        "floods", "service RSS across oversized bodies", f"{rss_before:.0f} -> {rss_after:.0f} MiB"
    )
    h.report.figures["oversized"] = {
        "rss_before_mib": round(rss_before, 1),
        "rss_after_mib": round(rss_after, 1),
        "requests": [r.__dict__ | {"refused": r.refused} for r in results],
    }
