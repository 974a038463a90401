"""Key state for auditors: each key's state, material and rotation history, aliases, tags,
current policy and policy history, grants and their history, state timeline, and the
custom key store it lives in; principals, their identity policies and access keys; custom
key stores and their connection timelines.

Handlers of the audit_trail projection (one SQL statement or two per event; these events
are rare next to ``Used``), so these views are exactly-once with the trail itself and are
rebuilt by ``keyledger audit replay``. Every value comes from the events alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg

from domain import key_states
from domain.custom_key_stores import (
    CONNECTED,
    CONNECTING,
    DISCONNECTED,
    FAILED,
    CustomKeyStore,
)
from domain.identity import AccessKey, Principal
from domain.keys import AWS_MANAGED, Alias, Key, KeyStoreLocation
from projections.pg_text import json_text

Handler = Callable[[psycopg.Connection[Any], Any], None]
IMPORTED, PENDING_IMPORT = "IMPORTED", "PENDING_IMPORT"
AWS_MANAGED_ROTATION_DAYS = 365


def actor_arn(event: Any) -> str:
    actor = getattr(event, "actor", None) or {}
    return str(actor.get("principal_arn") or "")


def _state_change(
    conn: psycopg.Connection[Any], event: Any, event_name: str, sql: str, params: tuple[Any, ...]
) -> None:
    """Run an UPDATE of audit_keys ending in ``RETURNING key_state``; record the state in the
    key's timeline when it changed."""
    before = conn.execute(
        "SELECT key_state FROM audit_keys WHERE key_id = %s", (event.originator_id,)
    ).fetchone()
    after = conn.execute(sql, params).fetchone()
    if after is not None and (before is None or before[0] != after[0]):
        _timeline(conn, event, after[0], event_name)


def _timeline(conn: psycopg.Connection[Any], event: Any, state: str, event_name: str) -> None:
    conn.execute(
        "INSERT INTO audit_key_states (key_id, version, changed_at, key_state, event_name,"
        " principal_arn) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            event.originator_id,
            event.originator_version,
            event.timestamp,
            state,
            event_name,
            actor_arn(event),
        ),
    )


_MATERIAL_INSERT = (
    "INSERT INTO audit_key_materials (key_id, version, material_id, created_at, rotation_type,"
    " imported, import_state, valid_to, principal_arn)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (key_id, version) DO UPDATE"
    " SET material_id = EXCLUDED.material_id, created_at = EXCLUDED.created_at,"
    " rotation_type = EXCLUDED.rotation_type, principal_arn = EXCLUDED.principal_arn"
)
# An import (or re-import) also sets the material's import state and expiry; a rotation to
# imported material pending rotation keeps them.
_IMPORT_STATE = ", import_state = EXCLUDED.import_state, valid_to = EXCLUDED.valid_to"


def _material_row(
    conn: psycopg.Connection[Any],
    event: Any,
    material: Any,
    *,
    imported: bool = False,
    valid_to: Any = None,
) -> None:
    conn.execute(
        _MATERIAL_INSERT + (_IMPORT_STATE if imported else ""),
        (
            event.originator_id,
            material.version,
            material.material_id,
            material.created,
            material.rotation_type,
            material.imported,
            IMPORTED if material.imported else None,
            valid_to,
            actor_arn(event),
        ),
    )


def _policy_row(conn: psycopg.Connection[Any], event: Any, event_name: str, name: str) -> None:
    actor = event.actor or {}
    conn.execute(
        "INSERT INTO audit_key_policies (key_id, version, changed_at, event_name, policy_name,"
        " policy, principal_arn, account_id, access_key_id, request_id, source_ip)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            event.originator_id,
            event.originator_version,
            event.timestamp,
            event_name,
            name,
            event.policy,
            actor.get("principal_arn", ""),
            actor.get("account_id", ""),
            actor.get("access_key_id", ""),
            actor.get("request_id", ""),
            actor.get("source_ip", ""),
        ),
    )


def store_location(
    store_id: str | None, cluster_id: str | None, xks_key_id: str | None
) -> KeyStoreLocation | None:
    """A key's custom key store as audit_keys keeps it (None: not in a store)."""
    if not store_id:
        return None
    return {
        "custom_key_store_id": store_id,
        "cloud_hsm_cluster_id": cluster_id,
        "xks_key_id": xks_key_id,
    }


