"""Errors of the verifiable ledger: Merkle proofs, leaves, signed notes and checkpoints.

They are not `domain.errors.DomainError`s: those are answers to a caller's fault, while
these say that something an auditor checks does not hold (a proof, a signature, a note's
syntax). An adapter that takes such input from a caller maps them to its own wire error.
"""

from __future__ import annotations


class LedgerVerificationError(Exception):
    """Base: a piece of evidence about the ledger is malformed or does not verify."""


class InvalidProofError(LedgerVerificationError):
    """An inclusion or consistency proof does not verify (or its sizes are impossible)."""


class LeafEncodingError(LedgerVerificationError, ValueError):
    """A stored event's fields cannot be encoded as a leaf, or leaf bytes do not decode."""


class MalformedNoteError(LedgerVerificationError):
    """A signed note breaks the signed-note syntax (c2sp.org/signed-note)."""


class MalformedCheckpointError(MalformedNoteError):
    """A note's text is not a checkpoint body (c2sp.org/tlog-checkpoint)."""


class CheckpointOriginError(LedgerVerificationError):
    """A checkpoint names another origin (log) than the one expected."""


class MalformedVerifierKeyError(LedgerVerificationError):
    """A verifier key string is not `<name>+<hex key ID>+<base64(0x01 || public key)>`."""


class BadSignatureError(LedgerVerificationError):
    """A signature line from a known key (same name and key ID) does not verify."""


class UnverifiedNoteError(LedgerVerificationError):
    """No signature line of the note comes from a known key."""
