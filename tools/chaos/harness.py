"""One chaos run's shared state: the service, the load's record, the faults injected."""

from __future__ import annotations

import random
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tools.chaos.clients import KmsClient, RestClient
from tools.chaos.fixtures import expect
from tools.chaos.load import Load, ReadyProbe, Recorder
from tools.chaos.profile import Profile
from tools.chaos.report import Report
from tools.chaos.service import ChaosService

LOAD_KEYS = 4
GRACE_S = 2.0  # after a fault's recovery, errors still belong to it for this long


@dataclass
class Fault:
    """One injected fault, in ``time.monotonic()`` readings."""

    kind: str  # freeze, pg-stop, kill-db, kill-all
    start: float
    down_from: float | None = None  # PostgreSQL stopped answering (database faults)
    back: float | None = None  # the cause is over: PostgreSQL accepting, or /readyz 200
    first_success: float | None = None  # the first acknowledged call sent after `since`
    restarted_by: str = ""  # who brought PostgreSQL back: "service" or "harness"
    error: str = ""

    @property
    def database_down(self) -> bool:
        return self.kind in ("freeze", "pg-stop", "kill-db")

    @property
    def since(self) -> float:
        """Recovery is timed from the kill, or from the end of an outage."""
        if self.kind in ("freeze", "pg-stop") and self.back is not None:
            return self.back
        return self.start

    @property
    def recovery_s(self) -> float | None:
        """Seconds to the first acknowledged call sent after `since`."""
        return None if self.first_success is None else self.first_success - self.since

    def window(self) -> tuple[float, float]:
        """When errors are the fault's: from its start to a little after recovery."""
        end = self.first_success or self.back or self.start
        return self.start, max(end, self.back or end) + GRACE_S


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Harness:
    def __init__(self, profile: Profile, workdir: Path, seed: int) -> None:
        self.profile = profile
        self.workdir = workdir
        self.seed = seed
        self.rng = random.Random(seed)
        self.run_id = secrets.token_hex(4)
        self.service = ChaosService(workdir)
        self.recorder = Recorder()
        self.faults: list[Fault] = []
        self.report = Report(profile.name)
        self.keys: list[str] = []
        self.probe: ReadyProbe | None = None
        self.audit_lag_samples: list[float] = []
        self.started = time.monotonic()
        self.ready_baseline_from = float("inf")  # /readyz must be 200 from then to a fault

    # --- clients ------------------------------------------------------------------------------
    def kms(self, timeout: float | None = None) -> KmsClient:
        return KmsClient(
            self.service.endpoint,
            self.service.creds,
            timeout=timeout or self.profile.request_timeout_s,
        )

    def rest(self, timeout: float | None = None) -> RestClient:
        return RestClient(
            self.service.endpoint,
            self.service.creds,
            timeout=timeout or self.profile.request_timeout_s,
        )

    def load(self, *, rate: float | None = None, threads: int | None = None) -> Load:
        profile = self.profile
        return Load(
            self.service.endpoint,
            self.service.creds,
            self.keys,
            self.recorder,
            threads=threads or profile.load_threads,
            rate=profile.load_rate if rate is None else rate,
            timeout=profile.request_timeout_s,
            seed=self.rng.randrange(2**31),
            run_id=self.run_id,
        )

    # --- set-up -------------------------------------------------------------------------------
    def start(self) -> None:
        seconds = self.service.start()
        log(
            f"service ready in {seconds:.1f} s on {self.service.endpoint} (logs: "
            f"{self.service.log_path})"
        )
        self.report.figure("setup", "start-up to /readyz", f"{seconds:.2f} s")
        client = self.kms()
        try:
            for index in range(LOAD_KEYS):
                created = expect(
                    client.call("CreateKey", {"Description": f"chaos load key {index}"}),
                    "CreateKey",
                )
                self.keys.append(str(created["KeyMetadata"]["KeyId"]))
        finally:
            client.close()
        host = "127.0.0.1"
        self.probe = ReadyProbe(host, self.service.port, interval=0.1, timeout=2.0)
        self.probe.start()

    def close(self) -> None:
        if self.probe is not None:
            self.probe.stop()
        self.service.stop()

    # --- waiting ------------------------------------------------------------------------------
    def wait_first_success(self, fault: Fault, bound: float) -> None:
        """Wait (bounded) for the load's first acknowledged call sent after the fault."""
        deadline = fault.since + bound
        while time.monotonic() < deadline:
            found = self.recorder.first_success_after(fault.since)
            if found is not None:
                fault.first_success = found
                return
            time.sleep(0.05)
        fault.error = fault.error or f"no acknowledged call within {bound:g} s of the fault"
