"""Emulator mode's reset (docs/emulator.md): empty the ledger and every view in one
transaction, keeping only what the service's own identity needs (its migrations, the root
key's seal, the ledger's signer and the vault's own secrets)."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

__all__ = ["KEPT_TABLES", "wipe_ledger"]

# Not the ledger's content: the schema's history and the service's own keys.
KEPT_TABLES = frozenset({"schema_migrations", "root_key_seal", "ledger_signers", "wrapping_keys"})
# The vault's own secrets (grant tokens, the ledger's signing key) have fixed owner ids of
# this form (app/infrastructure/vault.py); every other wrapping key belongs to a KMS key.
_SERVICE_OWNERS = "00000000-0000-4000-8000-%"


def wipe_ledger(database_url: str) -> None:
    """TRUNCATE every table of the ledger and its views (sequences restarted), and delete
    the keys' wrapping keys, in one transaction."""
    with psycopg.connect(database_url) as conn:
        tables = [name for name in _tables(conn) if name not in KEPT_TABLES]
        if tables:
            names = SQL(", ").join(Identifier(name) for name in tables)
            conn.execute(SQL("TRUNCATE {} RESTART IDENTITY").format(names))
        conn.execute(
            "DELETE FROM wrapping_keys WHERE owner_id::text NOT LIKE %s", (_SERVICE_OWNERS,)
        )


def _tables(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
    ).fetchall()
    return [str(row[0]) for row in rows]
