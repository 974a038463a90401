"""Legitimate Encrypt throughput under a flood: none, no-op, and unknown access key ids.

Starts ``keyledger run --workers N`` on a temporary data dir (embedded PostgreSQL, a root
key of its own), runs a closed-loop Encrypt load (tools.bench.bench's SigV4 client, keep-alive)
and, beside it in another process, an open-loop flood at a fixed rate:

* ``noop``: ``GET /healthz``, what the HTTP stack costs;
* ``unknown``: ``POST /`` Encrypt signed (in form only) with a fresh random access key id
  each time, from the load's own address (127.0.0.1);
* ``unknown-spread``: the same from many loopback addresses (127.0.x.y), one per flood
  connection, as a flood from many hosts would come.

Prints, per phase, Encrypt ops/s and p50/p99 and what the flood was answered (with
``--rounds N`` the phases run N times in turn, and the medians are printed too: on a busy
machine, compare phases of one round). ``--cost`` also runs each flood alone and prints
the CPU time the service (its processes and its PostgreSQL's) spent per flood request, a
figure that other load on the machine disturbs far less. Loopback only; every phase is
bounded (warm-up + duration), and so is start-up. With PYTHONPATH set to another
checkout, the service runs that checkout's code (e.g. the commit before a change).

    python -m tools.flood --rate 3000 --duration 6 --rounds 3 --cost
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import multiprocessing
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tools.bench import bench
from tools.bench.scenarios import Server, _code_version, _cpu_model, _venv_script

REGION = "us-east-1"
ACCOUNT_ID = "111122223333"
ACCESS_KEY_ID = "AKLGFLOODTOOL0000001"
SECRET_ACCESS_KEY = "flood-secret-" + "f" * 27
PHASES = ("none", "noop", "unknown", "unknown-spread")
_TYPE = re.compile(rb'"__type":\s*"([A-Za-z]+)"')


@dataclass
class FloodResult:
    """What an open-loop flood sent and how it was answered."""

    offered_per_s: float
    seconds: float = 0.0
    sent: int = 0
    answered: int = 0
    answers: dict[str, int] = field(default_factory=dict)  # "400 ThrottlingException": n
    behind_ms_p99: float = 0.0  # how late sends left their schedule (the flood fell behind)


@dataclass
class PhaseResult:
    phase: str
    encrypt_ops_per_s: float
    p50_ms: float
    p99_ms: float
    encrypt_errors: int
    flood: FloodResult | None


# --- the flood (a process of its own) ---------------------------------------------------
def _unknown_id_request(host_header: str) -> bytes:
    """An Encrypt signed in form only, by an access key id nobody was ever issued."""
    key_id = "AKLG" + base64.b32encode(os.urandom(10)).decode()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    body = b'{"KeyId":"alias/flood","Plaintext":"Zmxvb2Q="}'
    auth = (
        f"AWS4-HMAC-SHA256 Credential={key_id}/{stamp[:8]}/{REGION}/kms/aws4_request, "
        f"SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature={'0' * 64}"
    )
    return (
        f"POST / HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/x-amz-json-1.1\r\n"
        f"X-Amz-Target: TrentService.Encrypt\r\nX-Amz-Date: {stamp}\r\n"
        f"Authorization: {auth}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _healthz_request(host_header: str) -> bytes:
    return f"GET /healthz HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode()


async def _read_answer(reader: asyncio.StreamReader) -> str:
    head = await reader.readuntil(b"\r\n\r\n")
    status = head[9:12].decode()
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    found = _TYPE.search(body)
    return f"{status} {found.group(1).decode()}" if found else status


async def _flood_connection(
    kind: str,
    port: int,
    source: str,
    period: float,
    first: float,
    until: float,
    answers: Counter[str],
    late: list[float],
) -> int:
    """One connection sending at ``first``, ``first + period``, ... until ``until``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    host = f"127.0.0.1:{port}"
    build = _healthz_request if kind == "noop" else _unknown_id_request
    sent, due = 0, first
    try:
        while due < until:
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late.append(-delay)
            writer.write(build(host))
            sent += 1
            answers[await _read_answer(reader)] += 1
            due += period
    finally:
        writer.close()
    return sent


