"""The embedded PostgreSQL runs with its tuning: durability pinned on, and new WAL
segments not zero-filled (a committing writer would otherwise create each one while
holding the events table's lock: a ~60 ms stall of every writer about once a second)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psycopg

from app.infrastructure.postgres.embedded import ensure_embedded_database
from tests.support.databases import DEFAULT_EMBEDDED_DIR, EMBEDDED_DIR_ENV


def _settings_of_the_started_server(*names: str) -> dict[str, str]:
    """What a new session sees once the service's start-up has tuned the shared server
    (the reload it asks for reaches new sessions within moments)."""
    data_dir = Path(os.environ.get(EMBEDDED_DIR_ENV) or DEFAULT_EMBEDDED_DIR)
    url = ensure_embedded_database(data_dir, "postgres")
    deadline = time.monotonic() + 5
    while True:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", (list(names),)
            ).fetchall()
        shown = {str(name): str(setting) for name, setting in rows}
        if (
            time.monotonic() > deadline
            or "wal_init_zero" not in shown
            or shown["wal_init_zero"] == "off"
        ):
            return shown
        time.sleep(0.05)


def test_the_embedded_server_keeps_durability_on() -> None:
    assert _settings_of_the_started_server("fsync", "synchronous_commit", "full_page_writes") == {
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
    }


def test_the_embedded_server_does_not_zero_fill_new_wal_segments() -> None:
    assert _settings_of_the_started_server("wal_init_zero") == {"wal_init_zero": "off"}
