"""``keyledger audit export`` with ledger evidence and digests, checked by the standalone
verifier (tools/offline_verifier/keyledger_verify.py) run where only Python and
``cryptography`` exist: real events over three hours, the Merkle log caught up, checkpoints
signed with a test key; every tampering is named by its reason (docs/ledger-export.md)."""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)

from app.bootstrap import Runtime
from app.infrastructure.ledger_signing import LedgerSigner
from app.settings import load_settings
from domain.checkpoints import Checkpoint, parse_checkpoint, sign_checkpoint
from domain.signed_notes import NoteVerifier, parse_note
from projections.audit_trail import AuditTrailProjection
from projections.merkle_log import MerkleLogProjection
from tests.audit.test_merkle_log import _fill
from tests.conftest import ACCOUNT_ID, Service
from tests.support.databases import database_backends, drop, fresh_database

REPO = Path(__file__).resolve().parents[2]
VERIFIER = REPO / "tools" / "offline_verifier" / "keyledger_verify.py"
ORIGIN = "keyledger.test/export"
# The CLI with the digest-signing hook given the test key (the service's key is wired there).
SIGNED_CLI = """
import sys
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from app.entrypoints.cli import trail_digests
from app.entrypoints.cli.main import main
key = load_pem_private_key(open(sys.argv[1], "rb").read(), None)
signer = trail_digests.DigestSigner(sys.argv[2], key)
trail_digests.load_digest_signer = lambda settings, url: signer
sys.exit(main(sys.argv[3:]))
"""
# The verifier alone: no site-packages, no repository, only cryptography (and cffi) on the path.
ISOLATED = """
import runpy, sys
sys.path.insert(0, sys.argv[1])
sys.argv = sys.argv[2:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass
class Ledger:
    runtime: Runtime
    key: Ed25519PrivateKey
    key_file: Path
    vkey: str
    tmp: Path
    start: str = ""
    end: str = ""

    @property
    def url(self) -> str:
        return self.runtime.database_url

    def catch_up_and_sign(self) -> None:
        head = int(self.runtime.ledger.recorder.max_notification_id() or 0)
        for view in (AuditTrailProjection, MerkleLogProjection):
            view(self.runtime.ledger, self.runtime.pool, self.url).catch_up_to(head)
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SELECT size, root FROM ledger_tree").fetchone()
            assert row is not None
            note = sign_checkpoint(Checkpoint(ORIGIN, int(row[0]), bytes(row[1])), self.key)
            conn.execute(
                "INSERT INTO ledger_checkpoints (size, root, note) VALUES (%s, %s, %s)",
                (row[0], row[1], note),
            )

    def cli(self, *args: str, signed: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["-c", SIGNED_CLI, str(self.key_file), ORIGIN] if signed else ["-m", "app"]
        return subprocess.run(
            [sys.executable, *command, "audit", "export", *args],
            cwd=REPO,
            env={**os.environ, "KEYLEDGER_DATABASE_URL": self.url},
            capture_output=True,
            text=True,
            timeout=120,
        )


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """Events in three hours, a checkpoint after each; the export's period is the middle."""
    url = fresh_database(database_backends()[0])
    tmp = tmp_path_factory.mktemp("ledger-export")
    settings = load_settings(
        database_url=url,
        data_dir=tmp,
        test_clock=True,
        root_key=base64.b64encode(secrets.token_bytes(32)).decode(),
    )
    runtime = Runtime.build(settings)
    runtime.writer.start()
    runtime.bootstrap()
    key = Ed25519PrivateKey.generate()
    key_file = tmp / "signing.pem"
    key_file.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    verifier = NoteVerifier.of(ORIGIN, key.public_key())
    found = Ledger(runtime, key, key_file, str(verifier), tmp)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO ledger_signers (key_name, key_id, public_key, vkey)"
                " VALUES (%s, %s, %s, %s)",
                (ORIGIN, verifier.key_id, verifier.public_key, found.vkey),
            )
        _fill(runtime, 2)
        found.catch_up_and_sign()
        runtime.clock.advance(timedelta(hours=1))
        found.start = runtime.clock.now().isoformat()
        _fill(runtime, 2)
        runtime.clock.advance(timedelta(hours=1))
        _fill(runtime, 1)
        found.end = (runtime.clock.now() + timedelta(seconds=1)).isoformat()
        found.catch_up_and_sign()
        runtime.clock.advance(timedelta(hours=1))
        _fill(runtime, 1)
        found.catch_up_and_sign()
        yield found
    finally:
        runtime.stop()
        drop(url)


