"""``keyledger audit export``: a period's trail in files an auditor can take away, with a
manifest that proves what they contain."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from tests.conftest import ACCOUNT_ID, Service

REPO = Path(__file__).resolve().parents[2]


def test_export_writes_the_period_as_cloudtrail_delivers_it(
    service: Service, kms: Any, tmp_path: Path
) -> None:
    start = service.runtime.clock.now()
    key = kms.create_key(Description="exported")["KeyMetadata"]
    kms.encrypt(KeyId=key["KeyId"], Plaintext=b"never in the files", EncryptionContext={"c": "1"})
    end = service.runtime.clock.now() + timedelta(seconds=1)
    assert service.runtime.audit is not None
    service.runtime.audit.wait_for_current()
    out = tmp_path / "evidence"
    env = {**os.environ, "KEYLEDGER_DATABASE_URL": service.runtime.database_url}
    process = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "audit",
            "export",
            "--out",
            str(out),
            "--start",
            start.isoformat(),
            "--end",
            end.isoformat(),
            "--account",
            ACCOUNT_ID,
            "--no-ledger",  # the trail files alone: tests/audit/test_ledger_export.py has the rest
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert process.returncode == 0, process.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["account"] == ACCOUNT_ID
    assert manifest["records"] >= 2
    delivered: list[dict[str, Any]] = []
    for entry in manifest["files"]:
        data = (out / entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        if entry["path"].endswith(".json.gz"):
            assert entry["path"].startswith(f"AWSLogs/{ACCOUNT_ID}/CloudTrail/us-east-1/")
            content = gzip.decompress(data)
            assert hashlib.sha256(content).hexdigest() == entry["sha256_uncompressed"]
            records = json.loads(content)["Records"]
            assert len(records) == entry["records"]
            delivered.extend(records)
    assert len(delivered) == manifest["records"]
    names = [
        r["eventName"]
        for r in delivered
        if r["resources"] and r["resources"][0]["ARN"] == key["Arn"]
    ]
    assert names == ["CreateKey", "Encrypt"]  # oldest first
    assert all(start.isoformat()[:19] <= r["eventTime"][:19] for r in delivered)
    lines = (out / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["eventID"] for line in lines] == [r["eventID"] for r in delivered]
    rows = list(csv.DictReader((out / "events.csv").open()))
    assert [row["eventID"] for row in rows] == [r["eventID"] for r in delivered]
    everything = b"".join((out / e["path"]).read_bytes() for e in manifest["files"])
    assert b"never in the files" not in everything
