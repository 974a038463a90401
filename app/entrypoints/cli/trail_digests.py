"""CloudTrail-style digest files for an exported trail (docs/ledger-export.md).

CloudTrail's log file integrity validation, with the ledger's Ed25519 key in place of
CloudTrail's regional RSA key: one digest per account, Region and hour that has log files,
under ``AWSLogs/<account>/CloudTrail-Digest/<region>/<yyyy>/<mm>/<dd>/``, listing each log
file with the SHA-256 of its uncompressed content, and chained (per account and Region) to
the previous digest by its object name, the SHA-256 of its uncompressed content and its
signature. The signature is CloudTrail's string to sign::

    <digestEndTime>\\n<digestS3Bucket>/<digestS3Object>\\n<hex SHA-256 of this digest,
    uncompressed>\\n<previousDigestSignature, or "null" for the first of a chain>

signed with Ed25519. CloudTrail keeps the signature in S3 metadata; without S3 it is the hex
in the sidecar ``<digest>.sig``. ``digestPublicKeyFingerprint`` is the hex SHA-256 of the
32-byte public key. ``manifest.json.sig`` signs the manifest the same way, so that no file
can be dropped from the export unnoticed.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from psycopg_pool import ConnectionPool

from app.infrastructure.ledger_signing import LedgerSigner
from app.infrastructure.root_keys import RootKey, close_root_key
from app.infrastructure.vault import Vault, load_root_key
from app.settings import Settings

DIGEST_BUCKET = "keyledger-export"  # no S3: the name digests give the export's root
TRAIL_NAME = "keyledger"
SIGNATURE_ALGORITHM = "Ed25519"
_LOG_NAME = re.compile(r"AWSLogs/([^/]+)/CloudTrail/([^/]+)/.*_(\d{8}T\d{2})00Z_\w+\.json\.gz")
_CLOUDTRAIL_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True)
class DigestSigner:
    """The ledger's Ed25519 key, which signs the digests and the manifest."""

    name: str
    private_key: Ed25519PrivateKey

    @property
    def fingerprint(self) -> str:
        raw = self.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return hashlib.sha256(raw).hexdigest()

    def sign(self, message: bytes) -> str:
        return self.private_key.sign(message).hex()


def load_digest_signer(settings: Settings, database_url: str) -> DigestSigner | None:
    """The ledger's signing key (the checkpoints' key, app/infrastructure/ledger_signing.py),
    for ``keyledger audit export`` to sign digests and the manifest with; None when this
    command has no root key (none configured, and no development key in the data dir):
    then the export is unsigned and says so. A root key that is not the database's is an
    error (RootKeyError), never an unsigned export."""
    root_key: bytes | RootKey | None = settings.root_key_bytes()
    if settings.root_key_provider == "pkcs11":
        from app.bootstrap import root_key_from_settings

        root_key = root_key_from_settings(settings)
    elif root_key is None:
        development_key = settings.data_dir / "root.key"
        if settings.database_url is not None or not development_key.exists():
            return None
        root_key = load_root_key(data_dir=settings.data_dir, embedded=True)
    pool = ConnectionPool(database_url, min_size=1, max_size=1, open=True)
    try:
        vault = Vault(root_key, pool)
        vault.check_root_key()
        signer = LedgerSigner.from_seed(settings.checkpoint_origin, vault.ledger_signing_seed())
    finally:
        pool.close()
        if not isinstance(root_key, bytes):
            close_root_key(root_key)
    return DigestSigner(signer.origin, signer.private_key)


class LogFile(Protocol):
    """What a digest lists of a log file (audit_export.ExportedFile)."""

    @property
    def path(self) -> str: ...
    @property
    def sha256_uncompressed(self) -> str | None: ...  # hex, of the uncompressed content
    @property
    def oldest_event_time(self) -> str | None: ...  # ISO 8601
    @property
    def newest_event_time(self) -> str | None: ...


@dataclass(frozen=True)
class WrittenFile:
    path: str
    sha256: str  # of the file as written


def _cloudtrail_time(iso: str | None) -> str | None:
    if iso is None:
        return None
    return datetime.fromisoformat(iso).astimezone(UTC).strftime(_CLOUDTRAIL_TIME)


