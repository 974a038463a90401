"""The ledger's checkpoint signer: an Ed25519 key wrapped under the root key (issue 13).

Its 32-byte seed is a ``wrapping_keys`` row (owner ``LEDGER_SIGNING_KEY_OWNER``), so it is
made once by whichever process asks first, stored wrapped under the root key like every
key's wrapping key, and re-wrapped with them when the root key rotates. Only its public
half leaves the process: published in ``ledger_signers`` (migrations/014) for the REST and
CLI to give auditors, who pin it.

The key name is the log's origin (c2sp.org/tlog-checkpoint recommends it), so the
verifier key reads ``<origin>+<key ID>+<base64 public key>``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from domain.checkpoints import Checkpoint, sign_checkpoint
from domain.signed_notes import NoteVerifier

PUBLISH_SIGNER = (
    "INSERT INTO ledger_signers (key_name, key_id, public_key, vkey) VALUES (%s, %s, %s, %s)"
    " ON CONFLICT (key_name, key_id) DO NOTHING"
)
SELECT_SIGNERS = "SELECT vkey FROM ledger_signers ORDER BY created_at, key_name"


@dataclass(frozen=True)
class LedgerSigner:
    """The log's signing key and its name (the origin)."""

    origin: str
    private_key: Ed25519PrivateKey

    @classmethod
    def from_seed(cls, origin: str, seed: bytes) -> LedgerSigner:
        return cls(origin, Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def verifier(self) -> NoteVerifier:
        return NoteVerifier.of(self.origin, self.private_key.public_key())

    @property
    def vkey(self) -> str:
        """The verifier key auditors pin: ``<origin>+<key ID>+<base64(0x01 || key)>``."""
        return str(self.verifier)

    def sign_checkpoint(self, size: int, root: bytes) -> str:
        return sign_checkpoint(Checkpoint(self.origin, size, root), self.private_key)

    def sign(self, message: bytes) -> bytes:
        """A raw Ed25519 signature (CloudTrail-style digest files sign their own strings)."""
        return self.private_key.sign(message)


def publish(conn: psycopg.Connection[Any], signer: LedgerSigner) -> None:
    """Publish the signer's verifier key (once; the table is append-only)."""
    verifier = signer.verifier
    conn.execute(PUBLISH_SIGNER, (verifier.name, verifier.key_id, verifier.public_key, signer.vkey))


def published_verifiers(conn: psycopg.Connection[Any]) -> list[NoteVerifier]:
    """Every verifier key ever published, oldest first (what the database claims: an
    auditor pins theirs instead)."""
    return [NoteVerifier.parse(str(row[0])) for row in conn.execute(SELECT_SIGNERS)]


def parse_verifier_keys(vkeys: Iterable[str]) -> list[NoteVerifier]:
    """Verifier keys from settings or a command line (blank entries ignored)."""
    return [NoteVerifier.parse(v.strip()) for v in vkeys if v.strip()]