async def _flood(
    kind: str, port: int, rate: float, connections: int, start: float, stop: float
) -> FloodResult:
    answers: Counter[str] = Counter()
    late: list[float] = []
    period = connections / rate
    runs = []
    for index in range(connections):
        # "unknown-spread": each connection from an address of its own in 127.0.0.0/8.
        source = (
            f"127.0.{index // 250 + 1}.{index % 250 + 2}"
            if kind.endswith("spread")
            else "127.0.0.1"
        )
        first = start + index * period / connections
        runs.append(_flood_connection(kind, port, source, period, first, stop, answers, late))
    sent = await asyncio.gather(*runs, return_exceptions=True)
    late.sort()
    return FloodResult(
        offered_per_s=rate,
        seconds=stop - start,
        sent=sum(s for s in sent if isinstance(s, int)),
        answered=sum(answers.values()),
        answers=dict(answers.most_common()),
        behind_ms_p99=late[int(len(late) * 0.99)] * 1e3 if late else 0.0,
    )


def _flood_process(
    kind: str, port: int, rate: float, connections: int, start: float, stop: float, out: Any
) -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    out.put(asdict(asyncio.run(_flood(kind, port, rate, connections, start, stop))))


# --- the service and the phases --------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _service(tmp: Path, workers: int) -> Server:
    port = _free_port()
    keyledger = _venv_script("keyledger")
    argv = [keyledger] if keyledger else [sys.executable, "-m", "app"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYLEDGER_", "AWS_"))}
    env |= {
        "KEYLEDGER_DATA_DIR": str(tmp / "data"),
        "KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "KEYLEDGER_BOOTSTRAP_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "KEYLEDGER_DEFAULT_ACCOUNT_ID": ACCOUNT_ID,
        "KEYLEDGER_DEFAULT_REGION": REGION,
        "KEYLEDGER_HOST": "127.0.0.1",
        "KEYLEDGER_PORT": str(port),
        "KEYLEDGER_LOG_LEVEL": "warning",
        # The flood measures the failed-authentication budget, not the request quotas.
        "KEYLEDGER_QUOTAS": "off",
        "HOME": str(tmp),
    }
    argv += ["run", "--port", str(port), "--workers", str(workers)]
    return Server("keyledger", argv, env, port, "/readyz", tmp, workers=workers)


def _stack_cpu(server: Server, data_dir: Path) -> float:
    """CPU seconds the service has used so far: keyledger's processes and its PostgreSQL's
    (whose postmaster runs in a session of its own, found by its data directory)."""
    processes = {}
    roots = [psutil.Process(server.pid)]
    for found in psutil.process_iter(["cmdline"]):
        if str(data_dir) in " ".join(found.info["cmdline"] or []):
            roots.append(found)
    for root in roots:
        with contextlib.suppress(psutil.Error):
            for process in (root, *root.children(recursive=True)):
                processes[process.pid] = process
    total = 0.0
    for process in processes.values():
        with contextlib.suppress(psutil.Error):
            times = process.cpu_times()
            total += times.user + times.system
    return total


def _start_flood(
    kind: str, server: Server, args: argparse.Namespace, seconds: float
) -> tuple[multiprocessing.process.BaseProcess, Any, float]:
    """The flood in a process of its own, from a second from now for ``seconds``."""
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    start = time.time() + 1.0
    flood = context.Process(
        target=_flood_process,
        args=(kind, server.port, args.rate, args.flood_connections, start, start + seconds, out),
    )
    flood.start()
    time.sleep(max(0.0, start - time.time()))
    return flood, out, start


def _flood_cost(kind: str, server: Server, args: argparse.Namespace, data_dir: Path) -> float:
    """Server CPU microseconds per flood request, the flood alone (no other load)."""
    flood, out, _ = _start_flood(kind, server, args, args.duration)
    before = _stack_cpu(server, data_dir)
    flooded = FloodResult(**out.get(timeout=args.duration + 60))
    flood.join(timeout=10)
    return (_stack_cpu(server, data_dir) - before) / max(1, flooded.answered) * 1e6


def _phase(
    phase: str, server: Server, body: bytes, args: argparse.Namespace, pool: Any
) -> PhaseResult:
    creds = bench.Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION)
    running = None
    if phase != "none":  # already running when the load warms up, and after it ends
        running = _start_flood(phase, server, args, args.warmup + args.duration + 1.0)
    load = bench.Load(server.target, "Encrypt", (body,), args.connections)
    result = bench.run_loads(
        [load], creds, duration=args.duration, warmup=args.warmup, pool=pool, processes=1
    )[0]
    flooded = None
    if running is not None:
        flood, out, _ = running
        flooded = FloodResult(**out.get(timeout=60))
        flood.join(timeout=10)
    return PhaseResult(
        phase,
        result.ops_per_s,
        result.latency_ms.get("p50", float("nan")),
        result.latency_ms.get("p99", float("nan")),
        result.errors,
        flooded,
    )