# ==== keys ==================================================================================
def _key_created(conn: psycopg.Connection[Any], event: Key.Created) -> None:
    material = event.material
    store: KeyStoreLocation | dict[str, str] = event.store or {}
    state = key_states.ENABLED if material is not None else key_states.PENDING_IMPORT
    aws_managed = event.key_manager == AWS_MANAGED
    next_rotation = (
        event.timestamp + timedelta(days=AWS_MANAGED_ROTATION_DAYS) if aws_managed else None
    )
    conn.execute(
        "INSERT INTO audit_keys (key_id, arn, account_id, region, key_state, key_manager,"
        " key_spec, key_usage, origin, description, creation_date, current_material_version,"
        " current_material_id, current_material_created, rotation_enabled,"
        " rotation_period_days, next_rotation_date, tags, policy, policy_changed_at,"
        " policy_changed_by, updated_at, custom_key_store_id, cloud_hsm_cluster_id, xks_key_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s, %s, %s, %s, %s) ON CONFLICT (key_id) DO NOTHING",
        (
            event.originator_id,
            event.arn,
            event.account_id,
            event.region,
            state,
            event.key_manager,
            event.key_spec,
            event.key_usage,
            event.origin,
            event.description,
            event.timestamp,
            material.version if material else 0,
            material.material_id if material else None,
            material.created if material else None,
            aws_managed,
            AWS_MANAGED_ROTATION_DAYS if aws_managed else None,
            next_rotation,
            json_text(event.tags),
            event.policy,
            event.timestamp,
            actor_arn(event),
            event.timestamp,
            store.get("custom_key_store_id"),
            store.get("cloud_hsm_cluster_id"),
            store.get("xks_key_id"),
        ),
    )
    if material is not None:
        _material_row(conn, event, material)
    _policy_row(conn, event, "CreateKey", "default")
    _timeline(conn, event, state, "CreateKey")


def _key_replicated(conn: psycopg.Connection[Any], event: Key.Replicated) -> None:
    """A replica (ReplicateKey): its row as CreateKey writes one, then the primary's
    materials and rotation setting it was created with."""
    _key_created(conn, event)
    materials = event.materials or []
    for material in materials:
        _material_row(conn, event, material)
    current = materials[-1] if materials else None
    conn.execute(
        "UPDATE audit_keys SET key_state = %s, current_material_version = %s,"
        " current_material_id = %s, current_material_created = %s, rotation_enabled = %s,"
        " rotation_period_days = %s WHERE key_id = %s",
        (
            key_states.ENABLED,
            current.version if current else 0,
            current.material_id if current else None,
            current.created if current else None,
            event.rotation_enabled,
            event.rotation_period_days,
            event.originator_id,
        ),
    )


def _synchronized(conn: psycopg.Connection[Any], event: Key.Synchronized) -> None:
    """A replica took its primary's new material or rotation setting."""
    material = event.material
    if material is not None:
        _material_row(conn, event, material)
        conn.execute(
            "UPDATE audit_keys SET current_material_version = %s, current_material_id = %s,"
            " current_material_created = %s WHERE key_id = %s",
            (material.version, material.material_id, material.created, event.originator_id),
        )
    conn.execute(
        "UPDATE audit_keys SET rotation_enabled = %s, rotation_period_days = %s,"
        " updated_at = %s WHERE key_id = %s",
        (
            event.rotation_enabled,
            event.rotation_period_days,
            event.timestamp,
            event.originator_id,
        ),
    )


def _replica_removed(conn: psycopg.Connection[Any], event: Key.ReplicaRemoved) -> None:
    """A primary waiting for its replicas starts its own window with the last one gone."""
    if event.deletion_date is None:
        return
    _state_change(
        conn,
        event,
        "ScheduleKeyDeletion",
        "UPDATE audit_keys SET key_state = %s, deletion_date = %s, updated_at = %s"
        " WHERE key_id = %s RETURNING key_state",
        (key_states.PENDING_DELETION, event.deletion_date, event.timestamp, event.originator_id),
    )


def _set_state(state: str, event_name: str) -> Handler:
    def handler(conn: psycopg.Connection[Any], event: Any) -> None:
        _state_change(
            conn,
            event,
            event_name,
            "UPDATE audit_keys SET key_state = %s, deletion_date = NULL, updated_at = %s"
            " WHERE key_id = %s RETURNING key_state",
            (state, event.timestamp, event.originator_id),
        )

    return handler


