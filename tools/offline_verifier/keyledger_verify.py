#!/usr/bin/env python3
"""Verify a KeyLedger audit export offline, from the export alone and a pinned public key.

    python keyledger_verify.py EXPORT_DIR --public-key VKEY [--origin ORIGIN]

Needs only Python >= 3.11 and the ``cryptography`` package (Ed25519). It imports no
KeyLedger code: the RFC 9162 Merkle tree, the C2SP signed note and checkpoint, the ledger
leaf and the eventID derivation are written again here, from their specifications, so that
it checks KeyLedger rather than trusting it. The export format is docs/ledger-export.md.

Checks, in this order (the first that fails is named, and the exit status is 1):

1. manifest.json: every listed file is there with its SHA-256, and no file is unlisted;
2. ledger/checkpoint.note is signed by the pinned key (and names ``--origin``, if given);
3. ledger/leaves.jsonl and ledger/range-proof.json: the leaves [a, b), appended to the
   compact range of [0, a), give the root at b, which a consistency proof ties to the
   checkpoint's root at N (whole-ledger mode: a = 0, b = N, and every checkpoint of
   ledger/checkpoints.jsonl is signed and is the root of the leaves at its size);
4. the CloudTrail digest files: each signed by the pinned key, chained to the previous one,
   and every log file's hash is the one its digest signed;
5. every record (log files, events.jsonl, events.csv agree) has the eventID of a leaf in
   the range: uuid5(namespace, "<originator id>:<version>") for the caller's copy,
   uuid5(namespace, "<originator id>:<version>:<recipient account>") for further copies.
6. manifest.json.sig: the manifest is signed by the pinned key, so no file was removed.

``--unsigned`` accepts an export written without the ledger's key (no 4 and 6).

Exit 0 prints a summary; exit 1 prints ``FAILED: <reason>: <detail>``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import gzip
import hashlib
import io
import json
import re
import struct
import sys
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

FORMAT = "keyledger-export/1"
# projections/audit_trail.py's namespace for CloudTrail eventIDs (a fixed, published value).
EVENT_ID_NAMESPACE = uuid.UUID("0c7a1f9e-5d2b-4c1e-9a57-6b6579a0d17e")
DIGEST_SIGNATURE_ALGORITHM = "Ed25519"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
ED25519 = 0x01
EM_DASH = "\u2014 "
_DAY = r"\d{4}/\d{2}/\d{2}/[^/]+\.json\.gz"
DIGEST_PATH = re.compile(r"AWSLogs/([^/]+)/CloudTrail-Digest/([^/]+)/" + _DAY)
LOG_PATH = re.compile(r"AWSLogs/([^/]+)/CloudTrail/([^/]+)/" + _DAY)


class Failure(Exception):
    """A check that does not hold: its reason (a short fixed phrase) and what failed."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# === RFC 9162 section 2.1 ===================================================================
def leaf_hash(leaf: bytes) -> bytes:
    return sha256(b"\x00" + leaf)


def node_hash(left: bytes, right: bytes) -> bytes:
    return sha256(b"\x01" + left + right)


class Frontier:
    """The perfect subtrees of [0, size), largest first: append leaves, get the root."""

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {max(size, 0).bit_count()} subtrees")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("a subtree hash is 32 bytes")
        self.size = size
        self.hashes = list(hashes)

    def append(self, hash_: bytes) -> None:
        # Each trailing 1 bit of the size is a subtree the new leaf completes.
        carry = self.size
        while carry & 1:
            hash_ = node_hash(self.hashes.pop(), hash_)
            carry >>= 1
        self.hashes.append(hash_)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        root = self.hashes[-1]
        for h in reversed(self.hashes[:-1]):
            root = node_hash(h, root)
        return root


