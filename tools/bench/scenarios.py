"""``python -m tools.bench --suite``: every figure of the hot-path targets, in one table.

A tool, not a test. On a database of its own (a fresh one on the embedded PostgreSQL, or
on the server of ``--database-url``), with a fresh root key and bootstrap credentials, it
starts the real service (``keyledger run``) as a subprocess and moto's server beside it,
then measures, with the load generator of `tools.bench.bench`:

* throughput: Encrypt (64 B), Decrypt and GenerateDataKey on one hot key at 64
  connections (and 1 and 16), the same on moto, and Noop (the HTTP stack's ceiling);
* two service processes on one database driving one hot key at once, then checks in the
  database that the key's stream holds exactly one event per success, versions 1..N;
* a key with ``--history-events`` Used events (appended through the application layer,
  not HTTP), after a restart: start-up time and Encrypt p50 against a fresh key;
* ``--keys`` keys (seeded through the application layer with the service's root key),
  each used once by Encrypt: the service's RSS;
* an event store grown to ``--store-events`` events (seeded server-side from a real Used
  event), after a restart: the figures above again;
* root-key rotation under load (``--phases rotation``, issue 14): the crypto load on the
  hot key while ``keyledger operator rotate-root-key`` re-wraps every wrapping key (the
  seeded keys' too) under a new root key, against the same load after the same rolling
  restart with no rotation running: ops/s, latency percentiles, failed requests, and the
  rotation's own pace.

It prints ONE table (measure | KeyLedger | moto | target | met?) and a profile of every
cell (writer commands per batch, mean commit time, conflicts, CPU), and writes ``--json``.
Every subprocess is stopped and the database dropped at the end, also on failure or
Ctrl-C. Exit status: 0 when every step ran, 1 when one failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import http.client
import json
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.bench import bench
from tools.bench.bench import CellResult, Credentials, Load, Target
from tools.bench.lag import CHECKPOINT_LAG, LagSampler

if TYPE_CHECKING:
    from app.infrastructure.ledger import Ledger
    from domain.actors import Actor

# --- the targets of the hot-path issues (the first wave, then issue 17) -----------------
HOT_CONCURRENCY = 64
TARGET_OPS = 8000.0
TARGET_P99_MS = 20.0
TARGET_MOTO_FACTOR = 15.0
TARGET_CPU_US_PER_ENCRYPT = 180.0  # service processes plus PostgreSQL, per answered Encrypt
TARGET_HISTORY_P50_FACTOR = 1.2
TARGET_STARTUP_S = 5.0
TARGET_RSS_MB = 500.0
CRYPTO_OPERATIONS = ("Encrypt", "Decrypt", "GenerateDataKey")

FULL = {"duration": 60.0, "history": 1_000_000, "store": 10_000_000, "keys": 100_000}
QUICK = {"duration": 5.0, "history": 20_000, "store": 0, "keys": 2_000}
SHORT_CELL_S = 20.0  # secondary cells (c=1, c=16, comparisons) run at most this long
# Events per save when seeding. The recorder inserts in psycopg's pipeline mode, which
# deadlocks once one statement carries more than ~1.2 MB over a unix socket (~25 MB over
# TCP): a Used event is ~0.5 kB, a Created event ~2 kB.
HISTORY_BATCH = 1_000
KEYS_BATCH = 250
STORE_EVENTS_PER_KEY = 1_000  # the store is grown with keys of this many events
STORE_KEYS_PER_STATEMENT = 200
STORE_WORKERS = 2
START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 20.0
PROJECTION_TIMEOUT_S = 900.0
MAX_KEYS_PASS_S = 900.0  # give up using every key once after this long
PROGRESS_EVERY_S = 5.0
TARGET_AUDIT_LAG_S = 1.0
TARGET_CHECKPOINT_LAG_S = 2.0  # newest event not yet under a signed checkpoint (issue 13)
TARGET_LOG_COST = 0.05  # throughput the Merkle log may cost at c=64 (issue 13)
LEDGER_ROUNDS = 2  # log on / log off rounds, interleaved
# After a log-off spell the signer's watch recomputes the events the log then took as its
# recent range, at most WATCH_MAX_EVENTS a pass every WATCH_INTERVAL_S (the defaults of
# projections.ledger_watch.watch_pass and ledger_watch_interval_seconds): a one-off cost of
# the restart, which the cells must not measure as the log's steady cost.
WATCH_MAX_EVENTS = 100_000
WATCH_INTERVAL_S = 10.0
# The notification id of the newest event under a signed checkpoint.
SIGNED_POSITION = (
    "SELECT notification_id FROM ledger_tree_nodes WHERE level = 0"
    " AND index = (SELECT max(size) - 1 FROM ledger_checkpoints)"
)
USED_TOPIC = "domain.keys:Key.Used"
PROJECTIONS = ("key_directory", "audit_trail", "merkle_log")
PHASES = ("throughput", "ledger", "processes", "history", "keys", "store", "rotation")
ROTATION_TIMEOUT_S = 3600.0
REGION = "us-east-1"
ACCOUNT_ID = "111122223333"


def log(message: str) -> None:
    print(f"suite: {message}", file=sys.stderr, flush=True)


# --- options ---------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The suite's options, added to ``python -m tools.bench`` (which owns --duration,
    --json...)."""
    group = parser.add_argument_group("suite (python -m tools.bench --suite)")
    group.add_argument(
        "--suite",
        action="store_true",
        help="start a fresh service, database and moto server and measure every hot-path "
        "target in one table (--duration defaults to 60)",
    )
    group.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 5 s cells, c=64 only, 20k-event history, 2k keys, no store growth",
    )
    group.add_argument(
        "--database-url",
        metavar="URL",
        help="create the suite's database on this server (a role allowed to CREATE DATABASE); "
        "default: the embedded PostgreSQL of --data-dir",
    )
    group.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("KEYLEDGER_DATA_DIR") or ".keyledger"),
        help="embedded PostgreSQL's data dir (default $KEYLEDGER_DATA_DIR or .keyledger)",
    )
    group.add_argument(
        "--history-events", type=int, help="Used events on the long-history key (1,000,000)"
    )
    group.add_argument(
        "--store-events",
        type=int,
        help="grow the event store to this many events, then measure again (10,000,000; 0: skip)",
    )
    group.add_argument("--keys", type=int, help="distinct keys to use (100,000)")
    group.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of each service (keyledger run --workers; default 1)",
    )
    group.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run (default all: {','.join(PHASES)}); the "
        "throughput phase always creates the hot key the others use",
    )
    group.add_argument(
        "--short-duration",
        type=float,
        help=f"seconds of the secondary cells (default min(--duration, {SHORT_CELL_S:g}))",
    )


@dataclass(frozen=True)
class Options:
    duration: float
    short: float
    warmup: float
    levels: tuple[int, ...]
    history_events: int
    store_events: int
    keys: int
    processes: int
    timeout: float
    database_url: str | None
    data_dir: Path
    json_path: str | None
    quick: bool
    workers: int = 1
    phases: tuple[str, ...] = PHASES

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Options:
        sizes = QUICK if args.quick else FULL
        duration = float(args.duration if args.duration is not None else sizes["duration"])
        short = args.short_duration or min(duration, SHORT_CELL_S)
        if args.quick:
            levels: tuple[int, ...] = (HOT_CONCURRENCY,)
        else:
            levels = tuple(bench._parse_concurrency(args.concurrency))
            if HOT_CONCURRENCY not in levels:
                levels = (*levels, HOT_CONCURRENCY)

        def size(value: int | None, name: str) -> int:
            return int(sizes[name] if value is None else value)

        options = cls(
            duration=duration,
            short=float(short),
            warmup=float(args.warmup),
            levels=levels,
            history_events=size(args.history_events, "history"),
            store_events=size(args.store_events, "store"),
            keys=size(args.keys, "keys"),
            processes=max(1, int(args.processes)),
            timeout=float(args.timeout),
            database_url=args.database_url,
            data_dir=args.data_dir,
            json_path=args.json,
            quick=bool(args.quick),
            workers=max(1, int(args.workers)),
            phases=tuple(p.strip() for p in str(args.phases).split(",") if p.strip()),
        )
        unknown = set(options.phases) - set(PHASES)
        if unknown:
            raise ValueError(f"unknown --phases {','.join(sorted(unknown))}")
        if options.duration <= 0 or options.short <= 0 or options.warmup < 0:
            raise ValueError("--duration and --short-duration must be > 0, --warmup >= 0")
        if min(options.history_events, options.store_events, options.keys) < 0:
            raise ValueError("--history-events, --store-events and --keys must be >= 0")
        return options


