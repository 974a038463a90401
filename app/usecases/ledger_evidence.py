"""The ledger's evidence for auditors: signed checkpoints, their signers, and inclusion and
consistency proofs (docs/ledger-proofs.md). Behind the REST routes under /v1/ledger and
``keyledger ledger``.

Who may ask: the auditors of the audit trail, as `AuditService.scope` decides
(``cloudtrail:LookupEvents``; the local operator, caller None, always).

* Checkpoints, signers and consistency proofs hold only sizes, hashes and signatures: any
  auditor gets them (the tree's size tells how many events the whole ledger holds).
* An inclusion proof names one event's leaf: its position, its aggregate's id, version and
  topic, and the SHA-256 of its stored state. An auditor of the operator account gets any
  event's; an auditor of another account only the events of which its own trail holds a
  record (asked by eventID or by position alike). Any other event is answered as absent,
  the same answer as a position or eventID that does not exist, so that a proof request
  reveals nothing about other accounts.

The answers are JSON documents (`checkpoint_document`, `inclusion_document`,
`consistency_document`): both adapters give them as they are, and `check_proof` verifies a
saved one offline against a pinned verifier key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import TYPE_CHECKING, Any

from app.ports import LedgerEvidenceStore
from app.usecases.auditors import AuditService
from domain.checkpoints import Checkpoint, open_checkpoint
from domain.errors import ValidationError
from domain.ledger_errors import InvalidProofError, LedgerVerificationError
from domain.ledger_leaves import encode_leaf
from domain.merkle import leaf_hash, verify_consistency, verify_inclusion
from domain.signed_notes import NoteVerifier
from projections.ledger_proofs import (
    CheckpointRow,
    ConsistencyProof,
    InclusionProof,
    SignerRow,
)

if TYPE_CHECKING:
    from app.auth.credentials import Caller

Document = dict[str, Any]


class LedgerEvidence:
    def __init__(self, *, store: LedgerEvidenceStore, audit: AuditService) -> None:
        self.store = store
        self.audit = audit  # who may read evidence: who may read the audit trail

    async def checkpoint(self, caller: Caller | None, size: int | None = None) -> CheckpointRow:
        """The checkpoint of `size` leaves (None: the newest)."""
        await self.audit.scope(caller)
        return await asyncio.to_thread(self.store.checkpoint, size)

    async def checkpoints(
        self, caller: Caller | None, after_size: int | None = None, limit: int = 100
    ) -> list[CheckpointRow]:
        """Checkpoints larger than `after_size`, smallest first."""
        await self.audit.scope(caller)
        after = -1 if after_size is None else after_size
        return await asyncio.to_thread(self.store.checkpoints, after, limit)

    async def signers(self, caller: Caller | None) -> list[SignerRow]:
        """The published checkpoint-signing keys (every one ever used)."""
        await self.audit.scope(caller)
        return await asyncio.to_thread(self.store.signers)

    async def inclusion_proof(
        self,
        caller: Caller | None,
        *,
        position: int | None = None,
        event_id: uuid.UUID | str | None = None,
        size: int | None = None,
    ) -> Document:
        """The inclusion proof of one event (by position or eventID) under a checkpoint."""
        if (position is None) == (event_id is None):
            raise ValidationError("name the event by exactly one of position and event_id")
        parsed = _uuid(event_id) if event_id is not None else None
        account = await self.audit.scope(caller)
        proof = await asyncio.to_thread(
            self.store.inclusion_proof,
            position=position,
            event_id=parsed,
            size=size,
            account=account,
        )
        return inclusion_document(proof, str(parsed) if parsed else None)

    async def consistency_proof(
        self, caller: Caller | None, from_size: int, to_size: int | None = None
    ) -> Document:
        """The consistency proof from size `from_size` to the checkpoint of `to_size`."""
        await self.audit.scope(caller)
        proof = await asyncio.to_thread(self.store.consistency_proof, from_size, to_size)
        return consistency_document(proof)


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ValidationError("event_id is not a UUID") from None


# --- the documents (JSON: hashes in standard base64) ----------------------------------------
def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def checkpoint_document(row: CheckpointRow) -> Document:
    signed_at = row.signed_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {"size": row.size, "root": _b64(row.root), "note": row.note, "signed_at": signed_at}


def signer_document(row: SignerRow) -> Document:
    created_at = row.created_at.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return {
        "key_name": row.key_name,
        "key_id": row.key_id.hex(),
        "public_key": _b64(row.public_key),
        "vkey": row.vkey,
        "created_at": created_at,
    }


def inclusion_document(proof: InclusionProof, event_id: str | None = None) -> Document:
    leaf = proof.leaf
    return {
        "type": "inclusion",
        "event_id": event_id,
        "position": leaf.position,
        "leaf_index": proof.leaf_index,
        "leaf": {
            "position": leaf.position,
            "originator_id": str(leaf.originator_id),
            "version": leaf.version,
            "topic": leaf.topic,
            "state_sha256": _b64(leaf.state_hash),
        },
        "leaf_hash": _b64(proof.leaf_hash),
        "tree_size": proof.checkpoint.size,
        "proof": [_b64(h) for h in proof.proof],
        "checkpoint": checkpoint_document(proof.checkpoint),
    }


def consistency_document(proof: ConsistencyProof) -> Document:
    first = proof.from_checkpoint
    return {
        "type": "consistency",
        "from_size": proof.from_size,
        "to_size": proof.to_size,
        "from_root": _b64(proof.from_root),
        "to_root": _b64(proof.to_checkpoint.root),
        "proof": [_b64(h) for h in proof.proof],
        "from_checkpoint": checkpoint_document(first) if first is not None else None,
        "to_checkpoint": checkpoint_document(proof.to_checkpoint),
    }


# --- checking a saved document offline ----------------------------------------------------
def check_proof(
    document: Mapping[str, Any], verifiers: Sequence[NoteVerifier], origin: str | None = None
) -> str:
    """Verify a proof document against pinned verifier keys: the checkpoint notes' signatures
    (domain.checkpoints), the leaf recomputed from its fields, and the RFC 9162 proof
    against the SIGNED roots (the document's own size and root fields are only checked to
    agree). Returns a one-line summary; raises LedgerVerificationError saying why not."""
    try:
        kind = document["type"]
        if kind == "inclusion":
            return _check_inclusion(document, verifiers, origin)
        if kind == "consistency":
            return _check_consistency(document, verifiers, origin)
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as error:
        if isinstance(error, LedgerVerificationError):
            raise
        raise InvalidProofError(f"not a well-formed proof document ({error!r})") from None
    raise InvalidProofError("not a proof document: type is neither inclusion nor consistency")


def _hash(text: Any) -> bytes:
    if not isinstance(text, str):
        raise TypeError("a hash is a base64 string")
    return base64.b64decode(text, validate=True)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError("a size, index or position is an integer")
    return value


def _open(
    note: Any, verifiers: Sequence[NoteVerifier], origin: str | None, what: str
) -> tuple[Checkpoint, str]:
    if not isinstance(note, str):
        raise TypeError(f"the {what} note is a string")
    try:
        checkpoint, verified = open_checkpoint(note, verifiers, origin)
    except LedgerVerificationError as error:
        raise type(error)(f"the {what} checkpoint: {error}") from None
    signer = verified.verified[0]
    return checkpoint, f"{signer.name}+{signer.key_id.hex()}"


def _agree(claimed: Any, signed: int, what: str) -> None:
    if _int(claimed) != signed:
        raise InvalidProofError(f"{what} {claimed} is not the signed checkpoint's {signed}")


def _check_inclusion(
    doc: Mapping[str, Any], verifiers: Sequence[NoteVerifier], origin: str | None
) -> str:
    checkpoint, signer = _open(doc["checkpoint"]["note"], verifiers, origin, "signed")
    _agree(doc["tree_size"], checkpoint.size, "tree_size")
    leaf = doc["leaf"]
    position = _int(leaf["position"])
    if _int(doc["position"]) != position:
        raise InvalidProofError("position is not the leaf's position")
    encoded = encode_leaf(
        position,
        uuid.UUID(leaf["originator_id"]),
        _int(leaf["version"]),
        leaf["topic"],
        _hash(leaf["state_sha256"]),
    )
    computed = leaf_hash(encoded)
    if computed != _hash(doc["leaf_hash"]):
        raise InvalidProofError("leaf_hash is not the hash of the leaf's fields")
    index = _int(doc["leaf_index"])
    proof = [_hash(h) for h in doc["proof"]]
    verify_inclusion(computed, index, checkpoint.size, proof, checkpoint.root_hash)
    return (
        f"OK: the event at position {position} ({leaf['topic']}) is leaf {index} of"
        f" {checkpoint.origin}'s checkpoint of size {checkpoint.size}, signed by {signer}"
    )


def _check_consistency(
    doc: Mapping[str, Any], verifiers: Sequence[NoteVerifier], origin: str | None
) -> str:
    second, signer = _open(doc["to_checkpoint"]["note"], verifiers, origin, "to")
    _agree(doc["to_size"], second.size, "to_size")
    from_size = _int(doc["from_size"])
    first_note = doc.get("from_checkpoint")
    if first_note is not None:
        first, _ = _open(first_note["note"], verifiers, second.origin, "from")
        _agree(from_size, first.size, "from_size")
        from_root, trust = first.root_hash, "signed"
    else:
        from_root = _hash(doc["from_root"])
        trust = "NOT signed: compare it with the checkpoint you kept"
    proof = [_hash(h) for h in doc["proof"]]
    verify_consistency(from_size, second.size, proof, from_root, second.root_hash)
    return (
        f"OK: {second.origin}'s tree of size {from_size} (root {_b64(from_root)}, {trust})"
        f" is a prefix of its checkpoint of size {second.size}, signed by {signer}"
    )