def root_from_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 section 2.1.3.2: the root an inclusion proof implies (ValueError if none)."""
    if not 0 <= index < size or any(len(p) != HASH_SIZE for p in (leaf, *proof)):
        raise ValueError("impossible inclusion proof")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise ValueError("inclusion proof too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("inclusion proof too short")
    return r


def consistent(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> bool:
    """RFC 9162 section 2.1.4.2: does `proof` show the tree at size1 is a prefix of size2?"""
    if any(len(h) != HASH_SIZE for h in (root1, root2, *proof)) or not 0 <= size1 <= size2:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return not proof and root1 == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is itself a subtree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


# === the ledger's leaf =======================================================================
_LEAF_HEAD = struct.Struct(">Q16sQI")  # position, originator id, version, topic length


@dataclass(frozen=True, slots=True)
class Leaf:
    index: int
    position: int
    originator_id: uuid.UUID
    version: int
    topic: str
    state_sha256: bytes

    def encode(self) -> bytes:
        topic = self.topic.encode("utf-8")
        head = _LEAF_HEAD.pack(self.position, self.originator_id.bytes, self.version, len(topic))
        return head + topic + self.state_sha256

    def event_id(self, recipient: str | None = None) -> uuid.UUID:
        base = f"{self.originator_id}:{self.version}"
        return uuid.uuid5(EVENT_ID_NAMESPACE, base if recipient is None else f"{base}:{recipient}")


def parse_leaf(line: str) -> Leaf:
    item = json.loads(line)
    leaf = Leaf(
        int(item["index"]),
        int(item["position"]),
        uuid.UUID(str(item["originator_id"])),
        int(item["version"]),
        str(item["topic"]),
        bytes.fromhex(str(item["state_sha256"])),
    )
    if not (0 <= leaf.position < 2**64 and 0 <= leaf.version < 2**64):
        raise ValueError("position and version are uint64")
    if len(leaf.state_sha256) != HASH_SIZE:
        raise ValueError("state_sha256 is 32 bytes")
    return leaf


# === C2SP signed notes and checkpoints ==========================================================
@dataclass(frozen=True, slots=True)
class PublicKey:
    """A verifier key: ``<name>+<key ID, 8 hex>+<base64(0x01 || Ed25519 public key)>``."""

    name: str
    key_id: bytes
    raw: bytes

    @property
    def fingerprint(self) -> str:
        """What a digest names its key by: hex SHA-256 of the 32-byte public key."""
        return hashlib.sha256(self.raw).hexdigest()

    def __str__(self) -> str:
        typed = base64.b64encode(bytes([ED25519]) + self.raw).decode()
        return f"{self.name}+{self.key_id.hex()}+{typed}"

    def verifies(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() for c in name)


def note_key_id(name: str, raw: bytes) -> bytes:
    return sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + raw)[:4]


def parse_public_key(vkey: str) -> PublicKey:
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3 or not _valid_name(parts[0]) or not re.fullmatch(r"[0-9a-f]{8}", parts[1]):
        raise ValueError("a verifier key is <name>+<8 hex digits>+<base64 key>")
    try:
        typed = base64.b64decode(parts[2], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the key of a verifier key is not base64") from exc
    if len(typed) != 33 or typed[0] != ED25519:
        raise ValueError("not an Ed25519 verifier key")
    key = PublicKey(parts[0], bytes.fromhex(parts[1]), typed[1:])
    if note_key_id(key.name, key.raw) != key.key_id:
        raise ValueError("the key ID of the verifier key does not match its key")
    return key


def open_note(note: str, keys: Sequence[PublicKey], what: str) -> tuple[str, PublicKey]:
    """The text of a signed note and the pinned key that signed it.

    Signatures by other keys are ignored; one by a pinned key that does not verify fails.
    """
    if re.search(r"[\x00-\x09\x0b-\x1f]", note):
        raise Failure(f"{what} malformed", "a control character")
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Failure(f"{what} malformed", "no blank line before the signatures")
    text, lines = note[: split + 1], note[split + 2 : -1].split("\n")
    signer: PublicKey | None = None
    for line in lines:
        if not line.startswith(EM_DASH):
            raise Failure(f"{what} malformed", f"{line!r} is not a signature line")
        name, _, b64 = line[len(EM_DASH) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise Failure(f"{what} malformed", "a signature is not base64") from None
        for key in keys:
            if (key.name, key.key_id) == (name, raw[:4]):
                if not key.verifies(raw[4:], text.encode("utf-8")):
                    raise Failure(f"{what} signature invalid", f"by {key}")
                signer = key
    if signer is None:
        raise Failure(f"{what} unsigned", "no signature by a pinned key")
    return text, signer


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes


def parse_checkpoint(text: str) -> Checkpoint:
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise Failure("checkpoint malformed", "a checkpoint is at least three lines")
    if not re.fullmatch(r"0|[1-9][0-9]*", lines[1]):
        raise Failure("checkpoint malformed", f"{lines[1]!r} is not a tree size")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError):
        raise Failure("checkpoint malformed", "the root is not base64") from None
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != lines[2]:
        raise Failure("checkpoint malformed", "the root is not 32 bytes in canonical base64")
    return Checkpoint(lines[0], int(lines[1]), root)


# === the export ================================================================================
class Export:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, relative: str) -> Path:
        if relative.startswith("/") or ".." in relative.split("/"):
            raise Failure("malformed export", f"{relative!r} leaves the export")
        return self.root / relative

    def read(self, relative: str) -> bytes:
        try:
            return self.path(relative).read_bytes()
        except FileNotFoundError:
            raise Failure("file missing", relative) from None

    def json(self, relative: str) -> Any:
        data = self.read(relative)
        try:
            return json.loads(gzip.decompress(data) if relative.endswith(".gz") else data)
        except (ValueError, OSError) as exc:
            raise Failure("malformed export", f"{relative}: {exc}") from None

    def lines(self, relative: str) -> Iterator[str]:
        if not self.path(relative).is_file():
            raise Failure("file missing", relative)
        with self.path(relative).open(encoding="utf-8") as f:
            yield from f

    def files(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()
        )


def check_manifest(export: Export) -> dict[str, dict[str, Any]]:
    """Every listed file has its hash; every file is listed. Returns the entries by path."""
    manifest = export.json("manifest.json")
    entries = {str(e["path"]): e for e in manifest.get("files", [])}
    for path, entry in entries.items():
        if hashlib.sha256(export.read(path)).hexdigest() != entry.get("sha256"):
            raise Failure("file altered", f"{path}: its SHA-256 is not the manifest's")
    for path in export.files():
        if path not in ("manifest.json", "manifest.json.sig") and path not in entries:
            raise Failure("file not in manifest", path)
    return entries


def check_checkpoint(
    export: Export, keys: Sequence[PublicKey], origin: str | None
) -> tuple[Checkpoint, PublicKey]:
    note = export.read("ledger/checkpoint.note").decode("utf-8", "replace")
    text, signer = open_note(note, keys, "checkpoint")
    checkpoint = parse_checkpoint(text)
    if origin is not None and checkpoint.origin != origin:
        raise Failure("checkpoint origin", f"{checkpoint.origin!r}, not {origin!r}")
    return checkpoint, signer


def _hashes(items: Any, what: str) -> list[bytes]:
    try:
        hashes = [bytes.fromhex(str(h)) for h in items]
    except ValueError:
        raise Failure("range proof invalid", f"{what} holds a value that is not hex") from None
    if any(len(h) != HASH_SIZE for h in hashes):
        raise Failure("range proof invalid", f"{what} holds a hash that is not 32 bytes")
    return hashes


@dataclass
class Range:
    first: int  # a: the first leaf exported
    end: int  # b: one past the last
    size: int  # N: the checkpoint's size
    leaves: list[Leaf]


def check_range(
    export: Export,
    checkpoint: Checkpoint,
    keys: Sequence[PublicKey],
    whole: bool,
    keep: bool,
) -> tuple[Range, int]:
    """Leaves [a, b) + prefix -> root(b), consistent with the checkpoint's root at N.

    Whole-ledger mode also checks every checkpoint of ledger/checkpoints.jsonl against the
    root of the leaves at its size. Returns the range (its leaves if `keep`) and the number
    of checkpoints checked.
    """
    proof = export.json("ledger/range-proof.json")
    try:
        a, b, n = int(proof["first_leaf"]), int(proof["end_leaf"]), int(proof["checkpoint_size"])
    except (KeyError, TypeError, ValueError):
        raise Failure("malformed export", "range-proof.json lacks its sizes") from None
    if n != checkpoint.size or not 0 <= a <= b <= n or (whole and (a, b) != (0, n)):
        raise Failure("range proof invalid", f"range [{a}, {b}) of a tree of {n} leaves")
    try:
        frontier = Frontier(a, _hashes(proof["prefix"], "prefix"))
    except ValueError as exc:
        raise Failure("range proof invalid", f"prefix: {exc}") from None
    checkpoints = _checkpoints(export, keys, checkpoint) if whole else [checkpoint]
    # Whole-ledger mode: each checkpoint is checked when the rebuild reaches its size.
    pending = iter(checkpoints if whole else [])
    due = _settle(frontier, next(pending, None), pending)
    kept: list[Leaf] = []
    last_position = -1
    for number, line in enumerate(export.lines("ledger/leaves.jsonl")):
        try:
            leaf = parse_leaf(line)
        except (ValueError, KeyError, TypeError) as exc:
            raise Failure("leaf malformed", f"line {number + 1}: {exc}") from None
        if leaf.index != a + number or leaf.index >= b:
            raise Failure("leaves incomplete", f"leaf {leaf.index} where leaf {a + number} goes")
        if leaf.position <= last_position:
            raise Failure("leaves out of order", f"leaf {leaf.index}'s position")
        last_position = leaf.position
        frontier.append(leaf_hash(leaf.encode()))
        due = _settle(frontier, due, pending)
        if keep:
            kept.append(leaf)
    if frontier.size != b:
        raise Failure("leaves incomplete", f"{frontier.size - a} leaves, not {b - a}")
    if due is not None:
        raise Failure("checkpoint inconsistent", f"size {due.size} beyond the leaves")
    consistency = _hashes(proof.get("consistency", []), "consistency")
    if not consistent(b, n, consistency, frontier.root(), checkpoint.root):
        raise Failure(
            "range proof invalid", f"the root of leaves [0, {b}) is not a prefix of checkpoint {n}"
        )
    checked = len(checkpoints)
    return Range(a, b, n, kept), checked


def _settle(
    frontier: Frontier, due: Checkpoint | None, pending: Iterator[Checkpoint]
) -> Checkpoint | None:
    """Check the checkpoints at the frontier's size; return the next one due."""
    while due is not None and due.size == frontier.size:
        if due.root != frontier.root():
            raise Failure(
                "checkpoint inconsistent",
                f"checkpoint {due.size} is not the root of the leaves before it"
                " (a forked checkpoint, or an altered leaf)",
            )
        due = next(pending, None)
    return due