def _deletion_scheduled(conn: psycopg.Connection[Any], event: Key.DeletionScheduled) -> None:
    _state_change(
        conn,
        event,
        "ScheduleKeyDeletion",
        "UPDATE audit_keys SET key_state = %s, deletion_date = %s, updated_at = %s"
        " WHERE key_id = %s RETURNING key_state",
        (
            key_states.PENDING_REPLICA_DELETION
            if event.awaiting_replicas
            else key_states.PENDING_DELETION,
            None if event.awaiting_replicas else event.deletion_date,
            event.timestamp,
            event.originator_id,
        ),
    )


def _deletion_cancelled(conn: psycopg.Connection[Any], event: Key.DeletionCancelled) -> None:
    # Disabled, unless the key has no usable material (imported material gone): PendingImport.
    _state_change(
        conn,
        event,
        "CancelKeyDeletion",
        "UPDATE audit_keys k SET deletion_date = NULL, updated_at = %s, key_state = CASE"
        " WHEN k.current_material_version > 0 AND (k.origin <> 'EXTERNAL' OR EXISTS ("
        "  SELECT 1 FROM audit_key_materials m WHERE m.key_id = k.key_id"
        "  AND m.version = k.current_material_version AND m.import_state = %s))"
        " THEN %s ELSE %s END WHERE k.key_id = %s RETURNING k.key_state",
        (
            event.timestamp,
            IMPORTED,
            key_states.DISABLED,
            key_states.PENDING_IMPORT,
            event.originator_id,
        ),
    )


def _material_destroyed(conn: psycopg.Connection[Any], event: Key.MaterialDestroyed) -> None:
    _state_change(
        conn,
        event,
        "DeleteKey",
        "UPDATE audit_keys SET key_state = %s, aliases = '{}', next_rotation_date = NULL,"
        " updated_at = %s WHERE key_id = %s RETURNING key_state",
        (key_states.DELETED, event.timestamp, event.originator_id),
    )
    conn.execute(
        "UPDATE audit_key_grants SET ended_at = %s, ended_by = %s, end_event = 'DeleteKey'"
        " WHERE key_id = %s AND ended_at IS NULL",
        (event.timestamp, actor_arn(event), event.originator_id),
    )


def _description_changed(conn: psycopg.Connection[Any], event: Key.DescriptionChanged) -> None:
    conn.execute(
        "UPDATE audit_keys SET description = %s, updated_at = %s WHERE key_id = %s",
        (event.description, event.timestamp, event.originator_id),
    )


def _tagged(conn: psycopg.Connection[Any], event: Key.Tagged) -> None:
    conn.execute(
        "UPDATE audit_keys SET tags = tags || %s::jsonb, updated_at = %s WHERE key_id = %s",
        (json_text(event.tags), event.timestamp, event.originator_id),
    )


def _untagged(conn: psycopg.Connection[Any], event: Key.Untagged) -> None:
    conn.execute(
        "UPDATE audit_keys SET tags = tags - %s::text[], updated_at = %s WHERE key_id = %s",
        (list(event.tag_keys), event.timestamp, event.originator_id),
    )


def _policy_changed(conn: psycopg.Connection[Any], event: Key.PolicyChanged) -> None:
    conn.execute(
        "UPDATE audit_keys SET policy = %s, policy_changed_at = %s, policy_changed_by = %s,"
        " updated_at = %s WHERE key_id = %s",
        (event.policy, event.timestamp, actor_arn(event), event.timestamp, event.originator_id),
    )
    _policy_row(conn, event, "PutKeyPolicy", event.policy_name)


def _grant_created(conn: psycopg.Connection[Any], event: Key.GrantCreated) -> None:
    grant = event.grant
    conn.execute(
        "INSERT INTO audit_key_grants (key_id, grant_id, key_arn, name, grantee_principal,"
        " retiring_principal, operations, constraints, issuing_account, created_at,"
        " created_by) SELECT %s, %s, arn, %s, %s, %s, %s, %s, %s, %s, %s FROM audit_keys"
        " WHERE key_id = %s ON CONFLICT (key_id, grant_id) DO NOTHING",
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
            actor_arn(event),
            event.originator_id,
        ),
    )


def _grant_ended(event_name: str) -> Handler:
    def handler(conn: psycopg.Connection[Any], event: Any) -> None:
        conn.execute(
            "UPDATE audit_key_grants SET ended_at = %s, ended_by = %s, end_event = %s"
            " WHERE key_id = %s AND grant_id = %s AND ended_at IS NULL",
            (event.timestamp, actor_arn(event), event_name, event.originator_id, event.grant_id),
        )

    return handler


