"""Grants by retiring principal (table ``kms_grants``), for ListRetirableGrants.

Handlers of the key directory projection: they run in its transactions, so the view is
exactly-once like the rest of the directory. ListGrants reads the Key aggregate instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from domain.keys import Key
from projections.pg_text import json_text

GrantHandler = Callable[[psycopg.Connection[Any], Any], None]


def _grant_created(conn: psycopg.Connection[Any], event: Key.GrantCreated) -> None:
    grant = event.grant
    conn.execute(
        "INSERT INTO kms_grants (key_id, grant_id, key_arn, name, grantee_principal,"
        " retiring_principal, operations, constraints, issuing_account, creation_date)"
        " SELECT %s, %s, arn, %s, %s, %s, %s, %s, %s, %s FROM kms_keys WHERE key_id = %s"
        " ON CONFLICT (key_id, grant_id) DO NOTHING",
        (
            event.originator_id,
            grant["grant_id"],
            grant.get("name") or "",
            grant["grantee_principal"],
            grant.get("retiring_principal"),
            json_text(grant["operations"]),
            json_text(grant["constraints"]) if grant.get("constraints") else None,
            grant["issuing_account"],
            event.timestamp,
            event.originator_id,
        ),
    )


def _grant_ended(conn: psycopg.Connection[Any], event: Any) -> None:
    conn.execute(
        "DELETE FROM kms_grants WHERE key_id = %s AND grant_id = %s",
        (event.originator_id, event.grant_id),
    )


def _key_destroyed(conn: psycopg.Connection[Any], event: Any) -> None:
    conn.execute("DELETE FROM kms_grants WHERE key_id = %s", (event.originator_id,))


GRANT_HANDLERS: dict[type, list[GrantHandler]] = {
    Key.GrantCreated: [_grant_created],
    Key.GrantRetired: [_grant_ended],
    Key.GrantRevoked: [_grant_ended],
    Key.MaterialDestroyed: [_key_destroyed],
}
