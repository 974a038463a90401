"""Under ``--workers N`` each worker counts in plain numbers and publishes to files of its
own in the shared directory (app/support/metrics.py); any worker's /metrics sums them all
(docs/operations.md, "Metrics"). Each test runs real processes on one directory: what one
counts shows, with its exact buckets, in a /metrics another answers, by the end of the
event loop's pass that counted it, within a second when idle, and in full after it exits."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.prometheus_pages import expected_buckets, samples

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shared_directory(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    return directory


def _worker(directory: Path, code: str) -> subprocess.Popen[str]:
    """A process counting into ``directory`` as a worker does; it says "counted" once it
    ran ``code``, then stays alive until its input closes."""
    script = textwrap.dedent(code) + "\nprint('counted', flush=True)\nsys.stdin.read()\n"
    return subprocess.Popen(
        [sys.executable, "-c", "import sys\n" + script],
        cwd=ROOT,
        env=os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(timeout=30)


def _wait_counted(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "counted"


def _scrape(directory: Path) -> str:
    """/metrics as another worker answers it (its own process, the same directory)."""
    code = (
        "import sys; from app.support.metrics import exposition as page; print(page([]).decode())"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(directory), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout


ANSWER_IN_A_LOOP = """
import asyncio
from app.support.metrics import observe_call

async def answer() -> None:
    for seconds in {latencies!r}:
        observe_call("kms", "Encrypt", "Success", seconds)
    await asyncio.sleep(0.1)  # the loop goes on, as a worker's does between requests

loop = asyncio.new_event_loop()
loop.run_until_complete(answer())
"""


def test_every_workers_published_calls_show_in_another_workers_metrics(
    shared_directory: Path, workers: list[subprocess.Popen[str]]
) -> None:
    first, second = [0.0003, 0.004, 0.004], [0.02, 3.0]
    for latencies in (first, second):
        workers.append(_worker(shared_directory, ANSWER_IN_A_LOOP.format(latencies=latencies)))
    for worker in workers:
        _wait_counted(worker)
    page = _scrape(shared_directory)
    labels = {"source": "kms", "operation": "Encrypt", "outcome": "Success"}
    assert samples(page, "keyledger_requests_total", **labels) == {"": 5.0}
    assert samples(page, "keyledger_request_seconds_bucket", **labels) == expected_buckets(
        first + second
    )
    [total] = samples(page, "keyledger_request_seconds_sum", **labels).values()
    assert total == pytest.approx(sum(first) + sum(second))


def test_an_idle_workers_last_counts_show_within_a_second(
    shared_directory: Path, workers: list[subprocess.Popen[str]]
) -> None:
    code = """
    from app.support.metrics import cache_counters
    hits, _ = cache_counters("credentials")
    hits.inc(); hits.inc()  # then nothing: no writer batch, no scrape of its own
    """
    workers.append(_worker(shared_directory, code))
    _wait_counted(workers[0])
    time.sleep(1.5)
    page = _scrape(shared_directory)
    assert samples(page, "keyledger_cache_lookups_total", cache="credentials", result="hit") == {
        "": 2.0
    }


def test_a_worker_that_exits_leaves_every_count_it_made(shared_directory: Path) -> None:
    code = """
    from app.support.metrics import cache_counters
    hits, _ = cache_counters("materials")
    hits.inc(3)
    """  # and exits at once, before the publisher's first second
    process = _worker(shared_directory, code)
    _wait_counted(process)
    assert process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=30) == 0
    page = _scrape(shared_directory)
    assert samples(page, "keyledger_cache_lookups_total", cache="materials", result="hit") == {
        "": 3.0
    }


def test_a_forked_child_publishes_its_own_calls_not_its_parents_again(
    shared_directory: Path, workers: list[subprocess.Popen[str]]
) -> None:
    code = """
    import os
    from app.support.metrics import flush_deferred_counts, observe_call
    observe_call("kms", "Decrypt", "Success", 0.001)
    observe_call("kms", "Decrypt", "Success", 0.001)
    pid = os.fork()
    if pid == 0:
        observe_call("kms", "Decrypt", "Success", 0.001)
        flush_deferred_counts()
        os._exit(0)
    os.waitpid(pid, 0)
    """
    workers.append(_worker(shared_directory, code))
    _wait_counted(workers[0])
    page = _scrape(shared_directory)
    labels = {"operation": "Decrypt", "outcome": "Success"}
    assert samples(page, "keyledger_requests_total", **labels) == {"": 3.0}