def _alias_added(conn: psycopg.Connection[Any], event: Key.AliasAdded) -> None:
    conn.execute(
        "UPDATE audit_keys SET aliases = ARRAY(SELECT DISTINCT unnest(aliases || %s::text)"
        " ORDER BY 1), updated_at = %s WHERE key_id = %s",
        (event.alias_name, event.timestamp, event.originator_id),
    )


def _alias_removed(conn: psycopg.Connection[Any], event: Key.AliasRemoved) -> None:
    conn.execute(
        "UPDATE audit_keys SET aliases = array_remove(aliases, %s), updated_at = %s"
        " WHERE key_id = %s",
        (event.alias_name, event.timestamp, event.originator_id),
    )


def _rotation_schedule_changed(
    conn: psycopg.Connection[Any], event: Key.RotationScheduleChanged
) -> None:
    conn.execute(
        "UPDATE audit_keys SET rotation_enabled = %s, rotation_period_days = %s,"
        " next_rotation_date = %s, updated_at = %s WHERE key_id = %s",
        (
            event.rotation_enabled,
            event.rotation_period_days,
            event.next_rotation_date,
            event.timestamp,
            event.originator_id,
        ),
    )


def _rotated(conn: psycopg.Connection[Any], event: Key.Rotated) -> None:
    material = event.material
    _material_row(conn, event, material)
    conn.execute(
        "UPDATE audit_keys SET current_material_version = %s, current_material_id = %s,"
        " current_material_created = %s, next_rotation_date = %s, updated_at = %s"
        " WHERE key_id = %s",
        (
            material.version,
            material.material_id,
            material.created,
            event.next_rotation_date,
            event.timestamp,
            event.originator_id,
        ),
    )


def _material_imported(conn: psycopg.Connection[Any], event: Key.MaterialImported) -> None:
    material = event.material
    _material_row(conn, event, material, imported=True, valid_to=event.valid_to)
    if event.pending_rotation:
        return
    conn.execute(
        "UPDATE audit_keys SET current_material_version = %s, current_material_id = %s,"
        " current_material_created = %s, updated_at = %s"
        " WHERE key_id = %s AND current_material_version <= %s",
        (
            material.version,
            material.material_id,
            material.created,
            event.timestamp,
            event.originator_id,
            material.version,
        ),
    )
    _state_change(
        conn,
        event,
        "ImportKeyMaterial",
        "UPDATE audit_keys SET key_state = CASE WHEN key_state = %s AND current_material_id = %s"
        " THEN %s ELSE key_state END WHERE key_id = %s RETURNING key_state",
        (key_states.PENDING_IMPORT, material.material_id, key_states.ENABLED, event.originator_id),
    )


def _material_gone(event_name: str) -> Handler:
    def handler(conn: psycopg.Connection[Any], event: Any) -> None:
        conn.execute(
            "UPDATE audit_key_materials SET import_state = %s WHERE key_id = %s"
            " AND material_id = %s",
            (PENDING_IMPORT, event.originator_id, event.material_id),
        )
        if event.current:
            _state_change(
                conn,
                event,
                event_name,
                "UPDATE audit_keys SET updated_at = %s, key_state = CASE WHEN key_state IN"
                " (%s, %s) THEN %s ELSE key_state END WHERE key_id = %s RETURNING key_state",
                (
                    event.timestamp,
                    key_states.ENABLED,
                    key_states.DISABLED,
                    key_states.PENDING_IMPORT,
                    event.originator_id,
                ),
            )

    return handler


# ==== identities ============================================================================
def _principal_created(conn: psycopg.Connection[Any], event: Principal.Created) -> None:
    conn.execute(
        "INSERT INTO audit_principals (principal_id, arn, account_id, principal_type, name,"
        " created_at) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            event.originator_id,
            event.arn,
            event.account_id,
            event.principal_type,
            event.name,
            event.timestamp,
        ),
    )


def _principal_policy_put(conn: psycopg.Connection[Any], event: Principal.PolicyPut) -> None:
    conn.execute(
        "INSERT INTO audit_principal_policies (principal_id, policy_name, policy, updated_at)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (principal_id, policy_name) DO UPDATE"
        " SET policy = EXCLUDED.policy, updated_at = EXCLUDED.updated_at",
        (event.originator_id, event.policy_name, event.policy, event.timestamp),
    )