def _checkpoints(export: Export, keys: Sequence[PublicKey], anchor: Checkpoint) -> list[Checkpoint]:
    """Every checkpoint of a whole-ledger export, signed, same origin, sizes increasing."""
    found: list[Checkpoint] = []
    for number, line in enumerate(export.lines("ledger/checkpoints.jsonl")):
        try:
            note = str(json.loads(line)["note"])
        except (ValueError, KeyError, TypeError):
            raise Failure("malformed export", f"checkpoints.jsonl line {number + 1}") from None
        checkpoint = parse_checkpoint(open_note(note, keys, "checkpoint")[0])
        if checkpoint.origin != anchor.origin:
            raise Failure("checkpoint origin", f"{checkpoint.origin!r} among {anchor.origin!r}")
        if found and checkpoint.size <= found[-1].size:
            raise Failure("malformed export", "checkpoints.jsonl is not in increasing size")
        found.append(checkpoint)
    if not found or found[-1] != anchor:
        raise Failure("checkpoint inconsistent", "the last checkpoint is not checkpoint.note")
    return found


# === CloudTrail digest files =====================================================================
@dataclass
class Digest:
    path: str
    account: str
    region: str
    body: dict[str, Any]
    raw: bytes  # the uncompressed digest file
    signature: str  # hex, from the .sig sidecar (S3 metadata at AWS)