def _table(results: list[PhaseResult]) -> str:
    lines = [f"{'phase':<16}{'Encrypt ops/s':>14}{'p50 ms':>9}{'p99 ms':>9}  flood answered"]
    for r in results:
        answered = "-"
        if r.flood is not None:
            rate = r.flood.answered / max(1e-9, r.flood.seconds)
            kinds = ", ".join(f"{name} {count}" for name, count in r.flood.answers.items())
            answered = f"~{rate:,.0f}/s of {r.flood.offered_per_s:,.0f}/s offered ({kinds})"
        measured = f"{r.encrypt_ops_per_s:>14,.0f}{r.p50_ms:>9.1f}{r.p99_ms:>9.1f}"
        lines.append(f"{r.phase:<16}{measured}  {answered}")
    phases = dict.fromkeys(r.phase for r in results)
    if len(results) > len(phases):
        lines.append("medians over the rounds:")
        for phase in phases:
            mine = [r for r in results if r.phase == phase]
            ops, p50, p99 = (
                statistics.median(getattr(r, name) for r in mine)
                for name in ("encrypt_ops_per_s", "p50_ms", "p99_ms")
            )
            lines.append(f"{phase:<16}{ops:>14,.0f}{p50:>9.1f}{p99:>9.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.flood", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=3000.0, help="flood requests per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per phase")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=2, help="keyledger run --workers")
    parser.add_argument("--connections", type=int, default=32, help="Encrypt connections")
    parser.add_argument("--flood-connections", type=int, default=64)
    parser.add_argument(
        "--phases", default=",".join(PHASES), help="comma-separated: " + ", ".join(PHASES)
    )
    parser.add_argument("--rounds", type=int, default=1, help="run the phases this many times")
    parser.add_argument(
        "--cost",
        action="store_true",
        help="also run each flood alone and report the service's CPU time per flood request",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    unknown = set(phases) - set(PHASES)
    if unknown:
        parser.error(f"unknown phase(s): {', '.join(sorted(unknown))}")
    with tempfile.TemporaryDirectory(prefix="keyledger-flood-") as tmp_name:
        server = _service(Path(tmp_name), args.workers)
        server.start(timeout=120)
        pool = bench.process_pool(1)
        try:
            creds = bench.Credentials(ACCESS_KEY_ID, SECRET_ACCESS_KEY, REGION)
            _, bodies = bench.setup_key(server.target, creds)
            # Rounds of every phase in turn, so that a busy spell of the machine does not
            # fall on one phase only.
            results = [
                _phase(phase, server, bodies["Encrypt"], args, pool)
                for _round in range(args.rounds)
                for phase in phases
            ]
            floods = [phase for phase in phases if phase != "none"] if args.cost else []
            costs = {
                kind: statistics.median(
                    _flood_cost(kind, server, args, Path(tmp_name)) for _ in range(args.rounds)
                )
                for kind in floods
            }
        finally:
            pool.shutdown(cancel_futures=True)
            server.stop()
    # PYTHONPATH names the checkout the service runs when it is not this one.
    code = os.environ.get("PYTHONPATH") or f"commit {_code_version()}"
    header = f"{code} on {_cpu_model()} ({os.cpu_count()} CPUs); " + (
        f"--workers {args.workers}, {args.connections} Encrypt connections, flood "
        f"{args.rate:,.0f}/s over {args.flood_connections} connections, {args.duration:g} s "
        f"a phase, {args.rounds} round(s)"
    )
    print(header)
    print(_table(results))
    for kind, cost in costs.items():
        print(f"{kind} flood alone: the service spent {cost:,.0f} us of CPU a request")
    if args.json:
        document = {"header": header, "results": [asdict(r) for r in results], "cpu_us": costs}
        args.json.write_text(json.dumps(document, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