def _principal_policy_deleted(
    conn: psycopg.Connection[Any], event: Principal.PolicyDeleted
) -> None:
    conn.execute(
        "DELETE FROM audit_principal_policies WHERE principal_id = %s AND policy_name = %s",
        (event.originator_id, event.policy_name),
    )


def _service_designated(conn: psycopg.Connection[Any], event: Principal.ServiceDesignated) -> None:
    conn.execute(
        "UPDATE audit_principals SET service_name = %s WHERE principal_id = %s",
        (event.service_name, event.originator_id),
    )


def _access_key_created(conn: psycopg.Connection[Any], event: AccessKey.Created) -> None:
    conn.execute(
        "INSERT INTO audit_access_keys (aggregate_id, access_key_id, principal_arn, account_id,"
        " created_at) VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            event.originator_id,
            event.access_key_id,
            event.principal_arn,
            event.account_id,
            event.timestamp,
        ),
    )


def _access_key_deactivated(conn: psycopg.Connection[Any], event: AccessKey.Deactivated) -> None:
    conn.execute(
        "UPDATE audit_access_keys SET deactivated_at = %s WHERE aggregate_id = %s",
        (event.timestamp, event.originator_id),
    )


# ==== custom key stores =====================================================================
# A store's settings (domain.custom_key_stores) -> its audit_custom_key_stores columns.
STORE_SETTINGS = {
    "cluster_id": "cloud_hsm_cluster_id",
    "xks_uri_endpoint": "xks_proxy_uri_endpoint",
    "xks_uri_path": "xks_proxy_uri_path",
    "xks_connectivity": "xks_proxy_connectivity",
    "xks_vpc_endpoint_service_name": "xks_proxy_vpc_endpoint_service_name",
    "xks_vpc_endpoint_service_owner": "xks_proxy_vpc_endpoint_service_owner",
    "xks_access_key_id": "xks_proxy_access_key_id",
}
DELETED_STORE = "DELETED"  # the timeline's last state of a deleted store


def _store_settings(settings: dict[str, str]) -> list[str | None]:
    """The columns' values, in STORE_SETTINGS' order (an emptied setting is NULL)."""
    return [settings.get(name) or None for name in STORE_SETTINGS]


def _store_timeline(
    conn: psycopg.Connection[Any],
    event: Any,
    state: str,
    event_name: str,
    error_code: str | None = None,
) -> None:
    conn.execute(
        "INSERT INTO audit_custom_key_store_states (store_aggregate_id, version, changed_at,"
        " connection_state, connection_error_code, event_name, principal_arn)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (
            event.originator_id,
            event.originator_version,
            event.timestamp,
            state,
            error_code,
            event_name,
            "" if (event.actor or {}).get("service") else actor_arn(event),  # KeyLedger's own
        ),
    )


def _store_created(conn: psycopg.Connection[Any], event: CustomKeyStore.Created) -> None:
    columns = ", ".join(STORE_SETTINGS.values())
    conn.execute(
        "INSERT INTO audit_custom_key_stores (store_aggregate_id, store_id, account_id, region,"
        f" name, store_type, {columns}, connection_state, creation_date, created_by,"
        " updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s) ON CONFLICT (store_aggregate_id) DO NOTHING",
        (
            event.originator_id,
            event.store_id,
            event.account_id,
            event.region,
            event.name,
            event.store_type,
            *_store_settings(event.settings),
            DISCONNECTED,
            event.timestamp,
            actor_arn(event),
            event.timestamp,
        ),
    )
    _store_timeline(conn, event, DISCONNECTED, "CreateCustomKeyStore")


def _store_updated(conn: psycopg.Connection[Any], event: CustomKeyStore.Updated) -> None:
    assignments = ", ".join(f"{column} = %s" for column in STORE_SETTINGS.values())
    conn.execute(
        f"UPDATE audit_custom_key_stores SET name = %s, {assignments}, updated_at = %s"
        " WHERE store_aggregate_id = %s",
        (event.name, *_store_settings(event.settings), event.timestamp, event.originator_id),
    )


