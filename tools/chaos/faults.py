"""Database outages and kill -9 loops, all under legitimate load.

* outages: the embedded PostgreSQL frozen (SIGSTOP ... SIGCONT: connections hang) or
  stopped (``pg_ctl stop -m fast`` ... ``start``: connections refused) for a few seconds,
  while ``/readyz`` is probed every 100 ms;
* kill-db: SIGKILL the postmaster alone, the service left running; the harness restarts
  PostgreSQL if the service has not within `SELF_RESTART_WAIT_S`;
* kill-all: SIGKILL the service's whole process group and PostgreSQL at once, then start
  the service again.

`assess` turns what was recorded into rows: time to the first acknowledged call after
each fault, /readyz correctness (503 while the database is down, 200 while it is up, each
within 1 s of the change, no probe slower than 1 s), answers slower than the hang bound,
and 5xx outside the faults' windows.
"""

from __future__ import annotations

import statistics
import time

from tools.chaos.harness import Fault, Harness, log
from tools.chaos.load import Probe

READY_WITHIN_S = 1.0  # /readyz must reflect a change this fast, and answer this fast
SELF_RESTART_WAIT_S = 5.0  # how long the service gets to restart a killed PostgreSQL
UP_CHECK_S = 3.0  # after a database fault, /readyz is checked for 200 this long


def _restart_database(h: Harness, fault: Fault, wait: float) -> None:
    """Give the service ``wait`` seconds to restart PostgreSQL itself, then do it. The
    database is back when it accepts connections (crash recovery done)."""
    postgres = h.service.postgres
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not postgres.running():
        time.sleep(0.02)
    if postgres.running():
        fault.restarted_by = "service"
    else:
        fault.restarted_by = "harness" if postgres.start() else "service"
    deadline = time.monotonic() + h.profile.recovery_bound_s
    while time.monotonic() < deadline and not postgres.ready():
        time.sleep(0.02)
    fault.back = time.monotonic()


def outages(h: Harness) -> None:
    profile = h.profile
    with h.load():
        h.ready_baseline_from = time.monotonic()
        time.sleep(2.0)
        for kind in profile.outages:
            fault = Fault(kind, time.monotonic())
            h.faults.append(fault)
            postgres = h.service.postgres
            if kind == "freeze":
                frozen = postgres.freeze()
                fault.down_from = time.monotonic()
                log(
                    f"outage: PostgreSQL frozen ({frozen} processes) for "
                    f"{profile.outage_seconds:g} s"
                )
                time.sleep(profile.outage_seconds)
                fault.back = time.monotonic()
                postgres.thaw()
            else:
                postgres.stop()
                fault.down_from = time.monotonic()
                log(
                    "outage: PostgreSQL stopped; the service has "
                    f"{profile.outage_seconds:g} s to restart it"
                )
                _restart_database(h, fault, profile.outage_seconds)
            h.wait_first_success(fault, profile.recovery_bound_s)
            log(
                f"outage {kind}: PostgreSQL back after {_seconds(_back_s(fault))} "
                f"({fault.restarted_by or 'thawed'}), first acknowledged call "
                f"{_seconds(fault.recovery_s)} later"
            )
            time.sleep(UP_CHECK_S + READY_WITHIN_S)


def kills(h: Harness) -> None:
    profile = h.profile
    plan = ["kill-db"] * profile.kills_db + ["kill-all"] * profile.kills_all
    with h.load():
        for index, kind in enumerate(plan, 1):
            time.sleep(profile.kill_interval_s)
            fault = Fault(kind, time.monotonic())
            h.faults.append(fault)
            if kind == "kill-db":
                h.service.postgres.kill_postmaster()
                fault.down_from = fault.start
                try:
                    _restart_database(h, fault, SELF_RESTART_WAIT_S)
                except RuntimeError as error:
                    fault.error = str(error)
                    raise
            else:
                h.service.kill()
                try:
                    h.service.start(timeout=profile.recovery_bound_s)
                except RuntimeError as error:
                    fault.error = f"service did not come back: {error}"
                    raise
                fault.back = time.monotonic()
            h.wait_first_success(fault, profile.recovery_bound_s)
            log(
                f"{kind} {index}/{len(plan)}: back after {_seconds(_back_s(fault))}, first "
                f"acknowledged call after {_seconds(fault.recovery_s)}"
            )


def _back_s(fault: Fault) -> float | None:
    return None if fault.back is None else fault.back - fault.start


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


# --- assessment -----------------------------------------------------------------------------
def _expected_ready(
    faults: list[Fault], probe: Probe, baseline_from: float, first_fault: float
) -> int | None:
    """The /readyz status a probe sent at ``probe.sent`` must see (None: not judged)."""
    sent = probe.sent
    if baseline_from <= sent < first_fault:
        return 200
    for index, fault in enumerate(faults):
        if not fault.database_down or fault.down_from is None or fault.back is None:
            continue
        if fault.down_from + READY_WITHIN_S <= sent < fault.back:
            # A probe still waiting when the database came back may rightly see it up
            # (seen: sent 25 ms before the harness saw PostgreSQL back, 200 after 0.18 s).
            return 503 if probe.done < fault.back else None
        following = faults[index + 1].start if index + 1 < len(faults) else float("inf")
        if fault.back + READY_WITHIN_S <= sent < min(fault.back + UP_CHECK_S, following):
            # Nor is one the next fault reached before its answer (seen: a kill-all just
            # after a probe was sent closed its connection).
            return 200 if probe.done < following else None
    return None


