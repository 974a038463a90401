"""The chaos harness's short mode, as CI runs it (``make chaos ARGS=--short`` by hand).

Against a real ``keyledger run --workers 2`` on a temporary data dir: kill -9 of the
database and of the whole service under load, database outages with /readyz probed,
floods and oversized bodies, hostile text in every member of every AWS JSON operation,
and fuzzing of both APIs. Every invariant of tools/chaos must hold; the report (table and
JSON) says which did not.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.chaos.cli import SCENARIOS, run
from tools.chaos.profile import SHORT

# Starts the real `keyledger run` process (docs/testing.md).
pytestmark = pytest.mark.e2e

SEED_ENV = "KEYLEDGER_CHAOS_SEED"
CI_SEED = 11


@pytest.mark.timeout(300)
def test_short_chaos_run_keeps_every_invariant(tmp_path: Path) -> None:
    # A fixed seed by default, so that CI is repeatable; ``make chaos`` draws a new one.
    seed = int(os.environ.get(SEED_ENV) or CI_SEED)
    report = run(SHORT, list(SCENARIOS), seed)
    report.write_json(tmp_path / "chaos-short.json")
    assert not report.errors, f"seed {seed}: scenarios did not run:\n" + "\n".join(report.errors)
    assert report.passed, f"seed {seed} ({SEED_ENV} to replay):\n{report.table()}"
