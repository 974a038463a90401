"""``python -m tools.chaos [--short] [--json PATH] [--only ...]``: run, print, exit.

Exit status: 0 when every invariant held, 1 when one did not (or a scenario could not
run), 2 on bad usage. The table goes to stdout, progress to stderr, and every figure and
example to the JSON file (default ``build/chaos/<mode>.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from tools.bench.lag import LagSampler
from tools.chaos import faults, floods, fuzz_kms, fuzz_rest, hostile, verify
from tools.chaos.harness import Harness, log
from tools.chaos.profile import FULL, SHORT, Profile
from tools.chaos.report import Report

Scenario = Callable[[Harness], None]
# In this order: the load-based scenarios first, then the checks of what they acknowledged
# (before hostile text can stall a projection), then hostile text and the fuzzers.
SCENARIOS: dict[str, Scenario] = {
    "floods": floods.floods,
    "oversized": floods.oversized,
    "outages": faults.outages,
    "kills": faults.kills,
    "verify": verify.verify,
    "hostile": hostile.hostile,
    "fuzz-kms": fuzz_kms.fuzz_kms,
    "fuzz-rest": fuzz_rest.fuzz_rest,
}
LOAD_SCENARIOS = frozenset({"floods", "oversized", "outages", "kills"})


def _names(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.chaos",
        description="Attack a real KeyLedger (kill -9, outages, floods, hostile text, fuzzing) "
        "and check that every acknowledged operation survived.",
    )
    parser.add_argument(
        "--short",
        action="store_true",
        help="the CI mode: a few faults of each kind, small budgets (< 3 min)",
    )
    parser.add_argument(
        "--only",
        type=_names,
        default=None,
        metavar="S1,S2",
        help=f"run only these scenarios ({', '.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--skip", type=_names, default=[], metavar="S1,S2", help="leave these scenarios out"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the results here (default build/chaos/<mode>.json)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of every random choice")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary data dir and the service's log"
    )
    return parser


def run(profile: Profile, scenarios: Sequence[str], seed: int, *, keep: bool = False) -> Report:
    """One chaos run; the report says what held."""
    workdir = Path(tempfile.mkdtemp(prefix="keyledger-chaos-"))
    started = time.monotonic()
    h = Harness(profile, workdir, seed)
    h.report.started = datetime.now(UTC).isoformat(timespec="seconds")
    h.report.figures["seed"] = seed
    h.report.figures["scenarios"] = list(scenarios)
    log(f"{profile.name} run, seed {seed}, scenarios {', '.join(scenarios)}; files in {workdir}")
    try:
        h.start()
        with LagSampler(h.service.endpoint, interval=0.25) as lag:
            for name in scenarios:
                _scenario(h, name)
        summary = lag.summary()
        if summary is not None:
            h.report.figure(
                "durability",
                "audit lag (p50 / p99 / max, whole run)",
                f"{summary['p50_s']:.2f} / {summary['p99_s']:.2f} / {summary['max_s']:.2f} s",
            )
            h.report.figures["audit_lag"] = summary
        if LOAD_SCENARIOS & set(scenarios):
            faults.assess(h)
        elapsed = time.monotonic() - started
        h.report.invariant(
            "run",
            f"within the {profile.name} mode's time budget",
            elapsed <= profile.budget_s,
            f"{elapsed:.0f} s of {profile.budget_s:g} s",
        )
    except Exception as error:
        h.report.errors.append(f"set-up: {type(error).__name__}: {error}")
        log(traceback.format_exc())
    finally:
        if not h.report.passed:
            log("service log (tail):\n" + h.service.log_tail(40))
        with contextlib.suppress(Exception):
            h.close()
        h.report.seconds = time.monotonic() - started
        if keep:
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return h.report


def _scenario(h: Harness, name: str) -> None:
    log(f"=== {name}")
    began = time.monotonic()
    try:
        SCENARIOS[name](h)
    except Exception as error:
        h.report.errors.append(f"{name}: {type(error).__name__}: {error}")
        log(f"{name} failed:\n{traceback.format_exc()}")
        _revive(h)
    seconds = time.monotonic() - began
    h.report.figures.setdefault("scenario_seconds", {})[name] = round(seconds, 1)
    log(f"=== {name} done in {seconds:.1f} s")


def _revive(h: Harness) -> None:
    """After a scenario broke off: thaw and restart whatever is down, for the next one."""
    h.service.postgres.thaw()
    try:
        if not h.service.running():
            h.service.start(timeout=h.profile.recovery_bound_s)
        elif not h.service.postgres.running():
            h.service.postgres.start()
    except Exception as error:
        h.report.errors.append(f"could not revive the service: {error}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    profile = SHORT if args.short else FULL
    scenarios = [s for s in (args.only or list(SCENARIOS)) if s not in args.skip]
    if LOAD_SCENARIOS & set(scenarios) and "verify" not in scenarios and not args.only:
        scenarios.append("verify")
    seed = args.seed if args.seed is not None else random.randrange(2**31)
    report = run(profile, scenarios, seed, keep=args.keep)
    path = args.json or Path("build") / "chaos" / f"{profile.name}.json"
    report.write_json(path)
    print(report.table())
    print(
        f"\n{'PASSED' if report.passed else 'FAILED'}: {profile.name} run in "
        f"{report.seconds:.0f} s, seed {seed}; results in {path}"
    )
    return 0 if report.passed else 1
