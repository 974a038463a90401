"""One migrate step: the event store's tables (the library's) and our read models."""

from __future__ import annotations

import logging
from importlib import resources

import psycopg

log = logging.getLogger("keyledger.migrate")
# Serialises concurrent migrators (several replicas starting at once).
MIGRATION_LOCK_ID = 0x6B65796C  # "keyl"


def migration_files() -> list[tuple[str, str]]:
    files = resources.files("migrations")
    names = sorted(p.name for p in files.iterdir() if p.name.endswith(".sql"))
    return [(name, (files / name).read_text()) for name in names]


def apply_migrations(database_url: str) -> list[str]:
    """Apply every migration not yet applied, in order; return the names applied."""
    applied: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_ID,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
            for name, sql in migration_files():
                if name in done:
                    continue
                with conn.transaction():
                    conn.execute(sql.encode())
                    conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
                applied.append(name)
                log.info("applied migration %s", name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_ID,))
    return applied
