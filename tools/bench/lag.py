"""A lag during a benchmark, from /metrics: the audit trail's (``keyledger_audit_lag_seconds``,
the default) or the ledger's checkpoint lag (``CHECKPOINT_LAG``).

``LagSampler`` polls a target's /metrics every ``interval`` seconds while a cell runs (in a
thread, so the load generator is not slowed) and reports the lag's p50, p99 and maximum.
A target without that metric (moto, say) yields no samples.

Every scrape costs the service database reads (the projections' positions, the events set
aside, the checkpoint lag) and the multiprocess exposition: polled ten times a second, as
the suite did before issue 17, the scrapes took about a fifth of a worker's profile
samples under load, and the figures measured the sampler as much as the service.
Twice a second still gives 40 samples in a 20 s cell; Prometheus scrapes every 15 s.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import httpx

AUDIT_LAG = "keyledger_audit_lag_seconds"
CHECKPOINT_LAG = "keyledger_ledger_checkpoint_lag_seconds"


def _pattern(metric: str) -> re.Pattern[bytes]:
    return re.compile(rb"^" + metric.encode() + rb" ([0-9.eE+-]+|nan|NaN)$", re.MULTILINE)


class LagSampler:
    def __init__(self, url: str, interval: float = 0.5, metric: str = AUDIT_LAG) -> None:
        self.url = url.rstrip("/") + "/metrics"
        self.interval = interval
        self.metric = metric
        self._pattern = _pattern(metric)
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LagSampler:
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        with httpx.Client(timeout=2.0, verify=False) as client:
            while not self._stop.wait(self.interval):
                try:
                    found = self._pattern.search(client.get(self.url).content)
                except httpx.HTTPError:
                    continue
                if found and found.group(1).lower() != b"nan":  # (prometheus_client writes NaN)
                    self.samples.append(float(found.group(1)))

    def summary(self) -> dict[str, float] | None:
        """p50, p99 and max lag in seconds, or None without samples."""
        if not self.samples:
            return None
        ordered = sorted(self.samples)

        def percentile(q: float) -> float:
            return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

        return {
            "p50_s": percentile(0.50),
            "p99_s": percentile(0.99),
            "max_s": ordered[-1],
            "samples": float(len(ordered)),
        }

    def describe(self) -> str:
        found = self.summary()
        if found is None:
            return ""
        what = "audit lag" if self.metric == AUDIT_LAG else "checkpoint lag"
        return (
            f", {what} p50 {found['p50_s']:.3f}s p99 {found['p99_s']:.3f}s"
            f" max {found['max_s']:.3f}s"
        )
