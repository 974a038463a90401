"""Reading a /metrics page (Prometheus text format) in tests."""

from __future__ import annotations

import re

# keyledger_request_seconds' buckets' ``le`` labels (app.support.metrics.LATENCY_BUCKETS).
LATENCY_LE = ("0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25")
LATENCY_LE += ("0.5", "1.0", "2.5", "5.0", "+Inf")


def samples(page: str, name: str, **labels: str) -> dict[str, float]:
    """The samples of ``name`` whose labels include ``labels``, by their ``le`` (or "")."""
    found = {}
    for line in page.splitlines():
        match = re.fullmatch(rf"{name}\{{([^}}]*)\}} (\S+)", line)
        if match is None:
            continue
        named = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(named.get(label) == value for label, value in labels.items()):
            found[named.get("le", "")] = float(match.group(2))
    return found


def expected_buckets(latencies: list[float]) -> dict[str, float]:
    """The cumulative latency buckets of these observations, by ``le``."""
    return {le: float(sum(1 for s in latencies if s <= float(le))) for le in LATENCY_LE}