def assess(h: Harness) -> None:
    report = h.report
    profile = h.profile
    faults = h.faults
    for kind in ("freeze", "pg-stop", "kill-db", "kill-all"):
        chosen = [f for f in faults if f.kind == kind]
        if not chosen:
            continue
        recovered = [f.recovery_s for f in chosen if f.recovery_s is not None]
        failed = [
            f"{f.kind} at +{f.start - h.started:.1f} s: {f.error}"
            for f in chosen
            if f.recovery_s is None or f.error
        ]
        figures = ""
        since = "the database returned" if kind in ("freeze", "pg-stop") else "the kill"
        if recovered:
            figures = (
                f"; first success after {since}: mean {statistics.fmean(recovered):.2f} s, "
                f"max {max(recovered):.2f} s"
            )
        backs = [b for f in chosen if (b := _back_s(f)) is not None]
        if kind == "kill-all" and backs:
            figures += f"; restart to /readyz mean {statistics.fmean(backs):.2f} s"
        elif kind != "freeze" and backs:
            by_harness = sum(1 for f in chosen if f.restarted_by == "harness")
            figures += (
                f"; PostgreSQL back after mean {statistics.fmean(backs):.2f} s, restarted by "
                f"the service {len(chosen) - by_harness}x, by the harness {by_harness}x"
            )
        report.invariant(
            "faults",
            f"{kind}: service recovered",
            not failed,
            f"{len(recovered)}/{len(chosen)}{figures}",
            failed,
        )
    h.report.figures["faults"] = [
        {
            "kind": f.kind,
            "at_s": round(f.start - h.started, 3),
            "back_s": _round(_back_s(f)),
            "first_success_s": _round(f.recovery_s),
            "restarted_by": f.restarted_by,
            "error": f.error,
        }
        for f in faults
    ]
    _assess_ready(h)
    _assess_attempts(h, profile.hang_bound_s)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _assess_ready(h: Harness) -> None:
    if h.probe is None or not any(f.database_down for f in h.faults):
        return
    probes = list(h.probe.probes)
    first_fault = min((f.start for f in h.faults), default=float("inf"))
    judged = correct = slow = 0
    wrong: list[str] = []
    wrong_all: list[list[float | int]] = []
    for probe in probes:
        expected = _expected_ready(h.faults, probe, h.ready_baseline_from, first_fault)
        if expected is None:
            continue
        judged += 1
        elapsed = probe.done - probe.sent
        ok = probe.status == expected and elapsed <= READY_WITHIN_S
        if elapsed > READY_WITHIN_S:
            slow += 1
        if ok:
            correct += 1
            continue
        shown = f"no answer ({probe.error[:200]})" if probe.status <= 0 else str(probe.status)
        wrong_all.append(
            [round(probe.sent - h.started, 3), round(elapsed, 3), probe.status, expected]
        )
        if len(wrong) < 5:
            wrong.append(
                f"at +{probe.sent - h.started:.1f} s: {shown} after {elapsed:.2f} s, "
                f"expected {expected}"
            )
    h.report.figures["readyz"] = {
        "judged": judged,
        "correct": correct,
        "slow": slow,
        "wrong": wrong_all[:100],
    }
    h.report.invariant(
        "outages",
        "/readyz correct within 1 s (503 down, 200 up)",
        judged > 0 and correct == judged,
        f"{correct:,}/{judged:,} probes; {slow} slower than {READY_WITHIN_S:g} s",
        wrong,
    )


def _assess_attempts(h: Harness, hang_bound: float) -> None:
    windows = [f.window() for f in h.faults]
    attempts = list(h.recorder.attempts)
    hung = [a for a in attempts if a.done - a.sent > hang_bound or a.status == -1]
    outside = [
        a
        for a in attempts
        if a.status >= 500 and not any(s <= a.done and a.sent <= e for s, e in windows)
    ]
    outside_ids = {id(a) for a in outside}
    inside = [a for a in attempts if a.status >= 500 and id(a) not in outside_ids]
    worst = max((a.done - a.sent for a in attempts), default=0.0)
    h.report.invariant(
        "load",
        f"answers slower than {hang_bound:g} s (hangs)",
        not hung,
        f"{len(hung):,} of {len(attempts):,} (slowest {worst:.2f} s)",
        [
            f"{a.operation} at +{a.sent - h.started:.1f} s took {a.done - a.sent:.2f} s "
            f"({a.status} {a.error_type})"
            for a in hung[:5]
        ],
    )
    h.report.invariant(
        "load",
        "5xx outside fault windows",
        not outside,
        f"{len(outside):,}",
        [
            f"{a.operation} at +{a.sent - h.started:.1f} s: {a.status} {a.error_type}"
            for a in outside[:5]
        ],
    )
    h.report.figure("load", "5xx inside fault windows", f"{len(inside):,}")
