"""Checkpoints (c2sp.org/tlog-checkpoint): the ledger's tree head as a signed note.

The body (the note text) is at least three non-empty lines, each ending in a newline::

    <origin>                      the log's identity, e.g. "keyledger.example/prod"
    <tree size>                   ASCII decimal, no leading zeros ("0" for the empty tree)
    <root hash>                   standard padded base64 of the 32-byte RFC 9162 root
    [<extension line>...]         optional, opaque, non-empty (NOT RECOMMENDED)

signed as a note (`domain.signed_notes`) by the log's Ed25519 key, whose key name should
equal the origin (`sign_checkpoint` uses the origin unless told otherwise). Witnesses add
their own Ed25519 signatures with `domain.signed_notes.add_signature`; unknown signers are
ignored by `open_checkpoint`. A log must never sign two checkpoints that are not
consistent (a consistency proof between them must exist).

Parsing is strict so that a checkpoint has one spelling: the size must be canonical
decimal and the root canonical base64 of exactly 32 bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.ledger_errors import CheckpointOriginError, MalformedCheckpointError
from domain.merkle import HASH_SIZE
from domain.signed_notes import NoteVerifier, VerifiedNote, open_note, sign_note

_SIZE = re.compile(r"0|[1-9][0-9]*")
_MAX_SIZE = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin or "\n" in self.origin:
            raise MalformedCheckpointError("the origin is one non-empty line")
        if not 0 <= self.size <= _MAX_SIZE:
            raise MalformedCheckpointError(f"tree size {self.size} is not a uint64")
        if len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpointError(f"the root hash is {HASH_SIZE} bytes")
        if any(not line or "\n" in line for line in self.extensions):
            raise MalformedCheckpointError("extension lines are non-empty single lines")


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """The checkpoint's note text (body), every line newline-terminated."""
    lines = [
        checkpoint.origin,
        str(checkpoint.size),
        base64.b64encode(checkpoint.root_hash).decode("ascii"),
        *checkpoint.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """A checkpoint body (the note text, not the signed note)."""
    if not text.endswith("\n"):
        raise MalformedCheckpointError("a checkpoint body ends in a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3 or any(not line for line in lines):
        raise MalformedCheckpointError("a checkpoint body is at least three non-empty lines")
    origin, size_line, root_line, *extensions = lines
    if not _SIZE.fullmatch(size_line):
        raise MalformedCheckpointError(f"{size_line!r} is not a tree size")
    try:
        root = base64.b64decode(root_line, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MalformedCheckpointError("the root hash is not base64") from exc
    if base64.b64encode(root).decode("ascii") != root_line:
        raise MalformedCheckpointError("the root hash is not canonical base64")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


def sign_checkpoint(
    checkpoint: Checkpoint, private_key: Ed25519PrivateKey, key_name: str | None = None
) -> str:
    """The checkpoint as a note signed by the log's key (named after the origin by default)."""
    return sign_note(format_checkpoint(checkpoint), key_name or checkpoint.origin, private_key)


def open_checkpoint(
    note: str | bytes, verifiers: Iterable[NoteVerifier], origin: str | None = None
) -> tuple[Checkpoint, VerifiedNote]:
    """Verifies a signed checkpoint, then parses its body; checks the origin if given.

    Raises the errors of `domain.signed_notes.open_note`, MalformedCheckpointError, or
    CheckpointOriginError.
    """
    verified = open_note(note, verifiers)
    checkpoint = parse_checkpoint(verified.text)
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointOriginError(f"checkpoint of {checkpoint.origin!r}, not of {origin!r}")
    return checkpoint, verified
