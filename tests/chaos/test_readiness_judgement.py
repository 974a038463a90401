"""How the chaos harness judges a /readyz probe against a database outage
(tools/chaos/faults.py): 503 is required only of a probe answered while the database was
still down (one still waiting when it came back may rightly see it up), and 200 only of
one answered before the next fault began."""

from __future__ import annotations

from tools.chaos.faults import _expected_ready
from tools.chaos.harness import Fault
from tools.chaos.load import Probe

OUTAGE = Fault("pg-stop", start=10.0, down_from=10.0, back=20.0)


NEXT = Fault("kill-all", start=22.0)


def _expected(sent: float, done: float) -> int | None:
    probe = Probe(sent, done, 200)
    return _expected_ready([OUTAGE, NEXT], probe, baseline_from=0.0, first_fault=10.0)


def test_a_probe_answered_while_the_database_is_down_must_see_503() -> None:
    assert _expected(sent=15.0, done=15.2) == 503


def test_a_probe_still_waiting_when_the_database_came_back_is_not_judged() -> None:
    assert _expected(sent=19.97, done=20.15) is None


def test_probes_before_the_outage_and_after_the_return_must_see_200() -> None:
    assert _expected(sent=5.0, done=5.1) == 200
    assert _expected(sent=21.5, done=21.6) == 200


def test_a_probe_the_next_fault_reached_before_its_answer_is_not_judged() -> None:
    assert _expected(sent=21.98, done=22.01) is None