@pytest.fixture(scope="module")
def exports(ledger: Ledger) -> dict[str, Path]:
    """The period's export (signed and not) and the whole ledger's, each written once."""
    out = {name: ledger.tmp / name for name in ("range", "unsigned", "whole")}
    period = ["--start", ledger.start, "--end", ledger.end]
    for name, args, signed in (
        ("range", period, True),
        ("unsigned", period, False),
        ("whole", ["--ledger-only"], True),
    ):
        done = ledger.cli("--out", str(out[name]), *args, signed=signed)
        assert done.returncode == 0, done.stderr
    return out


def _isolated_path(tmp: Path) -> Path:
    """A folder holding only cryptography and what it loads."""
    folder = tmp / "pylib"
    if not folder.exists():
        folder.mkdir()
        for name in ("cryptography", "cffi", "_cffi_backend", "pycparser"):
            spec = importlib.util.find_spec(name)
            if spec is None or spec.origin is None:
                continue
            origin = Path(spec.origin)
            source = origin.parent if origin.name == "__init__.py" else origin
            (folder / source.name).symlink_to(source)
    return folder


def verify(
    export: Path, tmp: Path, *args: str, module: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Copy the verifier and the export to a bare folder and run it there with ``python -I``
    (no site-packages, no repository on the path)."""
    work = tmp / "auditor"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    shutil.copy(VERIFIER, work / "keyledger_verify.py")
    shutil.copytree(export, work / "export")
    pylib = _isolated_path(tmp)
    code = f"import sys; sys.path.insert(0, {str(pylib)!r}); import {module}" if module else ""
    command = ["-c", code] if module else ["-c", ISOLATED, str(pylib), "keyledger_verify.py"]
    return subprocess.run(
        [sys.executable, "-I", "-S", *command, *([] if module else ["export", *args])],
        cwd=work,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_period_export_verifies_with_only_python_and_cryptography(
    ledger: Ledger, exports: dict[str, Path], tmp_path: Path
) -> None:
    done = verify(exports["range"], tmp_path, "--public-key", ledger.vkey, "--origin", ORIGIN)
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("OK\n")
    info = json.loads((exports["range"] / "ledger" / "export.json").read_text())
    # The period lies strictly inside the ledger: a real prefix and a real consistency proof.
    assert 0 < info["first_leaf"] < info["end_leaf"] < info["checkpoint_size"]
    assert info["records"] > 0 and f"records: {info['records']}," in done.stdout
    assert "digests: 2 in 1 chain(s)" in done.stdout
    signers = (exports["range"] / "ledger" / "signers.txt").read_text()
    assert signers == ledger.vkey + "\n"
    # ... and in that bare environment the service's code is not importable.
    assert verify(exports["range"], tmp_path, module="domain").returncode != 0
    assert verify(exports["range"], tmp_path, module="cryptography").returncode == 0


def test_the_whole_ledger_export_checks_every_checkpoint(
    ledger: Ledger, exports: dict[str, Path], tmp_path: Path
) -> None:
    done = verify(exports["whole"], tmp_path, "--public-key", ledger.vkey)
    assert done.returncode == 0, done.stderr
    assert "3 checkpoints, each the root of its prefix" in done.stdout
    assert not (exports["whole"] / "events.jsonl").exists()


def test_an_export_without_the_key_is_refused_unless_accepted_as_unsigned(
    ledger: Ledger, exports: dict[str, Path], tmp_path: Path
) -> None:
    assert not list(exports["unsigned"].rglob("*CloudTrail-Digest*"))
    refused = verify(exports["unsigned"], tmp_path, "--public-key", ledger.vkey)
    assert refused.returncode == 1
    assert "FAILED: digests missing" in refused.stderr
    accepted = verify(exports["unsigned"], tmp_path, "--public-key", ledger.vkey, "--unsigned")
    assert accepted.returncode == 0, accepted.stderr
    assert "WARNING: --unsigned" in accepted.stdout


def test_without_a_covering_checkpoint_the_export_fails_saying_why(
    ledger: Ledger, exports: dict[str, Path]
) -> None:
    ledger.runtime.clock.advance(timedelta(hours=1))
    _fill(ledger.runtime, 1)
    head = int(ledger.runtime.ledger.recorder.max_notification_id() or 0)
    AuditTrailProjection(ledger.runtime.ledger, ledger.runtime.pool, ledger.url).catch_up_to(head)
    done = ledger.cli("--out", str(ledger.tmp / "late"), "--wait-checkpoint", "0.5")
    assert done.returncode == 2
    assert "no ledger evidence: the Merkle log has not reached event" in done.stderr
    assert not (ledger.tmp / "late" / "manifest.json").exists()


# --- tampering ---------------------------------------------------------------------------------
def _rehash(export: Path) -> None:
    """What an attacker does after an edit: make the manifest match the files again."""
    path = export / "manifest.json"
    manifest = json.loads(path.read_text())
    kept = []
    for entry in manifest["files"]:
        file = export / entry["path"]
        if file.exists():
            entry["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
            kept.append(entry)
    manifest["files"] = kept
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def _edit_line(path: Path, index: int, edit: Callable[[dict[str, Any]], None]) -> None:
    lines = path.read_text().splitlines(keepends=True)
    item = json.loads(lines[index])
    edit(item)
    lines[index] = json.dumps(item) + "\n"
    path.write_text("".join(lines))


def _log_files(export: Path) -> list[Path]:
    return sorted((export / "AWSLogs").glob("*/CloudTrail/*/*/*/*/*.json.gz"))


def _digests(export: Path) -> list[Path]:
    return sorted((export / "AWSLogs").glob("*/CloudTrail-Digest/*/*/*/*/*.json.gz"))


def _record_altered(export: Path, ledger: Ledger) -> None:
    _edit_line(export / "events.jsonl", 0, lambda r: r.update(eventName="Decrypt"))


def _record_altered_and_rehashed(export: Path, ledger: Ledger) -> None:
    _record_altered(export, ledger)
    _rehash(export)


def _record_dropped_from_a_log_file(export: Path, ledger: Ledger) -> None:
    target = _log_files(export)[0]
    content = json.loads(gzip.decompress(target.read_bytes()))
    content["Records"] = content["Records"][1:]
    target.write_bytes(gzip.compress(json.dumps(content).encode()))
    _rehash(export)


def _leaf_altered(export: Path, ledger: Ledger) -> None:
    _edit_line(export / "ledger" / "leaves.jsonl", 1, lambda leaf: leaf.update(version=99))
    _rehash(export)


def _range_proof_flipped(export: Path, ledger: Ledger) -> None:
    path = export / "ledger" / "range-proof.json"
    proof = json.loads(path.read_text())
    first = proof["consistency"][0]
    proof["consistency"][0] = ("0" if first[0] != "0" else "1") + first[1:]
    path.write_text(json.dumps(proof))
    _rehash(export)


def _checkpoint_resigned(export: Path, ledger: Ledger) -> None:
    path = export / "ledger" / "checkpoint.note"
    text = parse_note(path.read_text()).text
    path.write_text(sign_checkpoint(parse_checkpoint(text), Ed25519PrivateKey.generate(), ORIGIN))
    _rehash(export)


def _digest_altered(export: Path, ledger: Ledger) -> None:
    target = _digests(export)[0]
    body = json.loads(gzip.decompress(target.read_bytes()))
    body["logFiles"][0]["hashValue"] = "0" * 64
    target.write_bytes(gzip.compress(json.dumps(body).encode()))
    _rehash(export)


def _digest_removed(export: Path, ledger: Ledger) -> None:
    first = _digests(export)[0]
    first.unlink()
    Path(f"{first}.sig").unlink()
    _rehash(export)


def _last_hour_removed(export: Path, ledger: Ledger) -> None:
    # The newest digest, its log files and their records: only the signed manifest knows.
    last = _digests(export)[-1]
    body = json.loads(gzip.decompress(last.read_bytes()))
    dropped: set[str] = set()
    for entry in body["logFiles"]:
        log = export / entry["s3Object"]
        dropped |= {r["eventID"] for r in json.loads(gzip.decompress(log.read_bytes()))["Records"]}
        log.unlink()
    last.unlink()
    Path(f"{last}.sig").unlink()
    for name in ("events.jsonl", "events.csv"):
        lines = (export / name).read_text().splitlines(keepends=True)
        (export / name).write_text("".join(x for x in lines if not any(e in x for e in dropped)))
    _rehash(export)


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (_record_altered, "file altered"),
        (_record_altered_and_rehashed, "record altered"),
        (_record_dropped_from_a_log_file, "log file altered"),
        (_leaf_altered, "range proof invalid"),
        (_range_proof_flipped, "range proof invalid"),
        (_checkpoint_resigned, "checkpoint unsigned"),
        (_digest_altered, "digest signature invalid"),
        (_digest_removed, "digest chain broken"),
        (_last_hour_removed, "manifest signature invalid"),
    ],
)
def test_tampering_with_the_export_is_named(
    ledger: Ledger,
    exports: dict[str, Path],
    tmp_path: Path,
    tamper: Callable[[Path, Ledger], None],
    reason: str,
) -> None:
    export = tmp_path / "export"
    shutil.copytree(exports["range"], export)
    tamper(export, ledger)
    done = verify(export, tmp_path, "--public-key", ledger.vkey)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith(f"FAILED: {reason}:"), done.stderr


def test_the_wrong_pinned_key_is_refused(
    ledger: Ledger, exports: dict[str, Path], tmp_path: Path
) -> None:
    other = str(NoteVerifier.of(ORIGIN, Ed25519PrivateKey.generate().public_key()))
    done = verify(exports["range"], tmp_path, "--public-key", other)
    assert done.returncode == 1
    assert done.stderr.startswith("FAILED: checkpoint unsigned:"), done.stderr
    trusting = verify(exports["range"], tmp_path, "--trust-export-key")
    assert trusting.returncode == 0 and "WARNING: --trust-export-key" in trusting.stderr


def test_a_record_forged_with_its_log_file_is_not_in_the_ledger(
    ledger: Ledger, exports: dict[str, Path], tmp_path: Path
) -> None:
    """Without digests (--unsigned), an attacker may rewrite records consistently in every
    file; a record whose eventID is no leaf's is still caught."""
    export = tmp_path / "export"
    shutil.copytree(exports["unsigned"], export)
    forged = "00000000-0000-5000-8000-000000000000"
    target = _log_files(export)[0]
    content = json.loads(gzip.decompress(target.read_bytes()))
    original = content["Records"][0]["eventID"]
    content["Records"][0]["eventID"] = forged
    target.write_bytes(gzip.compress(json.dumps(content).encode()))
    for name in ("events.jsonl", "events.csv"):
        (export / name).write_text((export / name).read_text().replace(original, forged))
    _rehash(export)
    done = verify(export, tmp_path, "--public-key", ledger.vkey, "--unsigned")
    assert done.returncode == 1
    assert done.stderr.startswith("FAILED: record not in ledger:"), done.stderr


def test_a_forked_checkpoint_is_caught_in_the_whole_ledger(
    ledger: Ledger, exports: dict[str, Path], tmp_path: Path
) -> None:
    """The log's own key signs a second root at a past size: the rebuild finds it."""
    export = tmp_path / "export"
    shutil.copytree(exports["whole"], export)
    _edit_line(
        export / "ledger" / "checkpoints.jsonl",
        1,
        lambda item: item.update(
            note=sign_checkpoint(
                Checkpoint(ORIGIN, item["size"], hashlib.sha256(b"fork").digest()), ledger.key
            )
        ),
    )
    _rehash(export)
    done = verify(export, tmp_path, "--public-key", ledger.vkey)
    assert done.returncode == 1
    assert done.stderr.startswith("FAILED: checkpoint inconsistent:"), done.stderr


def test_a_running_services_own_key_signs_its_export(service: Service, tmp_path: Path) -> None:
    """The service's checkpoint signer (not a test key) anchors the export, and the export
    command, given the root key, signs the digests and the manifest with the same key: the
    export verifies with that key pinned. Without the root key it is unsigned, and says so."""
    kms = service.client("kms")
    start = service.runtime.clock.now()
    key = kms.create_key(Description="exported with evidence")["KeyMetadata"]["KeyId"]
    kms.encrypt(KeyId=key, Plaintext=b"x")
    end = service.runtime.clock.now() + timedelta(seconds=1)
    assert service.runtime.audit is not None
    service.runtime.audit.wait_for_current()
    period = ["--start", start.isoformat(), "--end", end.isoformat(), "--account", ACCOUNT_ID]
    root_key = service.runtime.settings.root_key
    assert root_key is not None
    pinned = LedgerSigner.from_seed(
        service.runtime.settings.checkpoint_origin, service.runtime.vault.ledger_signing_seed()
    ).vkey

    def export(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
        command = ["audit", "export", "--out", str(out), *period, "--wait-checkpoint", "30"]
        return subprocess.run(
            [sys.executable, "-m", "app", *command],
            cwd=REPO,
            env={**os.environ, "KEYLEDGER_DATABASE_URL": service.runtime.database_url} | env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    signed = export(tmp_path / "signed", KEYLEDGER_ROOT_KEY=root_key.get_secret_value())
    assert signed.returncode == 0, signed.stderr
    checked = verify(tmp_path / "signed", tmp_path, "--public-key", pinned)
    assert checked.returncode == 0, checked.stderr
    assert "records: 2," in checked.stdout

    unsigned = export(tmp_path / "unsigned")
    assert unsigned.returncode == 0 and "unsigned manifest" in unsigned.stderr
    refused = verify(tmp_path / "unsigned", tmp_path, "--public-key", pinned)
    assert refused.returncode == 1, refused.stdout
    accepted = verify(tmp_path / "unsigned", tmp_path, "--public-key", pinned, "--unsigned")
    assert accepted.returncode == 0, accepted.stderr
