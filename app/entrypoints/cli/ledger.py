"""``keyledger ledger ...``: the verifiable ledger's evidence (docs/ledger-proofs.md).

The reads run as the local operator (every event) against the database the settings name,
like ``keyledger audit``, and print the JSON documents the REST routes under /v1/ledger
answer, but for the two files an auditor keeps: ``checkpoint --raw`` prints the signed note
and ``public-key`` the verifier keys, one a line (``--json``: the document).
``check-proof`` needs no database: it verifies a saved proof offline.

    keyledger ledger checkpoint [--size N] [--raw]
    keyledger ledger checkpoints [--after N] [--limit N]
    keyledger ledger public-key [--json]
    keyledger ledger prove-inclusion (--position N | --event-id UUID) [--size M]
    keyledger ledger prove-consistency --from A [--to B]
    keyledger ledger check-proof FILE --public-key VKEY [--public-key VKEY ...] [--origin O]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from app.entrypoints.cli.audit import open_context
from app.usecases.ledger_evidence import (
    LedgerEvidence,
    check_proof,
    checkpoint_document,
    signer_document,
)
from domain.ledger_errors import LedgerVerificationError
from domain.signed_notes import NoteVerifier
from projections.ledger_proofs import MAX_PAGE, LedgerProofs

T = TypeVar("T")


def _ask(question: Callable[[LedgerEvidence], Coroutine[Any, Any, T]]) -> T:
    """Run one use case as the local operator, on a context opened for it."""
    context = open_context()
    try:
        evidence = LedgerEvidence(store=LedgerProofs(context.pool), audit=context.audit)
        return asyncio.run(question(evidence))
    finally:
        context.close()


def _print(document: Any) -> None:
    print(json.dumps(document, indent=2))


def cmd_checkpoint(args: argparse.Namespace) -> int:
    row = _ask(lambda evidence: evidence.checkpoint(None, args.size))
    if args.raw:
        sys.stdout.write(row.note)
    else:
        _print(checkpoint_document(row))
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    rows = _ask(lambda evidence: evidence.checkpoints(None, args.after, args.limit))
    next_after = rows[-1].size if len(rows) == args.limit else None
    _print({"checkpoints": [checkpoint_document(r) for r in rows], "next_after": next_after})
    return 0


def cmd_public_key(args: argparse.Namespace) -> int:
    """One verifier key a line (a file to pin: ``audit verify --public-key-file``), or the
    REST document with --json."""
    rows = _ask(lambda evidence: evidence.signers(None))
    if args.json:
        _print({"signers": [signer_document(r) for r in rows]})
    else:
        sys.stdout.write("".join(r.vkey + "\n" for r in rows))
    return 0


def cmd_prove_inclusion(args: argparse.Namespace) -> int:
    _print(
        _ask(
            lambda evidence: evidence.inclusion_proof(
                None, position=args.position, event_id=args.event_id, size=args.size
            )
        )
    )
    return 0


def cmd_prove_consistency(args: argparse.Namespace) -> int:
    _print(_ask(lambda evidence: evidence.consistency_proof(None, args.from_size, args.to_size)))
    return 0


def cmd_check_proof(args: argparse.Namespace) -> int:
    """Verify a saved proof document offline; exit 0, or 1 with the reason."""
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text("utf-8")
        document = json.loads(text)
        if not isinstance(document, dict):
            raise ValueError("the file is not a JSON object")
        verifiers = [NoteVerifier.parse(vkey) for vkey in args.public_key]
        print(check_proof(document, verifiers, args.origin))
    except (OSError, ValueError, LedgerVerificationError) as error:
        reason = str(error) or type(error).__name__
        print(f"FAILED: {reason}", file=sys.stderr)
        return 1
    return 0


# --- parser ------------------------------------------------------------------------------
def _size(text: str) -> int:
    """A non-negative integer (the use case bounds it further)."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative")
    return value


def add_commands(commands: Any) -> None:
    """Add ``ledger`` to the ``keyledger`` command's subparsers."""
    ledger = commands.add_parser(
        "ledger", help="the verifiable ledger's checkpoints, signers and proofs"
    ).add_subparsers(dest="action", required=True)

    checkpoint = ledger.add_parser("checkpoint", help="a signed checkpoint (default: newest)")
    checkpoint.add_argument("--size", type=_size, help="the checkpoint of this tree size")
    checkpoint.add_argument("--raw", action="store_true", help="print the signed note only")
    checkpoint.set_defaults(handler=cmd_checkpoint)

    listing = ledger.add_parser("checkpoints", help="signed checkpoints, smallest first")
    listing.add_argument("--after", type=_size, help="only sizes larger than this")
    listing.add_argument(
        "--limit", type=int, choices=range(1, MAX_PAGE + 1), default=100, metavar="1..1000"
    )
    listing.set_defaults(handler=cmd_checkpoints)

    keys = ledger.add_parser(
        "public-key", help="the published checkpoint-signing keys, one verifier key a line"
    )
    keys.add_argument("--json", action="store_true", help="the REST document instead")
    keys.set_defaults(handler=cmd_public_key)

    inclusion = ledger.add_parser(
        "prove-inclusion", help="the inclusion proof of one event under a checkpoint"
    )
    which = inclusion.add_mutually_exclusive_group(required=True)
    which.add_argument("--position", type=_size, help="the event's notification id")
    which.add_argument("--event-id", help="a CloudTrail record's eventID")
    inclusion.add_argument("--size", type=_size, help="the checkpoint's size (default: newest)")
    inclusion.set_defaults(handler=cmd_prove_inclusion)

    consistency = ledger.add_parser(
        "prove-consistency", help="the consistency proof between two tree sizes"
    )
    consistency.add_argument("--from", dest="from_size", type=_size, required=True)
    consistency.add_argument(
        "--to", dest="to_size", type=_size, help="a checkpoint's size (default: newest)"
    )
    consistency.set_defaults(handler=cmd_prove_consistency)

    check = ledger.add_parser(
        "check-proof", help="verify a saved proof offline (exit 0, or 1 saying why)"
    )
    check.add_argument("file", help="the proof document (JSON); - for standard input")
    check.add_argument(
        "--public-key",
        action="append",
        required=True,
        metavar="VKEY",
        help="a pinned verifier key, <name>+<key ID>+<key> (repeatable)",
    )
    check.add_argument("--origin", help="the log's expected origin (first line of checkpoints)")
    check.set_defaults(handler=cmd_check_proof)
