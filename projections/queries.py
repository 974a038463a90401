"""Queries over the read models: what the list operations and the scheduler read."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from psycopg_pool import ConnectionPool

from domain import key_states


def list_keys(
    pool: ConnectionPool, account_id: str, region: str, after: str | None, limit: int
) -> list[tuple[str, str]]:
    """(key id, key ARN) pairs in key-id order, after ``after``, at most ``limit``."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT key_id::text, arn FROM kms_keys WHERE account_id = %s AND region = %s"
            " AND key_state <> %s AND (%s::uuid IS NULL OR key_id > %s::uuid)"
            " ORDER BY key_id LIMIT %s",
            (account_id, region, key_states.DELETED, after, after, limit),
        ).fetchall()
    return [(row[0], row[1]) for row in rows]


def list_aliases(
    pool: ConnectionPool,
    account_id: str,
    region: str,
    key_id: str | None,
    after: str | None,
    limit: int,
) -> list[tuple[str, str, datetime, datetime]]:
    """(alias name, target key id, created, updated) in name order. ``key_id`` and the
    stored targets are aggregate ids; the answer names each target by its key id as AWS
    does (``mrk-...`` for a multi-Region key: the id its ARN ends with)."""
    with pool.connection() as conn:
        rows = conn.execute(
            "SELECT a.alias_name,"
            " COALESCE(NULLIF(split_part(k.arn, ':key/', 2), ''), a.target_key_id::text),"
            " a.creation_date, a.last_updated"
            " FROM kms_aliases a LEFT JOIN kms_keys k ON k.key_id = a.target_key_id"
            " WHERE a.account_id = %s AND a.region = %s"
            " AND (%s::uuid IS NULL OR a.target_key_id = %s::uuid)"
            " AND (%s::text IS NULL OR a.alias_name > %s::text)"
            " ORDER BY a.alias_name LIMIT %s",
            (account_id, region, key_id, key_id, after, after, limit),
        ).fetchall()
    return [(row[0], row[1], row[2], row[3]) for row in rows]


def keys_due(pool: ConnectionPool, now: datetime) -> list[tuple[uuid.UUID, str]]:
    """Keys whose deletion window ended, whose rotation date passed, or whose imported
    material expired, with the job."""
    with pool.connection() as conn:
        rows: list[Any] = conn.execute(
            "SELECT key_id, 'delete' FROM kms_keys WHERE key_state = %s AND deletion_date <= %s"
            " UNION ALL SELECT key_id, 'rotate' FROM kms_keys"
            " WHERE key_state = %s AND next_rotation_date <= %s"
            " UNION ALL SELECT DISTINCT key_id, 'expire' FROM kms_key_materials"
            " WHERE imported AND valid_to <= %s",
            (key_states.PENDING_DELETION, now, key_states.ENABLED, now, now),
        ).fetchall()
    return [(row[0], row[1]) for row in rows]