def _write(out: Path, relative: str, data: bytes) -> WrittenFile:
    path = out / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return WrittenFile(relative, hashlib.sha256(data).hexdigest())


def string_to_sign(end: str, s3_object: str, digest_sha256: str, previous: str | None) -> bytes:
    return f"{end}\n{DIGEST_BUCKET}/{s3_object}\n{digest_sha256}\n{previous or 'null'}".encode()


def write_digests(
    out: Path, log_files: Iterable[LogFile], signer: DigestSigner
) -> list[WrittenFile]:
    """One signed digest (and its .sig) per account, Region and hour of the log files."""
    hours: dict[tuple[str, str], dict[datetime, list[LogFile]]] = {}
    for log_file in log_files:
        found = _LOG_NAME.fullmatch(log_file.path)
        if found is None:
            continue
        hour = datetime.strptime(found[3], "%Y%m%dT%H").replace(tzinfo=UTC)
        hours.setdefault((found[1], found[2]), {}).setdefault(hour, []).append(log_file)
    written: list[WrittenFile] = []
    for (account, region), by_hour in sorted(hours.items()):
        previous: tuple[str, str, str] | None = None  # object, hex SHA-256, signature
        for hour in sorted(by_hour):
            body, name = _digest(account, region, hour, by_hour[hour], signer, previous)
            raw = json.dumps(body).encode()
            digest_sha256 = hashlib.sha256(raw).hexdigest()
            signature = signer.sign(
                string_to_sign(body["digestEndTime"], name, digest_sha256, body[_PREV_SIG])
            )
            written.append(_write(out, name, gzip.compress(raw, mtime=0)))
            written.append(_write(out, name + ".sig", (signature + "\n").encode()))
            previous = (name, digest_sha256, signature)
    return written


_PREV_SIG = "previousDigestSignature"


def _digest(
    account: str,
    region: str,
    hour: datetime,
    files: Sequence[LogFile],
    signer: DigestSigner,
    previous: tuple[str, str, str] | None,
) -> tuple[dict[str, Any], str]:
    end = hour + timedelta(hours=1)
    name = (
        f"AWSLogs/{account}/CloudTrail-Digest/{region}/{end:%Y/%m/%d}/{account}"
        f"_CloudTrail-Digest_{region}_{TRAIL_NAME}_{region}_{end:%Y%m%dT%H%M%SZ}.json.gz"
    )
    entries = [
        {
            "s3Bucket": DIGEST_BUCKET,
            "s3Object": f.path,
            "hashValue": f.sha256_uncompressed,
            "hashAlgorithm": "SHA-256",
            "newestEventTime": _cloudtrail_time(f.newest_event_time),
            "oldestEventTime": _cloudtrail_time(f.oldest_event_time),
        }
        for f in files
    ]
    body: dict[str, Any] = {
        "awsAccountId": account,
        "digestStartTime": hour.strftime(_CLOUDTRAIL_TIME),
        "digestEndTime": end.strftime(_CLOUDTRAIL_TIME),
        "digestS3Bucket": DIGEST_BUCKET,
        "digestS3Object": name,
        "digestPublicKeyFingerprint": signer.fingerprint,
        "digestSignatureAlgorithm": SIGNATURE_ALGORITHM,
        "newestEventTime": max(_times(entries, "newestEventTime"), default=None),
        "oldestEventTime": min(_times(entries, "oldestEventTime"), default=None),
        "previousDigestS3Bucket": DIGEST_BUCKET if previous else None,
        "previousDigestS3Object": previous[0] if previous else None,
        "previousDigestHashValue": previous[1] if previous else None,
        "previousDigestHashAlgorithm": "SHA-256" if previous else None,
        _PREV_SIG: previous[2] if previous else None,
        "logFiles": entries,
    }
    return body, name


def _times(entries: Sequence[dict[str, Any]], name: str) -> list[str]:
    return [str(e[name]) for e in entries if e[name] is not None]


def sign_manifest(out: Path, signer: DigestSigner) -> None:
    """manifest.json.sig: the hex Ed25519 signature of manifest.json's bytes."""
    signature = signer.sign((out / "manifest.json").read_bytes())
    (out / "manifest.json.sig").write_text(signature + "\n")
