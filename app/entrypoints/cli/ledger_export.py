"""The ledger evidence of an export: ``ledger/`` (docs/ledger-export.md).

With it, an auditor holding only the export and the ledger's pinned public key checks that
every exported record comes from a ledger event under a signed checkpoint, and that the
leaves covering the export are complete (tools/offline_verifier/keyledger_verify.py):

- ``checkpoint.note``: the newest signed checkpoint, whose size N covers every record's leaf;
- ``leaves.jsonl``: leaves [a, b), a the first record's leaf, b one past the last's;
- ``range-proof.json``: the compact range of [0, a) and the consistency proof from b to N;
- ``signers.txt``: the published verifier keys (informational: auditors pin their own);
- ``checkpoints.jsonl`` (whole-ledger mode: a = 0, b = N): every checkpoint up to N;
- ``export.json``: what the folder holds.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from app.entrypoints.cli.audit_export import ExportedFile, Manifest
from domain.checkpoints import parse_checkpoint
from domain.merkle import assemble, consistency_plan, frontier_nodes, plan_nodes, root_at
from domain.signed_notes import parse_note
from projections import ledger_export as reads
from projections.audit_trail import EVENT_ID_NAMESPACE
from projections.ledger_export import LedgerExportError, StoredCheckpoint

FORMAT = "keyledger-export/1"
POLL_SECONDS = 0.5
RECORD_TO_LEAF = (
    "recomputed by the verifier: a record's eventID is uuid5(event_id_namespace,"
    " '<originator_id>:<version>') of its leaf for the caller's copy, and"
    " uuid5(event_id_namespace, '<originator_id>:<version>:<recipientAccountId>') for"
    " further copies (whose sharedEventID is the first form)"
)


@dataclass(frozen=True)
class Span:
    first: int  # a
    end: int  # b
    checkpoint: StoredCheckpoint  # N = checkpoint.size


def _span(conn: psycopg.Connection[Any], manifest: Manifest | None, whole: bool) -> Span | str:
    """The leaves to export and the checkpoint covering them, or why there is none yet."""
    checkpoint = reads.newest_checkpoint(conn)
    if checkpoint is None:
        return "the ledger has no signed checkpoint yet"
    if whole:
        return Span(0, checkpoint.size, checkpoint)
    if manifest is None or manifest.first_event is None or manifest.last_event is None:
        return Span(0, 0, checkpoint)  # no records: nothing to tie, the anchor alone
    first = reads.leaf_index(conn, manifest.first_event)
    last = reads.leaf_index(conn, manifest.last_event)
    if first is None or last is None:
        return f"the Merkle log has not reached event {manifest.last_event} yet"
    if checkpoint.size <= last:
        return (
            f"the newest checkpoint (size {checkpoint.size}) does not cover the last record's"
            f" leaf {last} yet"
        )
    return Span(first, last + 1, checkpoint)


def write_ledger_evidence(
    database_url: str,
    out: Path,
    manifest: Manifest | None,
    *,
    whole: bool = False,
    wait_seconds: float = 0.0,
) -> list[ExportedFile]:
    """Write ``out/ledger/`` for the records counted in ``manifest`` (or the whole ledger);
    LedgerExportError if no checkpoint covers them within ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    with psycopg.connect(database_url) as conn:
        while True:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            span = _span(conn, manifest, whole)
            if isinstance(span, Span):
                written = _write(conn, out / "ledger", span, whole, manifest)
                conn.rollback()
                return written
            conn.rollback()
            if time.monotonic() >= deadline:
                hint = "" if wait_seconds else " (--wait-checkpoint SECONDS waits for one)"
                raise LedgerExportError(f"{span}{hint}")
            time.sleep(POLL_SECONDS)


def _write(
    conn: psycopg.Connection[Any],
    folder: Path,
    span: Span,
    whole: bool,
    manifest: Manifest | None,
) -> list[ExportedFile]:
    checkpoint = span.checkpoint
    size = checkpoint.size
    plan = consistency_plan(span.end, size)
    nodes = reads.stored_nodes(
        conn, [*frontier_nodes(size), *frontier_nodes(span.first), *plan_nodes(plan)]
    )
    # The stored checkpoint must be the stored tree's root: never export a contradiction.
    if root_at(size, nodes) != checkpoint.root:
        raise LedgerExportError(
            f"checkpoint {size}'s root is not the stored tree's: run `keyledger audit verify`"
        )
    origin = parse_checkpoint(parse_note(checkpoint.note).text).origin
    folder.mkdir(parents=True, exist_ok=True)
    files: list[ExportedFile] = []

    def put(name: str, data: str, count: int = 0) -> None:
        (folder / name).write_text(data, encoding="utf-8")
        files.append(ExportedFile(f"ledger/{name}", count, _sha256(folder / name)))

    put("checkpoint.note", checkpoint.note)
    with (folder / "leaves.jsonl").open("w", encoding="utf-8") as f:
        for leaf in reads.leaves(conn, span.first, span.end):
            f.write(json.dumps(leaf.as_dict()) + "\n")
    files.append(
        ExportedFile("ledger/leaves.jsonl", span.end - span.first, _sha256(folder / "leaves.jsonl"))
    )
    proof = {
        "first_leaf": span.first,
        "end_leaf": span.end,
        "checkpoint_size": size,
        "prefix": [nodes[n].hex() for n in frontier_nodes(span.first)],
        "consistency": [h.hex() for h in assemble(plan, nodes)],
    }
    put("range-proof.json", json.dumps(proof, indent=2) + "\n")
    signers = reads.signer_keys(conn)
    put("signers.txt", "".join(vkey + "\n" for vkey in signers), len(signers))
    checkpoints = 1
    if whole:
        checkpoints = 0
        with (folder / "checkpoints.jsonl").open("w", encoding="utf-8") as f:
            for stored in reads.checkpoints_up_to(conn, size):
                item = {"size": stored.size, "signed_at": stored.signed_at.isoformat()}
                f.write(json.dumps(item | {"note": stored.note}) + "\n")
                checkpoints += 1
        files.append(
            ExportedFile(
                "ledger/checkpoints.jsonl", checkpoints, _sha256(folder / "checkpoints.jsonl")
            )
        )
    info = {
        "format": FORMAT,
        "mode": "whole-ledger" if whole else "range",
        "origin": origin,
        "first_leaf": span.first,
        "end_leaf": span.end,
        "checkpoint_size": size,
        "checkpoint_root": checkpoint.root.hex(),
        "leaves": span.end - span.first,
        "records": manifest.records if manifest is not None else 0,
        "checkpoints": checkpoints,
        "event_id_namespace": str(EVENT_ID_NAMESPACE),
        "record_to_leaf": RECORD_TO_LEAF,
    }
    put("export.json", json.dumps(info, indent=2) + "\n")
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