def string_to_sign(digest: Digest) -> bytes:
    """CloudTrail's string to sign (a starting digest's previous signature is "null")."""
    body = digest.body
    previous = body.get("previousDigestSignature") or "null"
    return (
        f"{body['digestEndTime']}\n{body['digestS3Bucket']}/{body['digestS3Object']}\n"
        f"{hashlib.sha256(digest.raw).hexdigest()}\n{previous}"
    ).encode()


def check_digests(
    export: Export, keys: Sequence[PublicKey], log_files: Sequence[str]
) -> tuple[int, int]:
    """Each digest signed by a pinned key and chained; each log file hashed as signed."""
    by_fingerprint = {key.fingerprint: key for key in keys}
    chains: dict[tuple[str, str], list[Digest]] = {}
    for path in export.files():
        found = DIGEST_PATH.fullmatch(path)
        if not found:
            continue
        raw = gzip.decompress(export.read(path))
        sig = export.read(path + ".sig").decode("ascii", "replace").strip()
        digest = Digest(path, found[1], found[2], json.loads(raw), raw, sig)
        body = digest.body
        if body.get("digestS3Object") != path or body.get("awsAccountId") != digest.account:
            raise Failure("digest moved", f"{path} names {body.get('digestS3Object')!r}")
        key = by_fingerprint.get(str(body.get("digestPublicKeyFingerprint")))
        if key is None:
            raise Failure("digest signature invalid", f"{path}: not signed by a pinned key")
        if body.get("digestSignatureAlgorithm") != DIGEST_SIGNATURE_ALGORITHM:
            raise Failure("digest signature invalid", f"{path}: not an Ed25519 signature")
        try:
            signature = bytes.fromhex(sig)
        except ValueError:
            signature = b""
        if not key.verifies(signature, string_to_sign(digest)):
            raise Failure("digest signature invalid", path)
        chains.setdefault((digest.account, digest.region), []).append(digest)
    covered: dict[str, str] = {}
    for chain in chains.values():
        chain.sort(key=lambda d: str(d.body["digestEndTime"]))
        previous: Digest | None = None
        for digest in chain:
            _check_link(previous, digest)
            for entry in digest.body.get("logFiles") or []:
                name = str(entry.get("s3Object"))
                if name in covered or not LOG_PATH.fullmatch(name):
                    raise Failure("digest chain broken", f"{digest.path} lists {name} again")
                content = gzip.decompress(export.read(name))
                if hashlib.sha256(content).hexdigest() != entry.get("hashValue"):
                    raise Failure("log file altered", f"{name}: not the hash {digest.path} signed")
                covered[name] = digest.path
            previous = digest
    for name in log_files:
        if name not in covered:
            raise Failure("log file not in a digest", name)
    return sum(len(c) for c in chains.values()), len(chains)


