"""``keyledger audit replay``: the views rebuilt from the ledger equal the live ones, and a
view row altered by hand is reported (and fails the command)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from projections.replay import replay
from tests.conftest import Service

REPO = Path(__file__).resolve().parents[2]


def _cli(service: Service, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": service.runtime.database_url}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def ledger_with_history(kms: Any) -> dict[str, Any]:
    """A little of everything the views show: keys, aliases, tags, policy, grants, uses."""
    key = kms.create_key(Description="replayed", Tags=[{"TagKey": "team", "TagValue": "a"}])
    key_id = key["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=f"alias/replay-{key_id[:8]}", TargetKeyId=key_id)
    blob = kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"a": "b"})
    kms.decrypt(CiphertextBlob=blob["CiphertextBlob"], EncryptionContext={"a": "b"})
    other = kms.create_key(Description="re-encrypted into")["KeyMetadata"]["KeyId"]
    kms.re_encrypt(  # one record naming two keys, counted under each
        CiphertextBlob=blob["CiphertextBlob"],
        SourceEncryptionContext={"a": "b"},
        DestinationKeyId=other,
    )
    kms.generate_data_key(KeyId=f"alias/replay-{key_id[:8]}", KeySpec="AES_256")
    kms.enable_key_rotation(KeyId=key_id)
    kms.rotate_key_on_demand(KeyId=key_id)
    kms.untag_resource(KeyId=key_id, TagKeys=["team"])
    kms.describe_key(KeyId=key_id)
    kms.disable_key(KeyId=key_id)
    return dict(key["KeyMetadata"])


def test_replay_finds_no_difference_on_the_test_suites_ledger(
    service: Service, ledger_with_history: dict[str, Any]
) -> None:
    assert service.runtime.audit is not None
    assert service.runtime.audit.wait_for_current()  # the trail includes the history
    result = replay(service.runtime.ledger, service.runtime.database_url)
    assert result.identical, result.report()
    assert result.rows["audit_events"][0] > 0
    assert result.rows["audit_events"][0] == result.rows["audit_events"][1]
    assert result.rows["kms_keys"][0] == result.rows["kms_keys"][1] > 0


def test_replay_reports_a_view_row_altered_by_hand(
    service: Service, ledger_with_history: dict[str, Any]
) -> None:
    key_id = ledger_with_history["KeyId"]
    assert service.runtime.audit is not None
    assert service.runtime.audit.wait_for_current()  # the rows to alter must be there
    with psycopg.connect(service.runtime.database_url, autocommit=True) as conn:
        conn.execute("UPDATE audit_keys SET description = 'tampered' WHERE key_id = %s", (key_id,))
        # The row rewritten as a whole record (migrations/024: most are composed when read).
        conn.execute(
            "UPDATE audit_event_rows r SET template_id = NULL, record_members = NULL,"
            " record = replace(v.record, '\"Decrypt\"', '\"Encrypt\"') FROM audit_events v"
            " WHERE (v.notification_id, v.recipient_account_id)"
            " = (r.notification_id, r.recipient_account_id)"
            " AND r.event_name = 'Decrypt' AND r.resource_arn = %s",
            (ledger_with_history["Arn"],),
        )
        try:
            result = replay(service.runtime.ledger, service.runtime.database_url)
            process = _cli(service, "audit", "replay")
        finally:
            conn.execute(
                "UPDATE audit_keys SET description = 'replayed' WHERE key_id = %s", (key_id,)
            )
            conn.execute(
                'UPDATE audit_event_rows SET record = replace(record, \'"eventName":"Encrypt"\','
                " '\"eventName\":\"Decrypt\"') WHERE event_name = 'Decrypt' AND resource_arn = %s",
                (ledger_with_history["Arn"],),
            )
    assert not result.identical
    assert result.difference_counts == {"audit_keys": 1, "audit_events": 1}
    changed = {d.table: d for d in result.differences}
    assert changed["audit_keys"].kind == "changed"
    assert changed["audit_keys"].key == {"key_id": key_id}
    assert changed["audit_keys"].detail == {"description": ("tampered", "replayed")}
    assert set(changed["audit_events"].detail) == {"record"}
    assert process.returncode == 1, process.stdout + process.stderr
    assert "audit_keys" in process.stdout and "tampered" in process.stdout
    assert "2 DIFFERENCE(S)" in process.stdout


def test_the_replay_command_exits_zero_without_differences(
    service: Service, ledger_with_history: dict[str, Any]
) -> None:
    process = _cli(service, "audit", "replay")
    assert process.returncode == 0, process.stdout + process.stderr
    assert "NO DIFFERENCES" in process.stdout


def test_replay_until_rebuilds_the_trail_of_a_past_period(
    service: Service, kms: Any, ledger_with_history: dict[str, Any]
) -> None:
    moment = service.runtime.clock.now()
    kms.describe_key(KeyId=ledger_with_history["KeyId"])  # after the moment
    result = replay(
        service.runtime.ledger, service.runtime.database_url, until=moment - timedelta(0)
    )
    assert result.identical, result.report()
    assert "audit_keys" in result.not_compared
    assert result.rows["audit_events"][0] > 0
