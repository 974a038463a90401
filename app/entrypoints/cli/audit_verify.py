"""``keyledger audit verify``: the ledger against its Merkle log, its signed checkpoints,
the auditor's pinned keys and the checkpoints they kept (docs/verifiable-ledger.md).

    keyledger audit verify [--catch-up] [--public-key VKEY ...] [--public-key-file F]
                           [--checkpoint NOTE_FILE ...]

Exit 0 when everything holds; 1 naming the first event or checkpoint that fails and why;
2 when an argument is unusable (a malformed key, a kept checkpoint that does not verify).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import psycopg

from app.infrastructure.ledger_signing import parse_verifier_keys
from domain.checkpoints import Checkpoint, open_checkpoint
from domain.ledger_errors import LedgerVerificationError
from domain.signed_notes import NoteVerifier
from projections.ledger_verify import verify_database


def pinned_keys(args: argparse.Namespace) -> list[NoteVerifier]:
    """The verifier keys given on the command line or in a file (one per line)."""
    vkeys = list(args.public_key or [])
    for name in args.public_key_file or []:
        vkeys += Path(name).read_text(encoding="utf-8").splitlines()
    return parse_verifier_keys(vkeys)


def kept_checkpoints(paths: list[str], verifiers: list[NoteVerifier]) -> list[Checkpoint]:
    """The checkpoints the auditor kept, each verified with the pinned keys."""
    kept = []
    for path in paths:
        checkpoint, _ = open_checkpoint(Path(path).read_bytes(), verifiers)
        kept.append(checkpoint)
    return kept


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catch-up", action="store_true", help="append the events not yet in the tree first"
    )
    parser.add_argument(
        "--public-key",
        action="append",
        metavar="VKEY",
        help="a pinned verifier key (<name>+<key ID>+<base64 key>, `keyledger ledger"
        " public-key`): every checkpoint must carry its valid signature",
    )
    parser.add_argument(
        "--public-key-file", action="append", metavar="FILE", help="pinned keys, one a line"
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        metavar="NOTE_FILE",
        help="a signed checkpoint kept from before: the ledger must still extend it"
        " (detects a restore from an older backup)",
    )


def run(args: argparse.Namespace, database_url: str) -> tuple[int, str]:
    """Exit status and the line to print (stdout when 0, stderr otherwise)."""
    try:
        verifiers = pinned_keys(args)
        if args.checkpoint and not verifiers:
            return 2, "error: a kept --checkpoint is checked with a pinned --public-key"
        kept = kept_checkpoints(args.checkpoint or [], verifiers)
    except (OSError, LedgerVerificationError) as error:
        return 2, f"error: {error}"
    with psycopg.connect(database_url) as conn:
        result = verify_database(conn, verifiers, kept)
    if result.failure is not None:
        return 1, f"FAILED: {result.failure}"
    signatures = "signatures verified" if verifiers else "signatures NOT checked (no --public-key)"
    return 0, (
        f"verified: {result.checked} event(s) under the tree (size {result.size}, root"
        f" {result.root.hex()}), {result.checkpoints} checkpoint(s), {signatures}"
    )


def print_outcome(status: int, line: str) -> int:
    print(line, file=sys.stdout if status == 0 else sys.stderr)
    return status