def _check_link(previous: Digest | None, digest: Digest) -> None:
    body = digest.body
    if previous is None:
        if body.get("previousDigestS3Object") is not None:
            raise Failure(
                "digest chain broken",
                f"{digest.path} follows {body['previousDigestS3Object']}, which is not here",
            )
        return
    expected = {
        "previousDigestS3Object": previous.path,
        "previousDigestS3Bucket": previous.body.get("digestS3Bucket"),
        "previousDigestHashValue": hashlib.sha256(previous.raw).hexdigest(),
        "previousDigestHashAlgorithm": "SHA-256",
        "previousDigestSignature": previous.signature,
    }
    for name, value in expected.items():
        if body.get(name) != value:
            raise Failure("digest chain broken", f"{digest.path}: {name} is not {previous.path}'s")


# === records =================================================================================
def read_records(export: Export, log_files: Sequence[str]) -> list[dict[str, Any]]:
    """Every record of the log files; events.jsonl and events.csv must say the same."""
    delivered: dict[str, dict[str, Any]] = {}
    for name in log_files:
        for record in export.json(name).get("Records", []):
            event_id = str(record.get("eventID"))
            if event_id in delivered:
                raise Failure("record duplicated", f"eventID {event_id}")
            delivered[event_id] = record
    listed: list[str] = []
    for number, line in enumerate(export.lines("events.jsonl")):
        record = json.loads(line)
        event_id = str(record.get("eventID"))
        if delivered.get(event_id) != record:
            raise Failure(
                "record altered",
                f"events.jsonl line {number + 1} (eventID {event_id}) is not a delivered record",
            )
        listed.append(event_id)
    if sorted(listed) != sorted(delivered):
        raise Failure("record missing", "events.jsonl and the log files hold different records")
    with export.path("events.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(io.StringIO(f.read())))
    if [row.get("eventID") for row in rows] != listed:
        raise Failure("record altered", "events.csv's eventIDs are not events.jsonl's")
    return [delivered[event_id] for event_id in listed]


def check_records(records: Sequence[dict[str, Any]], leaves: Sequence[Leaf]) -> None:
    """Each record's eventID derives from a leaf of the range (and, for a further copy,
    from its recipient account)."""
    by_base: dict[uuid.UUID | None, Leaf] = {leaf.event_id(): leaf for leaf in leaves}
    for record in records:
        event_id = str(record.get("eventID"))
        leaf = by_base.get(_uuid(event_id))
        if leaf is not None:
            continue
        leaf = by_base.get(_uuid(str(record.get("sharedEventID"))))
        recipient = str(record.get("recipientAccountId"))
        if leaf is None or leaf.event_id(recipient) != _uuid(event_id):
            raise Failure("record not in ledger", f"eventID {event_id} is no leaf's in the range")


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


# === main ======================================================================================
def check_manifest_signature(export: Export, keys: Sequence[PublicKey]) -> PublicKey:
    """manifest.json.sig: the hex Ed25519 signature of manifest.json by the ledger's key,
    so that no file can be removed (with the manifest re-hashed) unnoticed."""
    if not export.path("manifest.json.sig").is_file():
        raise Failure("manifest unsigned", "no manifest.json.sig (--unsigned accepts that)")
    try:
        signature = bytes.fromhex(export.read("manifest.json.sig").decode("ascii").strip())
    except ValueError:
        signature = b""
    manifest = export.read("manifest.json")
    for key in keys:
        if key.verifies(signature, manifest):
            return key
    raise Failure("manifest signature invalid", "manifest.json is not signed by a pinned key")


def verify(
    root: Path, keys: Sequence[PublicKey], origin: str | None = None, signed: bool = True
) -> list[str]:
    """Every check; the summary lines, or Failure. `signed`: require the digests and the
    manifest's signature (an export written with the ledger's key)."""
    export = Export(root)
    entries = check_manifest(export)
    info = export.json("ledger/export.json")
    if info.get("format") != FORMAT:
        raise Failure("malformed export", f"format {info.get('format')!r}, not {FORMAT!r}")
    whole = info.get("mode") == "whole-ledger"
    checkpoint, signer = check_checkpoint(export, keys, origin)
    log_files = sorted(p for p in entries if LOG_PATH.fullmatch(p))
    span, checkpoints = check_range(export, checkpoint, keys, whole, keep=bool(log_files))
    summary = [
        f"manifest: {len(entries)} files, every hash matches",
        f"checkpoint: {checkpoint.origin}, size {checkpoint.size},"
        f" root {checkpoint.root.hex()}, signed by {signer}",
        f"ledger: leaves [{span.first}, {span.end}) complete and consistent with the checkpoint"
        + (f"; {checkpoints} checkpoints, each the root of its prefix" if whole else ""),
    ]
    has_digests = any(DIGEST_PATH.fullmatch(p) for p in entries)
    if signed and log_files and not has_digests:
        raise Failure(
            "digests missing",
            "no digest files: an export written without the ledger's key (--unsigned"
            " accepts it, checking the ledger evidence and the records' eventIDs only)",
        )
    if has_digests:
        digests, chains = check_digests(export, keys, log_files)
        summary.append(f"digests: {digests} in {chains} chain(s), signed and chained")
    if "events.jsonl" in entries or log_files:
        records = read_records(export, log_files)
        check_records(records, span.leaves)
        summary.append(f"records: {len(records)}, each from a leaf of the range")
    if signed or export.path("manifest.json.sig").exists():
        summary.append(f"manifest signed by {check_manifest_signature(export, keys)}")
    else:
        summary.append(
            "WARNING: --unsigned: no manifest signature"
            + (" and no digests: the records' contents rest" if not has_digests else ": files")
            + " on the unsigned manifest, and whole files may have been removed"
        )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("export", type=Path, help="the export directory")
    parser.add_argument("--public-key", action="append", default=[], help="a pinned vkey")
    parser.add_argument("--public-key-file", action="append", default=[], type=Path)
    parser.add_argument("--origin", help="the log's origin the checkpoint must name")
    parser.add_argument(
        "--trust-export-key",
        action="store_true",
        help="use ledger/signers.txt instead of a pinned key (proves nothing against forgery)",
    )
    parser.add_argument(
        "--unsigned",
        action="store_true",
        help="accept an export written without the ledger's key (no digests, no manifest"
        " signature): the ledger evidence and the records' eventIDs are still checked",
    )
    args = parser.parse_args(argv)
    vkeys = list(args.public_key)
    for file in args.public_key_file:
        vkeys += [line for line in file.read_text().splitlines() if line.strip()]
    if args.trust_export_key:
        print(
            "WARNING: --trust-export-key: the key comes from the export itself, so whoever"
            " wrote the export could have signed it; pin the published key instead",
            file=sys.stderr,
        )
        signers = args.export / "ledger" / "signers.txt"
        vkeys += [line for line in signers.read_text().splitlines() if line.strip()]
    if not vkeys:
        parser.error("pin the ledger's key: --public-key or --public-key-file")
    try:
        keys = [parse_public_key(vkey) for vkey in vkeys]
    except ValueError as exc:
        parser.error(f"--public-key: {exc}")
    try:
        summary = verify(args.export, keys, args.origin, signed=not args.unsigned)
    except Failure as failure:
        print(f"FAILED: {failure.reason}: {failure.detail}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        # Unparsable JSON, gzip, hex or text: the export is not one this tool wrote.
        print(f"FAILED: malformed export: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("\n".join(summary))
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