# --- processes -------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A pre-exec hook that makes the child get SIGTERM when the suite dies (Linux).

    prctl is looked up here, in the parent: the child between fork and exec does no lookups.
    """
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook


def _http_get(port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class Server:
    """A server subprocess on 127.0.0.1: started, waited for, measured, stopped."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        port: int,
        ready_path: str,
        logs: Path,
        workers: int = 1,
    ) -> None:
        self.name = name
        self.workers = workers
        self.argv = argv
        self.env = env
        self.port = port
        self.ready_path = ready_path
        self.log_path = logs / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"
        self.target = Target.parse(name, self.url)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT_S) -> float:
        """Spawn; return the seconds from spawn to the first 200 of the ready path."""
        self.stop()
        with open(self.log_path, "ab") as out:
            out.write(f"\n--- {datetime.now(UTC).isoformat()} {' '.join(self.argv)}\n".encode())
            out.flush()
            started = time.perf_counter()
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                cwd=self.log_path.parent,
                start_new_session=True,
                preexec_fn=_die_with_parent_hook(),
            )
        deadline = started + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with status {self.proc.returncode} during start-up:\n"
                    + self.log_tail()
                )
            with contextlib.suppress(OSError, http.client.HTTPException):
                status, _ = _http_get(self.port, self.ready_path, timeout=1.0)
                if status == 200:
                    return time.perf_counter() - started
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout:g} s:\n" + self.log_tail())

    def stop(self) -> None:
        """SIGINT (uvicorn's graceful shutdown), then SIGKILL if it lingers."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                log(f"{self.name} did not stop on {sig.name}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def rss_mb(self) -> float:
        import psutil

        process = psutil.Process(self.pid)
        rss = process.memory_info().rss
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                rss += child.memory_info().rss
        return float(rss) / 2**20

    def cpu_seconds(self) -> float:
        import psutil

        if not self.running():
            return 0.0
        process = psutil.Process(self.pid)
        times = process.cpu_times()
        total = float(times.user + times.system)
        for child in process.children(recursive=True):  # --workers N: the workers
            with contextlib.suppress(psutil.Error):
                child_times = child.cpu_times()
                total += float(child_times.user + child_times.system)
        return total

    def metrics(self) -> dict[str, float]:
        """The service's /metrics values (empty for servers without them). Its counters
        are totals over every worker process (prometheus_client's multiprocess mode), so
        one scrape, whichever worker answers it, is enough."""
        return self._metrics_once()

    def _metrics_once(self) -> dict[str, float]:
        try:
            status, body = _http_get(self.port, "/metrics")
        except (OSError, http.client.HTTPException):
            return {}
        if status != 200:
            return {}
        values: dict[str, float] = {}
        for line in body.decode(errors="replace").splitlines():
            name, _, value = line.partition(" ")
            if name and not name.startswith("#"):
                with contextlib.suppress(ValueError):
                    values[name] = float(value)
        return values


def _venv_script(name: str) -> str | None:
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


# --- the database ----------------------------------------------------------------------
@dataclass
class Database:
    admin_url: str
    name: str
    url: str

    @classmethod
    def create(cls, database_url: str | None, data_dir: Path) -> Database:
        from app.infrastructure.postgres.database import (
            create_database,
            parse_url,
            url_with_database,
        )

        name = f"keyledger_bench_{os.getpid()}_{secrets.token_hex(3)}"
        if database_url:
            admin_url = database_url
            if not parse_url(admin_url).get("dbname"):
                admin_url = url_with_database(admin_url, "postgres")
            return cls(admin_url, name, create_database(admin_url, name))
        from app.infrastructure.postgres.embedded import (
            embedded_admin_url,
            ensure_embedded_database,
        )

        url = ensure_embedded_database(data_dir, name)
        return cls(embedded_admin_url(data_dir), name, url)

    def drop(self) -> None:
        from app.infrastructure.postgres.database import drop_database

        drop_database(self.admin_url, self.name)

    @contextlib.contextmanager
    def connect(self, autocommit: bool = True) -> Iterator[Any]:
        import psycopg

        with psycopg.connect(self.url, autocommit=autocommit) as conn:
            yield conn

    def rows_of(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return [tuple(row) for row in conn.execute(query, params).fetchall()]

    def scalar(self, query: str, params: Sequence[Any] = ()) -> Any:
        with self.connect() as conn:
            row = conn.execute(query, params).fetchone()
            return None if row is None else row[0]

    def event_count(self) -> int:
        return int(self.scalar("SELECT count(*) FROM keyledger_events") or 0)

    def projection_lag(self) -> int:
        head = self.scalar("SELECT max(notification_id) FROM keyledger_events") or 0
        # Both projections: measuring while the audit trail works through a backlog (the
        # events a phase seeded) would put that catch-up in the figures.
        positions = dict(
            self.rows_of(
                "SELECT projection_name, notification_id FROM projection_tracking"
                " WHERE projection_name = ANY(%s)",
                (list(PROJECTIONS),),
            )
        )
        return int(head) - min(int(positions.get(name) or 0) for name in PROJECTIONS)

    def merkle_backlog(self) -> int:
        """Events not under a signed checkpoint (what a log turned back on will take)."""
        head = int(self.scalar("SELECT max(notification_id) FROM keyledger_events") or 0)
        return max(0, head - int(self.scalar(SIGNED_POSITION) or 0))

    def wait_for_merkle_log(self, timeout: float = PROJECTION_TIMEOUT_S) -> float:
        """Seconds until a signed checkpoint covers the head of the log (a service with the
        log off leaves it behind; measuring its catch-up would put that in the figures)."""
        started = time.perf_counter()
        while True:
            head = int(self.scalar("SELECT max(notification_id) FROM keyledger_events") or 0)
            signed = int(self.scalar(SIGNED_POSITION) or 0)
            if signed >= head or time.perf_counter() - started > timeout:
                break
            time.sleep(0.2)
        return time.perf_counter() - started

    def wait_for_projection(self, timeout: float = PROJECTION_TIMEOUT_S) -> float:
        """Seconds until both projections reach the head of the log (gives up, saying
        so, after ``timeout``: the measurements then include the catch-up)."""
        started = time.perf_counter()
        while (behind := self.projection_lag()) > 0:
            if time.perf_counter() - started > timeout:
                log(f"WARNING: projections still {behind:,} events behind after {timeout:g} s")
                break
            time.sleep(0.2)
        return time.perf_counter() - started


# --- measurements ----------------------------------------------------------------------
@dataclass
class Cell:
    """One measured cell: the load generator's result and the service's profile."""

    label: str
    phase: str
    operation: str
    concurrency: int
    target: str
    ops_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int
    ok: int
    all_ok: int
    all_errors: int
    first_error: str | None
    commands_per_batch: float | None = None
    commit_ms: float | None = None
    conflicts: int | None = None
    service_cpu_pct: float | None = None
    #: CPU microseconds per answered request: the service's processes plus PostgreSQL's.
    cpu_us_per_request: float | None = None
    machine_cpu_pct: float | None = None
    client_cpu_pct: float | None = None
    store_events: int | None = None
    audit_lag_p99_s: float | None = None
    audit_lag_max_s: float | None = None
    checkpoint_lag_p99_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Row:
    measure: str
    keyledger: str
    moto: str = ""
    target: str = ""
    met: bool | None = None


def _fmt_ops(value: float) -> str:
    return f"{value:,.0f} ops/s"


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f} ms"


def _summary(cell: Cell) -> str:
    text = f"{_fmt_ops(cell.ops_per_s)}, p50 {_fmt_ms(cell.p50_ms)}, p99 {_fmt_ms(cell.p99_ms)}"
    if cell.cpu_us_per_request is not None:
        text += f", {cell.cpu_us_per_request:,.0f} us cpu/req"
    return text + f", {cell.errors} err"


def _postgres_cpu_seconds() -> float:
    """CPU seconds of every PostgreSQL process on the machine (the postmaster and its
    backends, embedded or not). Backends that exit take their time with them, but the
    service's pools keep theirs for the whole cell."""
    import psutil

    total = 0.0
    for process in psutil.process_iter(["name", "cpu_times"]):
        name = process.info.get("name") or ""
        times = process.info.get("cpu_times")
        if name.startswith("postgres") and times is not None:
            total += float(times.user + times.system)
    return total


def _machine_busy() -> tuple[float, float]:
    import psutil

    times = psutil.cpu_times()
    idle = times.idle + getattr(times, "iowait", 0.0)
    return float(sum(times)) - idle, float(sum(times))


class Suite:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.cells: list[Cell] = []
        self.rows: list[Row] = []
        self.failures: list[str] = []
        self.notes: list[str] = []
        self.stack = contextlib.ExitStack()
        self.tmp = Path(tempfile.mkdtemp(prefix="keyledger-suite-"))
        self.stack.callback(shutil.rmtree, self.tmp, True)
        self.root_key = secrets.token_bytes(32)
        from app.auth.credentials import new_access_key_id, new_secret_access_key

        self.creds = Credentials(new_access_key_id(), new_secret_access_key(), REGION)
        self.moto_creds = Credentials("testing", "testing", REGION)
        self.db: Database | None = None
        self.services: dict[str, Server] = {}
        self.moto: Server | None = None
        self.pool: ProcessPoolExecutor | None = None
        self._ledger: Ledger | None = None
        self._vault: Any = None
        self._vault_pool: Any = None
        # Keys measured in several phases.
        self.hot_key = ""
        self.hot_bodies: dict[str, bytes] = {}
        self.moto_bodies: dict[str, bytes] = {}
        self.history_key = ""
        self.fresh_key = ""
        self.many_keys: list[str] = []
        self.one_process_ops: dict[str, float] = {}
        self.history_seeded = 0
        self.command: list[str] = []  # how to run ``keyledger`` (open() finds it)

    # --- set-up and tear-down --------------------------------------------------------
    def open(self) -> None:
        options = self.options
        log(f"temporary files in {self.tmp}")
        self.db = Database.create(options.database_url, options.data_dir)
        db = self.db
        self.stack.callback(self._drop_database)
        log(f"database {db.name} created (the service migrates it on its first start)")
        workers = max(2, 2 * options.processes)
        self.pool = bench.process_pool(workers)
        self.stack.callback(self.pool.shutdown, True, cancel_futures=True)
        self.stack.callback(self._stop_servers)
        keyledger = _venv_script("keyledger")
        base = [keyledger] if keyledger else [sys.executable, "-m", "app"]
        self.command = base
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")}
        env |= {
            "KEYLEDGER_DATABASE_URL": db.url,
            "KEYLEDGER_ROOT_KEY": base64.b64encode(self.root_key).decode(),
            "KEYLEDGER_BOOTSTRAP_ACCESS_KEY_ID": self.creds.access_key_id,
            "KEYLEDGER_BOOTSTRAP_SECRET_ACCESS_KEY": self.creds.secret_access_key,
            # The default log level, as `keyledger run` starts: every call's line is written
            # (to the cell's log file), a cost every deployment pays. Before 2026-12-07 the
            # suite ran at "warning", so its figures left that cost out.
            "KEYLEDGER_LOG_LEVEL": "info",
            "KEYLEDGER_DATA_DIR": str(self.tmp / "data"),
            "KEYLEDGER_DEFAULT_ACCOUNT_ID": ACCOUNT_ID,
            "KEYLEDGER_DEFAULT_REGION": REGION,
            "KEYLEDGER_HOST": "127.0.0.1",
            # Quotas on (their check is on the measured path) but above any rate measured:
            # the benchmark finds the service's ceiling, not AWS's default quota.
            "KEYLEDGER_QUOTA_RATES": '{"symmetric": 1000000, "CreateKey": 1000}',
        }
        # "keyledger" runs --workers N; the two-process case compares single-process
        # services: "keyledger-1" alone, then beside "keyledger-2".
        # "keyledger-nolog" is "keyledger" without the Merkle log (its cost: ledger phase).
        servers = {
            "keyledger": self.options.workers,
            "keyledger-nolog": self.options.workers,
            "keyledger-1": 1,
            "keyledger-2": 1,
        }
        for name, workers in servers.items():
            port = _free_port()
            argv = [*base, "run", "--port", str(port), "--workers", str(workers)]
            extra = {"KEYLEDGER_LEDGER_LOG": "false"} if name == "keyledger-nolog" else {}
            self.services[name] = Server(
                name,
                argv,
                env | {"KEYLEDGER_PORT": str(port)} | extra,
                port,
                "/readyz",
                self.tmp,
                workers=workers,
            )
        moto = _venv_script("moto_server")
        if moto:
            port = _free_port()
            moto_env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLEDGER_")}
            self.moto = Server(
                "moto", [moto, "-p", str(port)], moto_env, port, "/moto-api/", self.tmp
            )
        else:
            self.notes.append("moto_server not found: moto columns left empty")

    def close(self) -> None:
        self.stack.close()

    def _stop_servers(self) -> None:
        for server in [*self.services.values(), self.moto]:
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()

    def _drop_database(self) -> None:
        if self._ledger is not None:
            with contextlib.suppress(Exception):
                self._ledger.close()
        if self._vault_pool is not None:
            with contextlib.suppress(Exception):
                self._vault_pool.close()
        if self.db is not None:
            try:
                self.db.drop()
                log(f"database {self.db.name} dropped")
            except Exception as error:
                log(f"could not drop database {self.db.name}: {error}")

    @property
    def service(self) -> Server:
        return self.services["keyledger"]

    def start_service(self, label: str, name: str = "keyledger") -> float:
        seconds = self.services[name].start()
        events = self.db.event_count() if self.db else 0
        log(f"{name} ready in {seconds:.2f} s ({label}; store {events:,} events)")
        self.rows.append(
            Row(
                f"start-up to /readyz: {label}",
                f"{seconds:.2f} s ({events:,} events in store)",
                target=f"<= {TARGET_STARTUP_S:g} s",
                met=seconds <= TARGET_STARTUP_S,
            )
        )
        return seconds

    # --- the application layer, in this process ------------------------------------------
    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            from app.infrastructure.ledger import Ledger
            from app.infrastructure.postgres.database import connection_params

            assert self.db is not None
            self._ledger = Ledger(env=connection_params(self.db.url) | {"CREATE_TABLE": "n"})
        return self._ledger

    @property
    def vault(self) -> Any:
        """A Vault with the service's root key (keys seeded here must open in the service)."""
        if self._vault is None:
            from psycopg_pool import ConnectionPool

            from app.infrastructure.vault import Vault

            assert self.db is not None
            self._vault_pool = ConnectionPool(self.db.url, min_size=1, max_size=2, open=True)
            self._vault = Vault(self.root_key, self._vault_pool)
            self._vault.check_root_key()
        return self._vault

    # --- running cells -----------------------------------------------------------------
    def run(
        self,
        label: str,
        phase: str,
        loads: Sequence[Load],
        duration: float,
        servers: Sequence[Server] = (),
    ) -> Cell:
        """Run loads at once; one Cell combining them, with the servers' profile."""
        options = self.options
        before = [s.metrics() for s in servers]
        cpu_before = [s.cpu_seconds() for s in servers]
        postgres_before = _postgres_cpu_seconds()
        busy0, total0 = _machine_busy()
        pool = self.pool if (len(loads) > 1 or options.processes > 1) else None
        # The audit trail's lag behind the ledger while the load runs (issue: p99 <= 1 s).
        with contextlib.ExitStack() as sampling:
            lag = sampling.enter_context(LagSampler(servers[0].url)) if servers else None
            checkpoint_lag = (
                sampling.enter_context(
                    LagSampler(servers[0].url, interval=1.0, metric=CHECKPOINT_LAG)
                )
                if servers
                else None
            )
            results = bench.run_loads(
                loads,
                self.creds if loads[0].target.name != "moto" else self.moto_creds,
                duration=duration,
                warmup=options.warmup,
                timeout=options.timeout,
                processes=options.processes,
                pool=pool,
            )
        busy1, total1 = _machine_busy()
        elapsed = duration + options.warmup
        cell = _combine(label, phase, loads, results, duration)
        cell.machine_cpu_pct = 100.0 * (busy1 - busy0) / max(total1 - total0, 1e-9)
        summary = lag.summary() if lag is not None else None
        if summary is not None:
            cell.audit_lag_p99_s = summary["p99_s"]
            cell.audit_lag_max_s = summary["max_s"]
        checkpoints = checkpoint_lag.summary() if checkpoint_lag is not None else None
        if checkpoints is not None:
            cell.checkpoint_lag_p99_s = checkpoints["p99_s"]
        if servers:
            after = [s.metrics() for s in servers]
            pairs = list(zip(after, before, strict=True))

            def delta(name: str) -> float:
                return sum(a.get(name, 0.0) - b.get(name, 0.0) for a, b in pairs)

            batches = delta("keyledger_writer_batches_total")
            if batches:
                cell.commands_per_batch = delta("keyledger_writer_commands_total") / batches
                cell.commit_ms = 1e3 * delta("keyledger_writer_commit_seconds_total") / batches
            if all(after):
                cell.conflicts = int(delta("keyledger_writer_conflicts_total"))
            cpu = sum(s.cpu_seconds() for s in servers) - sum(cpu_before)
            cell.service_cpu_pct = 100.0 * cpu / elapsed
            postgres_cpu = _postgres_cpu_seconds() - postgres_before
            # The warmup runs at about the measured rate, so requests ~ rate x elapsed.
            requests = cell.ops_per_s * elapsed
            if requests > 0:
                cell.cpu_us_per_request = 1e6 * (cpu + postgres_cpu) / requests
        if self.db is not None and servers:
            cell.store_events = self.db.event_count()
        self.cells.append(cell)
        log(
            f"{label}: {_summary(cell)}"
            + (
                f"; {cell.commands_per_batch:.1f} cmds/batch, commit {cell.commit_ms:.2f} ms"
                if cell.commands_per_batch
                else ""
            )
            + (f"; first error: {cell.first_error}" if cell.first_error else "")
        )
        return cell

    def single(
        self,
        label: str,
        phase: str,
        server: Server,
        operation: str,
        body: bytes,
        conns: int,
        duration: float,
    ) -> Cell:
        load = Load(server.target, operation, (body,), conns)
        return self.run(label, phase, [load], duration, [server] if server is not self.moto else [])

    # --- phases ------------------------------------------------------------------------
    def phase(self, name: str, body: Callable[[], None]) -> None:
        log(f"=== {name}")
        started = time.perf_counter()
        try:
            body()
        except KeyboardInterrupt:
            raise
        except Exception as error:
            first_line = (str(error).strip().splitlines() or [""])[0][:160]
            log(f"FAILED {name}:\n{traceback.format_exc()}")
            self.failures.append(f"{name}: {type(error).__name__}: {first_line}")
            self.rows.append(
                Row(f"{name}: FAILED", f"{type(error).__name__}: {first_line}", met=False)
            )
            for server in self.services.values():
                if server.proc is not None and not server.running():
                    log(f"{server.name} died; its log:\n{server.log_tail()}")
        log(f"=== {name} took {time.perf_counter() - started:.0f} s")

    def create_hot_key(self) -> None:
        """Without the throughput phase: a fresh service and the hot key the others use."""
        self.start_service("fresh database")
        self.hot_key, self.hot_bodies = bench.setup_key(self.service.target, self.creds)

    def throughput(self) -> None:
        options = self.options
        self.start_service("fresh database")
        if self.moto is not None:
            self.moto.start()
        self.hot_key, self.hot_bodies = bench.setup_key(self.service.target, self.creds)
        moto_cells: dict[tuple[str, int], Cell] = {}
        if self.moto is not None:
            _, self.moto_bodies = bench.setup_key(self.moto.target, self.moto_creds)
        for operation in CRYPTO_OPERATIONS:
            for level in options.levels:
                duration = options.duration if level == HOT_CONCURRENCY else options.short
                kl = self.single(
                    f"{operation} c={level}",
                    "fresh",
                    self.service,
                    operation,
                    self.hot_bodies[operation],
                    level,
                    duration,
                )
                moto_cell = None
                if self.moto is not None:
                    moto_cell = self.single(
                        f"moto {operation} c={level}",
                        "fresh",
                        self.moto,
                        operation,
                        self.moto_bodies[operation],
                        level,
                        duration,
                    )
                    moto_cells[(operation, level)] = moto_cell
                size = " (64 B)" if operation == "Encrypt" else ""
                if level == HOT_CONCURRENCY:
                    self.one_process_ops[operation] = kl.ops_per_s
                    met = (
                        kl.ops_per_s >= TARGET_OPS
                        and kl.p99_ms is not None
                        and kl.p99_ms <= TARGET_P99_MS
                        and kl.errors == 0
                    )
                    self.rows.append(
                        Row(
                            f"{operation}{size}, one hot key, c={level}, {duration:g} s",
                            _summary(kl),
                            _summary(moto_cell) if moto_cell else "",
                            f">= {TARGET_OPS:,.0f} ops/s, p99 <= {TARGET_P99_MS:g} ms, no errors",
                            met,
                        )
                    )
                    if operation == "Encrypt" and kl.cpu_us_per_request is not None:
                        self.rows.append(
                            Row(
                                f"CPU per Encrypt, c={level} (service + PostgreSQL)",
                                f"{kl.cpu_us_per_request:,.0f} us",
                                target=f"<= {TARGET_CPU_US_PER_ENCRYPT:g} us",
                                met=kl.cpu_us_per_request <= TARGET_CPU_US_PER_ENCRYPT,
                            )
                        )
                else:
                    self.rows.append(
                        Row(
                            f"{operation}{size}, c={level}, {duration:g} s",
                            _summary(kl),
                            _summary(moto_cell) if moto_cell else "",
                            "(info)",
                        )
                    )
        if self.moto is not None:
            ratios = []
            for operation in CRYPTO_OPERATIONS:
                moto_ops = moto_cells[(operation, HOT_CONCURRENCY)].ops_per_s
                ratio = self.one_process_ops[operation] / moto_ops if moto_ops else math.inf
                ratios.append((operation, ratio))
            self.rows.append(
                Row(
                    f"vs moto's server, same benchmark, same run, c={HOT_CONCURRENCY}",
                    ", ".join(f"{op} {ratio:.1f}x" for op, ratio in ratios),
                    "1x",
                    f">= {TARGET_MOTO_FACTOR:g}x moto's ops/s",
                    all(ratio >= TARGET_MOTO_FACTOR for _, ratio in ratios),
                )
            )
            self.moto.stop()
        noop = self.single(
            f"Noop c={HOT_CONCURRENCY}",
            "fresh",
            self.service,
            "Noop",
            self.hot_bodies["Noop"],
            HOT_CONCURRENCY,
            options.duration,
        )
        hot = [
            c
            for c in self.cells
            if c.phase == "fresh"
            and c.target == "keyledger"
            and c.concurrency == HOT_CONCURRENCY
            and c.operation in CRYPTO_OPERATIONS
        ]
        self._lag_row(
            f"audit trail behind the ledger, crypto cells at c={HOT_CONCURRENCY}",
            [c.audit_lag_p99_s for c in hot],
            TARGET_AUDIT_LAG_S,
        )
        self._lag_row(
            f"newest event not under a signed checkpoint, crypto cells at c={HOT_CONCURRENCY}",
            [c.checkpoint_lag_p99_s for c in hot],
            TARGET_CHECKPOINT_LAG_S,
        )
        self.rows.append(
            Row(
                f"Noop (HTTP stack ceiling, before auth), c={HOT_CONCURRENCY}",
                _summary(noop),
                target="(ceiling)",
            )
        )

    def ledger_cost(self) -> None:
        """The verifiable ledger's cost: the crypto cells at c=64 on the same database by
        the same service with the Merkle log, checkpoints and watch on, then off,
        interleaved for LEDGER_ROUNDS rounds (one service runs at a time)."""
        options = self.options
        on, off = self.service, self.services["keyledger-nolog"]
        means: dict[tuple[str, bool], list[float]] = {}
        for round_ in range(1, LEDGER_ROUNDS + 1):
            for logged, server in ((True, on), (False, off)):
                (off if logged else on).stop()
                backlog = self.db.merkle_backlog() if logged and self.db is not None else 0
                server.start()
                if logged and self.db is not None:
                    waited = self.db.wait_for_merkle_log()
                    log(f"Merkle log caught up and signed in {waited:.1f} s")
                    if backlog:
                        passes = -(-backlog // WATCH_MAX_EVENTS) + 1
                        log(
                            f"waiting {passes} watch passes ({passes * WATCH_INTERVAL_S:g} s):"
                            f" the watch recomputes the {backlog:,} events the log just took"
                        )
                        time.sleep(passes * WATCH_INTERVAL_S)
                for operation in CRYPTO_OPERATIONS:
                    cell = self.single(
                        f"{operation} c={HOT_CONCURRENCY} log {'on' if logged else 'off'}"
                        f" #{round_}",
                        "ledger",
                        server,
                        operation,
                        self.hot_bodies[operation],
                        HOT_CONCURRENCY,
                        options.short,
                    )
                    means.setdefault((operation, logged), []).append(cell.ops_per_s)
        off.stop()
        on.start()
        for operation in CRYPTO_OPERATIONS:
            with_log = sum(means[(operation, True)]) / LEDGER_ROUNDS
            without = sum(means[(operation, False)]) / LEDGER_ROUNDS
            cost = 1.0 - with_log / without if without else 0.0  # < 0: the log ran faster
            self.rows.append(
                Row(
                    f"{operation} c={HOT_CONCURRENCY} with the Merkle log vs without"
                    f" ({LEDGER_ROUNDS} rounds each, interleaved)",
                    f"{with_log:,.0f} vs {without:,.0f} ops/s"
                    f" ({abs(100 * cost):.1f}% {'less' if cost >= 0 else 'more'} with the log)",
                    target=f"<= {100 * TARGET_LOG_COST:g}% less",
                    met=cost <= TARGET_LOG_COST,
                )
            )
        self._lag_row(
            f"newest event not under a signed checkpoint, log-on cells at c={HOT_CONCURRENCY}",
            [
                c.checkpoint_lag_p99_s
                for c in self.cells
                if c.phase == "ledger" and "log on" in c.label
            ],
            TARGET_CHECKPOINT_LAG_S,
        )

    def _lag_row(self, measure: str, p99s: list[float | None], target: float) -> None:
        """One row: the worst cell's p99 lag against ``target`` (none without samples)."""
        found = [lag for lag in p99s if lag is not None]
        if found:
            self.rows.append(
                Row(
                    measure,
                    f"p99 {max(found):.2f} s (worst cell)",
                    target=f"p99 <= {target:g} s",
                    met=max(found) <= target,
                )
            )

    def two_processes(self, tag: str = "") -> None:
        """Two single-process services on one hot key at once, against one of them alone
        under the same load; then check the key's stream."""
        assert self.db is not None
        if self.service.running():
            self.service.stop()  # its workers would compete for the CPU
        first, second = self.services["keyledger-1"], self.services["keyledger-2"]
        first.start()
        try:
            key_uuid = uuid.UUID(self.hot_key)
            half = HOT_CONCURRENCY // 2
            body = self.hot_bodies["Encrypt"]
            # The baseline: the same two load generators, both on the first process.
            baseline = self.run(
                f"one process Encrypt c={half}+{HOT_CONCURRENCY - half}{tag}",
                "two-processes" + tag,
                [
                    Load(first.target, "Encrypt", (body,), half),
                    Load(first.target, "Encrypt", (body,), HOT_CONCURRENCY - half),
                ],
                self.options.duration,
                [first],
            )
            second.start()
            before = self._stream(key_uuid)
            loads = [
                Load(first.target, "Encrypt", (body,), half),
                Load(second.target, "Encrypt", (body,), HOT_CONCURRENCY - half),
            ]
            cell = self.run(
                f"two processes Encrypt c={half}+{HOT_CONCURRENCY - half}{tag}",
                "two-processes" + tag,
                loads,
                self.options.duration,
                [first, second],
            )
            after = self._stream(key_uuid)
        finally:
            second.stop()
            first.stop()
        added = after["count"] - before["count"]
        contiguous = after["min"] == 1 and after["max"] == after["count"] == after["distinct"]
        exact = added == cell.all_ok and cell.all_errors == 0
        unique = after["requests"] is None or after["requests"] == after["used"]
        cell.extra.update(stream_before=before, stream_after=after, events_added=added)
        one = baseline.ops_per_s
        verdict = (
            f"{_fmt_ops(cell.ops_per_s)} (1 process: {_fmt_ops(one)}), p99 "
            f"{_fmt_ms(cell.p99_ms)}, {cell.errors} err; +{added:,} events for "
            f"{cell.all_ok:,} ok"
            + (f" + {cell.all_errors} unknown" if cell.all_errors else "")
            + f", v1..{after['max']:,} {'contiguous' if contiguous else 'WITH GAPS'}"
            + (
                ""
                if after["requests"] is None
                else f", request ids {'unique' if unique else 'DUPLICATED'}"
            )
        )
        met = cell.errors == 0 and contiguous and exact and unique and cell.ops_per_s >= one
        self.rows.append(
            Row(
                f"two service processes, one database, one hot key{tag}",
                verdict,
                target="no errors, no lost or duplicated events, >= one process",
                met=met,
            )
        )

    def _stream(self, key_uuid: uuid.UUID) -> dict[str, Any]:
        assert self.db is not None
        with self.db.connect() as conn:
            row = conn.execute(
                "SELECT count(*), min(originator_version), max(originator_version),"
                " count(DISTINCT originator_version) FROM keyledger_events"
                " WHERE originator_id = %s",
                (key_uuid,),
            ).fetchone()
            used = requests = None
            with contextlib.suppress(Exception):  # the state is plain JSON unless compressed
                used, requests = conn.execute(
                    "SELECT count(*),"
                    " count(DISTINCT convert_from(state, 'UTF8')::jsonb->>'request_id')"
                    " FROM keyledger_events WHERE originator_id = %s AND topic = %s",
                    (key_uuid, USED_TOPIC),
                ).fetchone()
        count, low, high, distinct = row
        return {
            "count": int(count),
            "min": low,
            "max": high,
            "distinct": int(distinct),
            "used": used,
            "requests": requests,
        }

    def history(self) -> None:
        """A key with N Used events, appended through the application layer; restart."""
        options = self.options
        if not self.service.running():
            self.start_service("restart")
        target = self.service.target
        self.history_key = bench.call(
            target, self.creds, "CreateKey", {"Description": "keyledger suite: long history"}
        )["KeyMetadata"]["KeyId"]
        self.fresh_key = bench.call(
            target, self.creds, "CreateKey", {"Description": "keyledger suite: fresh"}
        )["KeyMetadata"]["KeyId"]
        self.service.stop()  # the seeding must not race the service's cache; restart after
        started = time.perf_counter()
        self.history_seeded = self._seed_history(
            uuid.UUID(self.history_key), options.history_events
        )
        seconds = time.perf_counter() - started
        self.rows.append(
            Row(
                f"seeding: {self.history_seeded:,} Used events on one key (application layer)",
                f"{seconds:.1f} s ({self.history_seeded / max(seconds, 1e-9):,.0f} events/s)",
                target="(setup)",
            )
        )
        self.measure_history("")

    def measure_history(self, tag: str) -> None:
        """Restart (cold cache), then Encrypt on the long-history key vs a fresh key."""
        options = self.options
        self.service.stop()
        self.start_service(f"key with {self.history_seeded:,} events{tag}")
        target = self.service.target
        first = self._first_encrypts(target)
        # Measure once the projections have caught up with the seeded events, as the
        # store phase does: a million audit records being written would be in the numbers.
        assert self.db is not None
        log(f"projection caught up {self.db.wait_for_projection():.1f} s after restart")
        self.rows.append(
            Row(
                f"first Encrypt after restart (cold cache){tag}",
                f"history key {first['history']:.1f} ms, fresh key {first['fresh']:.1f} ms",
                target="(info)",
            )
        )
        order = [("history", self.history_key), ("fresh", self.fresh_key)]
        for level in (HOT_CONCURRENCY, 1):
            cells = {}
            order.reverse()  # neither key always goes first
            for name, key_id in order:
                body = bench.operation_bodies(key_id)["Encrypt"]
                cells[name] = self.single(
                    f"Encrypt {name} key c={level}{tag}",
                    "history" + tag,
                    self.service,
                    "Encrypt",
                    body,
                    level,
                    options.short,
                )
            hist, fresh = cells["history"], cells["fresh"]
            ratio = (hist.p50_ms or math.inf) / (fresh.p50_ms or math.inf)
            self.rows.append(
                Row(
                    f"Encrypt p50, key with {self.history_seeded:,} Used events vs fresh key, "
                    f"c={level}{tag}",
                    f"{_fmt_ms(hist.p50_ms)} vs {_fmt_ms(fresh.p50_ms)} = {ratio:.2f}x "
                    f"({_fmt_ops(hist.ops_per_s)} vs {_fmt_ops(fresh.ops_per_s)}, "
                    f"{hist.errors + fresh.errors} err)",
                    target=f"<= {TARGET_HISTORY_P50_FACTOR:g}x",
                    met=ratio <= TARGET_HISTORY_P50_FACTOR and hist.errors + fresh.errors == 0,
                )
            )

    def _first_encrypts(self, target: Target) -> dict[str, float]:
        """The first Encrypt of each key after a restart (cold cache), in ms."""
        first: dict[str, float] = {}
        for name, key_id in (("history", self.history_key), ("fresh", self.fresh_key)):
            payload = {"KeyId": key_id, "Plaintext": base64.b64encode(bench.PLAINTEXT).decode()}
            started = time.perf_counter()
            bench.call(target, self.creds, "Encrypt", payload)
            first[name] = 1e3 * (time.perf_counter() - started)
        return first

    def _seed_history(self, key_uuid: uuid.UUID, events: int) -> int:
        from app.infrastructure.ledger import project_fast

        ledger = self.ledger
        key = ledger.repository.get(key_uuid, projector_func=project_fast)
        actor = _created_actor(ledger, key_uuid)
        version = key.current_material.version
        done, last_report, started = 0, time.perf_counter(), time.perf_counter()
        while done < events:
            batch = min(HISTORY_BATCH, events - done)
            now = datetime.now(UTC)
            for _ in range(batch):
                key.record_use(
                    operation="Encrypt",
                    now=now,
                    material_version=version,
                    actor=replace(actor, request_id=str(uuid.uuid4())),
                    encryption_context=None,
                )
            ledger.save(key)
            done += batch
            if time.perf_counter() - last_report > PROGRESS_EVERY_S:
                last_report = time.perf_counter()
                rate = done / (last_report - started)
                log(f"history: {done:,}/{events:,} events ({rate:,.0f}/s)")
        return done

    def _seed_keys(self, count: int, description: str) -> list[str]:
        """Create ``count`` keys through the application layer, usable by the service.

        Their wrapping keys are stored with the service's root key in bulk, and the Key
        aggregates are saved in batches: CreateKey over HTTP would take minutes. The layers
        are wrapped as the vault wraps them (its root-key wrapping, `material_aad`), and the
        first key is opened back through the vault's public ``cipher`` as a check.
        """
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from app.infrastructure.root_keys import root_key_id
        from app.infrastructure.vault import material_aad
        from domain.identifiers import key_arn
        from domain.keys import Key, KeyMaterial

        assert self.db is not None and self.hot_key
        ledger, vault = self.ledger, self.vault
        template: Any = ledger.repository.get(uuid.UUID(self.hot_key))  # the same kind of key
        actor = _created_actor(ledger, template.id)
        partition = template.arn.split(":")[1]
        fingerprint = root_key_id(self.root_key)
        created: list[str] = []
        last_report, started = time.perf_counter(), time.perf_counter()
        with self.db.connect(autocommit=False) as conn:
            while len(created) < count:
                now = datetime.now(UTC)
                batch = min(KEYS_BATCH, count - len(created))
                ids = [uuid.uuid4() for _ in range(batch)]
                raw = {key_id: AESGCM.generate_key(256) for key_id in ids}
                with conn.cursor().copy(
                    "COPY wrapping_keys (owner_id, wrapped_key, root_key_id) FROM STDIN"
                ) as copy:
                    for key_id in ids:
                        # The vault's own wrapping, so the service opens them as its own.
                        wrapped = vault._wrap_under_root(key_id, raw[key_id])
                        copy.write_row((key_id, wrapped, fingerprint))
                conn.commit()  # wrapping keys before the events that need them
                keys = []
                for key_id in ids:
                    material_id, nonce = secrets.token_hex(32), secrets.token_bytes(12)
                    sealed = AESGCM(raw[key_id]).encrypt(
                        nonce, AESGCM.generate_key(256), material_aad(key_id, 1, material_id)
                    )
                    material = KeyMaterial(
                        version=1,
                        material_id=material_id,
                        wrapped=nonce + sealed,
                        created=now,
                        rotation_type=None,
                    )
                    keys.append(
                        Key.create(
                            key_id=key_id,
                            now=now,
                            actor=replace(actor, request_id=str(uuid.uuid4())),
                            arn=key_arn(
                                partition, template.region, template.account_id, str(key_id)
                            ),
                            account_id=template.account_id,
                            region=template.region,
                            description=description,
                            key_spec=template.key_spec,
                            key_usage=template.key_usage,
                            origin=template.origin,
                            key_manager=template.key_manager,
                            policy=template.policy,
                            tags={},
                            material=material,
                        )
                    )
                ledger.save(*keys)
                if not created and vault.cipher(keys[0].id, keys[0].current_material) is None:
                    raise RuntimeError("the vault cannot open a seeded key")
                created.extend(str(key_id) for key_id in ids)
                if time.perf_counter() - last_report > PROGRESS_EVERY_S:
                    last_report = time.perf_counter()
                    rate = len(created) / (last_report - started)
                    log(f"keys: {len(created):,}/{count:,} ({rate:,.0f}/s)")
        return created

    def many_keys_phase(self) -> None:
        options = self.options
        if not self.service.running():
            self.start_service("restart")
        started = time.perf_counter()
        self.many_keys = self._seed_keys(options.keys, "keyledger suite: many keys")
        seconds = time.perf_counter() - started
        self.rows.append(
            Row(
                f"seeding: {len(self.many_keys):,} keys (application layer)",
                f"{seconds:.1f} s",
                target="(setup)",
            )
        )
        assert self.db is not None
        lag = self.db.wait_for_projection()
        log(f"projection caught up {lag:.1f} s after seeding")
        self.use_many_keys("")

    def use_many_keys(self, tag: str) -> None:
        """Encrypt with every key once (cold), then for a while (warm); read the RSS."""
        options = self.options
        bodies = [bench.operation_bodies(key_id)["Encrypt"] for key_id in self.many_keys]
        rss_before = self.service.rss_mb()
        used, offset = 0, 0
        passes: list[Cell] = []
        started = time.perf_counter()
        while used < len(bodies) and time.perf_counter() - started < MAX_KEYS_PASS_S:
            rotated = tuple(bodies[offset:] + bodies[:offset])
            cell = self.run(
                f"Encrypt over {len(bodies):,} keys, cold pass {len(passes) + 1}{tag}",
                "keys" + tag,
                [Load(self.service.target, "Encrypt", rotated, HOT_CONCURRENCY)],
                options.duration,  # long passes: fewer cells while keys load
                [self.service],
            )
            passes.append(cell)
            offset = (offset + cell.all_ok) % len(bodies)
            used += cell.all_ok
            if cell.all_ok == 0:
                break
        cold_seconds = time.perf_counter() - started
        rss_cold = self.service.rss_mb()
        warm = self.run(
            f"Encrypt over {len(bodies):,} keys, warm{tag}",
            "keys" + tag,
            [
                Load(
                    self.service.target,
                    "Encrypt",
                    tuple(bodies[offset:] + bodies[:offset]),
                    HOT_CONCURRENCY,
                )
            ],
            options.short,
            [self.service],
        )
        rss_warm = self.service.rss_mb()
        distinct = min(used, len(bodies))
        cold_errors = sum(c.errors for c in passes)
        rss = max(rss_cold, rss_warm)
        warm.extra.update(rss_before_mb=rss_before, rss_cold_mb=rss_cold, rss_warm_mb=rss_warm)
        self.rows.append(
            Row(
                f"{len(bodies):,} distinct keys used (Encrypt, c={HOT_CONCURRENCY}){tag}",
                f"RSS {rss:,.0f} MB (was {rss_before:,.0f}); {distinct:,} used in "
                f"{cold_seconds:.0f} s; cold {_fmt_ops(passes[0].ops_per_s)} "
                f"p50 {_fmt_ms(passes[0].p50_ms)}, warm {_fmt_ops(warm.ops_per_s)} p99 "
                f"{_fmt_ms(warm.p99_ms)}; {warm.errors + cold_errors} err",
                target=f"RSS < {TARGET_RSS_MB:g} MB, every key used",
                met=rss < TARGET_RSS_MB
                and distinct == len(bodies)
                and warm.errors + cold_errors == 0,
            )
        )

    def store_phase(self) -> None:
        """Grow the store to N events, restart, and measure everything again."""
        options = self.options
        assert self.db is not None
        tag = f" [store {options.store_events / 1e6:g}M]"
        self.service.stop()
        have = self.db.event_count()
        started = time.perf_counter()
        added = 0
        if options.store_events > have:
            added = self._grow_store(options.store_events - have)
        seconds = time.perf_counter() - started
        total = self.db.event_count()
        size = self.db.scalar("SELECT pg_size_pretty(pg_total_relation_size('keyledger_events'))")
        self.rows.append(
            Row(
                f"seeding: event store grown to {total:,} events",
                f"+{added:,} events in {seconds:.1f} s ({added / max(seconds, 1e-9):,.0f}/s), "
                f"table {size}",
                target="(setup)",
            )
        )
        self.start_service(f"event store of {total:,} events{tag}")
        lag = self.db.wait_for_projection()
        log(f"projection caught up {lag:.1f} s after restart")
        self.rows.append(
            Row(f"projection catch-up after restart{tag}", f"{lag:.1f} s", target="(info)")
        )
        for operation in CRYPTO_OPERATIONS:
            cell = self.single(
                f"{operation} c={HOT_CONCURRENCY}{tag}",
                "store",
                self.service,
                operation,
                self.hot_bodies[operation],
                HOT_CONCURRENCY,
                options.duration,
            )
            met = (
                cell.ops_per_s >= TARGET_OPS
                and cell.p99_ms is not None
                and cell.p99_ms <= TARGET_P99_MS
                and cell.errors == 0
            )
            self.rows.append(
                Row(
                    f"{operation}, one hot key, c={HOT_CONCURRENCY}{tag}",
                    _summary(cell),
                    target=f">= {TARGET_OPS:,.0f} ops/s, p99 <= {TARGET_P99_MS:g} ms",
                    met=met,
                )
            )
        self.two_processes(tag)
        if self.history_key:
            self.measure_history(tag)
        if self.many_keys:
            self.use_many_keys(tag)

    def rotation(self) -> None:
        """Root-key rotation under load (issue 14's done-criterion, measured): the service
        restarted with a new root key and the old one previous (the rolling restart of
        docs/key-custody.md); the crypto load on the hot key (its Decrypt opens a
        ciphertext made before the rotation) first with nothing else running, then while
        ``keyledger operator rotate-root-key`` re-wraps every wrapping key."""
        options = self.options
        assert self.db is not None
        if not self.many_keys and options.keys:  # rows enough for the rotation to last
            if not self.service.running():
                self.start_service("restart")
            self.many_keys = self._seed_keys(options.keys, "keyledger suite: rotation")
        old, new = self.root_key, secrets.token_bytes(32)
        self._set_root_keys(new, old)
        self.service.stop()
        self.start_service("restarted with a new root key, the old one previous")
        rows = int(self.db.scalar("SELECT count(*) FROM wrapping_keys") or 0)
        baseline = self._crypto_cell("rotation: the same load, no rotation running")
        log(f"rotating {rows:,} wrapping keys under load")
        rotation = RotationRun(self.command, self.service.env, self.tmp / "rotation.log")
        during = self._crypto_cell("rotation: the load while rotate-root-key runs")
        seconds, status = rotation.wait(ROTATION_TIMEOUT_S)
        left = int(
            self.db.scalar(
                "SELECT count(*) FROM wrapping_keys WHERE root_key_id <> %s",
                (_root_key_id(new),),
            )
            or 0
        )
        self._set_root_keys(new, None)  # the old key destroyed: the later phases use the new
        self.service.stop()
        self.start_service("restarted with the new root key only")
        rate = f"{rows / seconds:,.0f} rows/s" if seconds else "-"
        # The measured window starts after the warm-up (the load generator's own start
        # aside): how much of the rotation it saw.
        overlap = max(0.0, min(seconds, options.warmup + options.duration) - options.warmup)
        short = " (seed more keys: --keys)" if overlap < options.duration / 2 else ""
        self.rows.append(
            Row(
                f"root-key rotation: {rows:,} wrapping keys re-wrapped online",
                f"{seconds:.1f} s ({rate}), exit {status}, {left:,} rows left;"
                f" {overlap:.1f} s of it in the {options.duration:g} s measured{short}",
                target="completes, every row under the new key",
                met=status == 0 and left == 0,
            )
        )
        for label, cell in (("without", baseline), ("while", during)):
            self.rows.append(
                Row(
                    f"Encrypt+Decrypt+GenerateDataKey, hot key, c={HOT_CONCURRENCY},"
                    f" {label} rotating the root key",
                    _summary(cell),
                    target="no failed requests" if label == "while" else "(baseline)",
                    met=cell.errors == 0 if label == "while" else None,
                )
            )

    def _crypto_cell(self, label: str) -> Cell:
        """The three crypto operations at once on the hot key, c=64 in all."""
        share, extra = divmod(HOT_CONCURRENCY, len(CRYPTO_OPERATIONS))
        loads = [
            Load(self.service.target, operation, (self.hot_bodies[operation],), share + (i < extra))
            for i, operation in enumerate(CRYPTO_OPERATIONS)
        ]
        cell = self.run(label, "rotation", loads, self.options.duration, [self.service])
        cell.operation = "+".join(CRYPTO_OPERATIONS)
        return cell

    def _set_root_keys(self, current: bytes, previous: bytes | None) -> None:
        """Every service's root key settings (effective at its next start), and the key
        this process seeds with."""
        for server in self.services.values():
            server.env["KEYLEDGER_ROOT_KEY"] = base64.b64encode(current).decode()
            server.env.pop("KEYLEDGER_PREVIOUS_ROOT_KEYS", None)
            if previous is not None:
                server.env["KEYLEDGER_PREVIOUS_ROOT_KEYS"] = base64.b64encode(previous).decode()
        self.root_key = current
        if self._vault_pool is not None:  # opened with the old key: made again when needed
            self._vault_pool.close()
        self._vault, self._vault_pool = None, None

    def _grow_store(self, events: int) -> int:
        """Add ``events`` events: keys (application layer) with Used events copied
        server-side from a real one, several statements at once."""
        assert self.db is not None
        db = self.db
        template = db.scalar(
            "SELECT state FROM keyledger_events WHERE topic = %s LIMIT 1",
            (USED_TOPIC,),
        )
        if template is None:
            raise RuntimeError("no Used event to copy")
        per_key = STORE_EVENTS_PER_KEY
        key_count = max(1, math.ceil(events / per_key))
        key_ids = [uuid.UUID(k) for k in self._seed_keys(key_count, "keyledger suite: store")]
        remaining = events - key_count
        chunks: list[tuple[list[uuid.UUID], int]] = []
        for start in range(0, len(key_ids), STORE_KEYS_PER_STATEMENT):
            ids = key_ids[start : start + STORE_KEYS_PER_STATEMENT]
            rows = min(remaining, len(ids) * (per_key - 1))
            if rows <= 0:
                break
            chunks.append((ids, rows))
            remaining -= rows
        done = [0]
        lock = threading.Lock()
        errors: list[BaseException] = []
        started = time.perf_counter()
        next_chunk = iter(chunks)

        def worker() -> None:
            import psycopg

            try:
                with psycopg.connect(db.url, autocommit=True) as conn:
                    while not errors:
                        with lock:
                            item = next(next_chunk, None)
                        if item is None:
                            return
                        ids, rows = item
                        conn.execute(
                            "INSERT INTO keyledger_events"
                            " (originator_id, originator_version, topic, state)"
                            " SELECT k, v, %s, %s FROM unnest(%s::uuid[]) AS k,"
                            " generate_series(2, %s) AS v LIMIT %s",
                            (USED_TOPIC, template, ids, per_key, rows),
                        )
                        with lock:
                            done[0] += rows
            except BaseException as error:
                errors.append(error)

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(STORE_WORKERS)]
        for thread in threads:
            thread.start()
        while alive := [thread for thread in threads if thread.is_alive()]:
            alive[0].join(PROGRESS_EVERY_S)
            rate = done[0] / max(time.perf_counter() - started, 1e-9)
            log(f"store: {done[0] + key_count:,}/{events:,} events ({rate:,.0f}/s)")
        if errors:
            raise errors[0]
        with db.connect() as conn:
            conn.execute("ANALYZE keyledger_events")
        return done[0] + key_count

    # --- report ------------------------------------------------------------------------
    def table(self) -> str:
        headers = ["measure", "KeyLedger", "moto", "target", "met?"]
        rows = [
            [
                r.measure,
                r.keyledger,
                r.moto,
                r.target,
                "" if r.met is None else ("yes" if r.met else "NO"),
            ]
            for r in self.rows
        ]
        return _render(headers, rows)

    def profile(self) -> str:
        headers = [
            "cell",
            "ops/s",
            "p50 ms",
            "p99 ms",
            "err",
            "cmds/batch",
            "commit ms",
            "conflicts",
            "svc cpu%",
            "cpu us/req",
            "client cpu%",
            "host cpu%",
            "audit lag p99 s",
            "ckpt lag p99 s",
            "events",
        ]

        def num(value: float | None, digits: int = 1) -> str:
            return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"

        rows = [
            [
                c.label,
                num(c.ops_per_s, 0),
                num(c.p50_ms, 2),
                num(c.p99_ms, 2),
                str(c.errors),
                num(c.commands_per_batch),
                num(c.commit_ms, 2),
                "-" if c.conflicts is None else str(c.conflicts),
                num(c.service_cpu_pct, 0),
                num(c.cpu_us_per_request, 0),
                num(c.client_cpu_pct, 0),
                num(c.machine_cpu_pct, 0),
                num(c.audit_lag_p99_s, 2),
                num(c.checkpoint_lag_p99_s, 2),
                "-" if c.store_events is None else f"{c.store_events:,}",
            ]
            for c in self.cells
        ]
        return _render(headers, rows, left=1)

    def document(self, started: float) -> dict[str, Any]:
        options = self.options
        return {
            "tool": "python -m tools.bench --suite",
            "started_at": started,
            "python": platform.python_version(),
            "code": _code_version(),
            "machine": {
                "cpus": os.cpu_count(),
                "cpu": _cpu_model(),
                "platform": platform.platform(),
            },
            "settings": {
                k: str(v) if isinstance(v, Path) else v
                for k, v in asdict(options).items()
                if k != "database_url"
            },
            "rows": [asdict(r) for r in self.rows],
            "cells": [asdict(c) for c in self.cells],
            "failures": self.failures,
            "notes": self.notes,
        }


class RotationRun:
    """``keyledger operator rotate-root-key`` in the background, its output in a file."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed by wait()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [*command, "operator", "rotate-root-key"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent_hook(),
        )

    def wait(self, timeout: float) -> tuple[float, int]:
        """(seconds from start to exit, exit status); killed after ``timeout``."""
        try:
            status = self.process.wait(timeout=max(0.0, timeout - self.elapsed()))
        except subprocess.TimeoutExpired:
            self.process.kill()
            status = self.process.wait()
        seconds = self.elapsed()
        self._log.close()
        return seconds, status

    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def _root_key_id(root_key: bytes) -> str:
    from app.infrastructure.root_keys import root_key_id

    return root_key_id(root_key)


def _created_actor(ledger: Ledger, key_uuid: uuid.UUID) -> Actor:
    """The actor of a key's Created event: who the seeded events say acted."""
    from domain.actors import Actor

    created = next(iter(ledger.events.get(originator_id=key_uuid, lte=1)))
    return Actor.from_record(created.actor)  # type: ignore[attr-defined]


def _combine(
    label: str, phase: str, loads: Sequence[Load], results: Sequence[CellResult], duration: float
) -> Cell:
    """One Cell for loads run at once: ops/s add up, latencies weigh by successes."""
    ok = sum(r.ok for r in results)

    def weighted(name: str) -> float | None:
        parts = [(r.latency_ms[name], r.ok) for r in results if r.latency_ms]
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0][0]
        return (
            max(value for value, _ in parts)
            if name == "p99"
            else (sum(value * weight for value, weight in parts) / max(1, sum(w for _, w in parts)))
        )

    first = next((r.first_error for r in results if r.first_error), None)
    return Cell(
        label=label,
        phase=phase,
        operation=loads[0].operation,
        concurrency=sum(load.connections for load in loads),
        target="+".join(load.target.name for load in loads),
        ops_per_s=sum(r.ops_per_s for r in results),
        p50_ms=weighted("p50"),
        p99_ms=weighted("p99"),
        errors=sum(r.errors for r in results),
        ok=ok,
        all_ok=sum(r.all_ok for r in results),
        all_errors=sum(r.all_errors for r in results),
        first_error=first,
        client_cpu_pct=sum(r.client_cpu_pct for r in results),
        extra={"elapsed_s": duration},
    )