def _store_connection(state: str, event_name: str) -> Handler:
    """A change of a store's connection state (Connected and ConnectionFailed are the
    outcomes of an attempt, recorded by KeyLedger with no caller)."""

    def handler(conn: psycopg.Connection[Any], event: Any) -> None:
        error_code = getattr(event, "error_code", None) if state == FAILED else None
        conn.execute(
            "UPDATE audit_custom_key_stores SET connection_state = %s,"
            " connection_error_code = %s, updated_at = %s WHERE store_aggregate_id = %s",
            (state, error_code, event.timestamp, event.originator_id),
        )
        _store_timeline(conn, event, state, event_name, error_code)

    return handler


def _store_deleted(conn: psycopg.Connection[Any], event: CustomKeyStore.Deleted) -> None:
    conn.execute(
        "UPDATE audit_custom_key_stores SET deleted_at = %s, deleted_by = %s, updated_at = %s"
        " WHERE store_aggregate_id = %s",
        (event.timestamp, actor_arn(event), event.timestamp, event.originator_id),
    )
    _store_timeline(conn, event, DELETED_STORE, "DeleteCustomKeyStore")


STORE_HANDLERS: dict[type, Handler] = {
    CustomKeyStore.Created: _store_created,
    CustomKeyStore.Updated: _store_updated,
    CustomKeyStore.ConnectionRequested: _store_connection(CONNECTING, "ConnectCustomKeyStore"),
    CustomKeyStore.Connected: _store_connection(CONNECTED, "Connected"),
    CustomKeyStore.ConnectionFailed: _store_connection(FAILED, "ConnectionFailed"),
    CustomKeyStore.Disconnected: _store_connection(DISCONNECTED, "DisconnectCustomKeyStore"),
    CustomKeyStore.Deleted: _store_deleted,
}


# ==== aliases ===============================================================================
def _alias_created(conn: psycopg.Connection[Any], event: Alias.Created) -> None:
    conn.execute(
        "INSERT INTO audit_alias_targets (alias_id, alias_name, account_id, region,"
        " target_key_id) VALUES (%s, %s, %s, %s, %s) ON CONFLICT (alias_id) DO UPDATE"
        " SET target_key_id = EXCLUDED.target_key_id",
        (
            event.originator_id,
            event.alias_name,
            event.account_id,
            event.region,
            event.target_key_id,
        ),
    )


def _alias_retargeted(conn: psycopg.Connection[Any], event: Alias.Retargeted) -> None:
    conn.execute(
        "UPDATE audit_alias_targets SET target_key_id = %s WHERE alias_id = %s",
        (event.target_key_id, event.originator_id),
    )


def _alias_deleted(conn: psycopg.Connection[Any], event: Alias.Deleted) -> None:
    conn.execute(
        "UPDATE audit_alias_targets SET target_key_id = NULL WHERE alias_id = %s",
        (event.originator_id,),
    )


HANDLERS: dict[type, Handler] = {
    Key.Created: _key_created,
    Key.Replicated: _key_replicated,
    Key.Synchronized: _synchronized,
    Key.ReplicaRemoved: _replica_removed,
    Key.Enabled: _set_state(key_states.ENABLED, "EnableKey"),
    Key.Disabled: _set_state(key_states.DISABLED, "DisableKey"),
    Key.DeletionScheduled: _deletion_scheduled,
    Key.DeletionCancelled: _deletion_cancelled,
    Key.MaterialDestroyed: _material_destroyed,
    Key.DescriptionChanged: _description_changed,
    Key.Tagged: _tagged,
    Key.Untagged: _untagged,
    Key.PolicyChanged: _policy_changed,
    Key.GrantCreated: _grant_created,
    Key.GrantRetired: _grant_ended("RetireGrant"),
    Key.GrantRevoked: _grant_ended("RevokeGrant"),
    Key.AliasAdded: _alias_added,
    Key.AliasRemoved: _alias_removed,
    Key.RotationScheduleChanged: _rotation_schedule_changed,
    Key.Rotated: _rotated,
    Key.MaterialImported: _material_imported,
    Key.MaterialExpired: _material_gone("DeleteExpiredKeyMaterial"),
    Key.ImportedMaterialDeleted: _material_gone("DeleteImportedKeyMaterial"),
    Principal.Created: _principal_created,
    Principal.PolicyPut: _principal_policy_put,
    Principal.PolicyDeleted: _principal_policy_deleted,
    Principal.ServiceDesignated: _service_designated,
    AccessKey.Created: _access_key_created,
    AccessKey.Deactivated: _access_key_deactivated,
    Alias.Created: _alias_created,
    Alias.Retargeted: _alias_retargeted,
    Alias.Deleted: _alias_deleted,
    **STORE_HANDLERS,
}
