"""Audit trail files an auditor can take away.

``export_trail`` writes the records of a period as CloudTrail delivers them to S3 (one
gzipped ``{"Records": [...]}`` file per account, Region and hour, under
``AWSLogs/<account>/CloudTrail/<region>/<yyyy>/<mm>/<dd>/``), the same records as JSON lines
and CSV, and a ``manifest.json`` listing every file with its SHA-256 and record count, so
that nothing can be changed or left out unnoticed once the manifest is kept.

With the ledger's signing key (``signer``), it also writes CloudTrail-style digest files and
signs the manifest (app/entrypoints/cli/trail_digests.py); ``ledger`` adds the ledger
evidence (app/entrypoints/cli/ledger_export.py). docs/ledger-export.md has the format.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from app.entrypoints.cli.trail_digests import DigestSigner, sign_manifest, write_digests
from projections.audit_queries import AuditRow

CSV_COLUMNS = (
    "eventTime",
    "eventID",
    "eventName",
    "eventSource",
    "readOnly",
    "errorCode",
    "principalArn",
    "userName",
    "accessKeyId",
    "sourceIPAddress",
    "awsRegion",
    "requestID",
    "resources",
    "encryptionContextKeys",
    "recipientAccountId",
)
CONTEXT_MEMBERS = ("encryptionContext", "sourceEncryptionContext", "destinationEncryptionContext")


def csv_values(row: AuditRow) -> list[Any]:
    """One audit record as a CSV line's values (CSV_COLUMNS)."""
    record = orjson.loads(row.record)
    identity = record.get("userIdentity") or {}
    parameters = record.get("requestParameters") or {}
    context_keys = [
        key
        for member in CONTEXT_MEMBERS
        if isinstance(parameters.get(member), dict)
        for key in parameters[member]
    ]
    return [
        record.get("eventTime"),
        record.get("eventID"),
        record.get("eventName"),
        record.get("eventSource"),
        record.get("readOnly"),
        record.get("errorCode") or "",
        identity.get("arn", ""),
        row.username,
        row.access_key_id,
        record.get("sourceIPAddress"),
        record.get("awsRegion"),
        record.get("requestID", ""),
        " ".join(row.resources),
        " ".join(context_keys),
        row.recipient_account_id,
    ]


def csv_lines(rows: Iterable[AuditRow]) -> Iterator[str]:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(csv_values(row))
        yield out.getvalue()
        out.seek(0)
        out.truncate()
    if out.tell():
        yield out.getvalue()


def jsonl_lines(rows: Iterable[AuditRow]) -> Iterator[str]:
    for row in rows:
        yield row.record + "\n"


@dataclass
class ExportedFile:
    path: str
    records: int
    sha256: str  # of the file as written
    sha256_uncompressed: str | None = None  # of a .gz file's content (as CloudTrail hashes)
    oldest_event_time: str | None = None
    newest_event_time: str | None = None


@dataclass
class Manifest:
    start: datetime | None
    end: datetime | None
    account: str | None
    generated_at: datetime
    ledger_position: int
    records: int = 0
    files: list[ExportedFile] = field(default_factory=list)
    # The ledger events (notification ids) of the oldest- and newest-numbered records.
    first_event: int | None = None
    last_event: int | None = None
    digest_key: str | None = None  # the digests' key fingerprint; None: no digests

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": {"start": _iso(self.start), "end": _iso(self.end)},
            "account": self.account or "all accounts",
            "generated_at": self.generated_at.isoformat(),
            "audit_trail_position": self.ledger_position,
            "records": self.records,
            "events": {"first": self.first_event, "last": self.last_event},
            "digest_public_key_fingerprint": self.digest_key,
            "files": [vars(f) for f in self.files],
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _write(base: Path, relative: str, data: bytes) -> str:
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


LedgerEvidence = Callable[["Manifest"], list[ExportedFile]]


def export_trail(
    rows: Iterable[AuditRow],
    out: Path,
    manifest: Manifest,
    signer: DigestSigner | None = None,
    ledger: LedgerEvidence | None = None,
) -> Manifest:
    """Write ``rows`` (oldest first) under ``out``, digests if ``signer``, the ledger
    evidence if ``ledger``; return the manifest, also written (and signed if ``signer``)."""
    write_records(rows, out, manifest)
    if signer is not None:
        log_files = [f for f in manifest.files if f.path.endswith(".json.gz")]
        for written in write_digests(out, log_files, signer):
            manifest.files.append(ExportedFile(written.path, 0, written.sha256))
        manifest.digest_key = signer.fingerprint
    if ledger is not None:
        manifest.files.extend(ledger(manifest))
    write_manifest(out, manifest, signer)
    return manifest


def write_manifest(out: Path, manifest: Manifest, signer: DigestSigner | None = None) -> None:
    (out / "manifest.json").write_text(json.dumps(manifest.as_dict(), indent=2) + "\n")
    if signer is not None:
        sign_manifest(out, signer)


def write_records(rows: Iterable[AuditRow], out: Path, manifest: Manifest) -> None:
    """The log files, events.jsonl and events.csv; counts them into ``manifest``."""
    out.mkdir(parents=True, exist_ok=True)
    jsonl = (out / "events.jsonl").open("w", encoding="utf-8")
    csv_file = (out / "events.csv").open("w", encoding="utf-8", newline="")
    writer = csv.writer(csv_file)
    writer.writerow(CSV_COLUMNS)
    group: tuple[str, str, str] | None = None
    records: list[str] = []
    times: list[str] = []

    def flush() -> None:
        if group is None or not records:
            return
        account, region, hour = group
        content = ('{"Records":[' + ",".join(records) + "]}").encode()
        digest = hashlib.sha256(content).hexdigest()
        name = (
            f"AWSLogs/{account}/CloudTrail/{region}/{hour[0:4]}/{hour[4:6]}/{hour[6:8]}/"
            f"{account}_CloudTrail_{region}_{hour}00Z_{digest[:16]}.json.gz"
        )
        compressed = gzip.compress(content, mtime=0)
        manifest.files.append(
            ExportedFile(
                name, len(records), _write(out, name, compressed), digest, times[0], times[-1]
            )
        )

    try:
        for row in rows:
            key = (
                row.recipient_account_id,
                orjson.loads(row.record).get("awsRegion") or "unknown",
                row.event_time.strftime("%Y%m%dT%H"),
            )
            if key != group:
                flush()
                group, records, times = key, [], []
            records.append(row.record)
            times.append(row.event_time.isoformat())
            jsonl.write(row.record + "\n")
            writer.writerow(csv_values(row))
            manifest.records += 1
            event = row.notification_id
            manifest.first_event = min(event, manifest.first_event or event)
            manifest.last_event = max(event, manifest.last_event or event)
        flush()
    finally:
        jsonl.close()
        csv_file.close()
    for name in ("events.jsonl", "events.csv"):
        data = (out / name).read_bytes()
        count = manifest.records
        manifest.files.append(ExportedFile(name, count, hashlib.sha256(data).hexdigest()))