def _render(headers: list[str], rows: list[list[str]], left: int = 4) -> str:
    """A Markdown table (readable as text), the first ``left`` columns left-aligned."""
    widths = [
        max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
        for i, h in enumerate(headers)
    ]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(cells)
            )
            + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _host_busy_pct(seconds: float = 2.0) -> float:
    busy0, total0 = _machine_busy()
    time.sleep(seconds)
    busy1, total1 = _machine_busy()
    return 100.0 * (busy1 - busy0) / max(total1 - total0, 1e-9)


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _code_version() -> str:
    """The checkout's commit (with ``+changes`` if it differs), so a table names its code."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return commit + ("+changes" if dirty else "")


def provenance(tool: str) -> dict[str, Any]:
    """What a tool's figures came from: the tool, the commit, the machine, the Python."""
    return {
        "tool": tool,
        "code": _code_version(),
        "machine": {"cpus": os.cpu_count(), "cpu": _cpu_model(), "platform": platform.platform()},
        "python": platform.python_version(),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or platform.machine()


def main(args: argparse.Namespace) -> int:
    """Run the suite; print the table; 0 when every step ran, 1 if one failed, 2 on bad usage."""
    try:
        options = Options.from_args(args)
    except ValueError as error:
        print(f"bench --suite: {error}", file=sys.stderr)
        return 2
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.time()
    suite = Suite(options)
    interrupted = False
    try:
        log(
            f"settings: duration {options.duration:g} s (secondary {options.short:g} s), "
            f"levels {','.join(map(str, options.levels))}, history {options.history_events:,}, "
            f"keys {options.keys:,}, store {options.store_events:,}"
        )
        busy = _host_busy_pct()
        if busy > 20:
            suite.notes.append(
                f"the host was {busy:.0f}% busy before the suite started: other processes "
                "compete with the service, PostgreSQL and the load generator"
            )
        suite.open()
        phases = options.phases
        if "throughput" in phases:
            suite.phase("throughput and moto", suite.throughput)
        else:
            suite.phase("hot key", suite.create_hot_key)
        if "ledger" in phases:
            suite.phase("the Merkle log's cost", suite.ledger_cost)
        if "processes" in phases:
            suite.phase("two processes", suite.two_processes)
        if options.history_events and "history" in phases:
            suite.phase("long history", suite.history)
        if options.keys and "keys" in phases:
            suite.phase("many keys", suite.many_keys_phase)
        if options.store_events and "store" in phases:
            suite.phase("large event store", suite.store_phase)
        if "rotation" in phases:
            suite.phase("root-key rotation under load", suite.rotation)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted; reporting what was measured")
    except Exception as error:
        suite.failures.append(f"{type(error).__name__}: {error}")
        log(f"FAILED: {type(error).__name__}: {error}\n{traceback.format_exc()}")
    finally:
        try:
            suite.close()
        finally:
            signal.signal(signal.SIGTERM, previous)
    elapsed = time.time() - started
    mode = "quick" if options.quick else "full"
    print(
        f"\nKeyLedger hot-path suite ({mode}, {elapsed / 60:.1f} min, "
        f"{os.cpu_count()} CPUs, {_cpu_model()}, Python {platform.python_version()}, "
        f"code {_code_version()})\n"
    )
    for note in suite.notes:
        print(f"note: {note}\n")
    print(suite.table())
    if suite.cells:
        print("\nprofile (per cell; cmds/batch and commit ms from /metrics):\n")
        print(suite.profile())
    met = [r.met for r in suite.rows if r.met is not None]
    print(f"\ntargets met: {sum(met)}/{len(met)}" + (" (interrupted)" if interrupted else ""))
    for failure in suite.failures:
        print(f"failed: {failure}")
    if options.json_path:
        with open(options.json_path, "w", encoding="utf-8") as handle:
            json.dump(suite.document(started), handle, indent=2, default=str)
            handle.write("\n")
        log(f"wrote {options.json_path}")
    return 1 if suite.failures or interrupted else 0
