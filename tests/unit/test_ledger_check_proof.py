"""Checking a saved proof document offline (app.usecases.ledger_evidence.check_proof): it
trusts only the signed checkpoint notes and a pinned key, recomputes the leaf from its
fields, and names why a document fails. No database: documents are built in memory."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.usecases.ledger_evidence import check_proof, consistency_document, inclusion_document
from domain.checkpoints import Checkpoint, sign_checkpoint
from domain.ledger_errors import (
    BadSignatureError,
    CheckpointOriginError,
    InvalidProofError,
    LedgerVerificationError,
    UnverifiedNoteError,
)
from domain.ledger_leaves import LeafFields, decode_leaf, leaf_of
from domain.merkle import MemoryTree, leaf_hash
from domain.signed_notes import NoteVerifier
from projections.ledger_proofs import CheckpointRow, ConsistencyProof, InclusionProof

ORIGIN = "keyledger.test/unit"
KEY = Ed25519PrivateKey.generate()
VERIFIER = NoteVerifier.of(ORIGIN, KEY.public_key())
SIZE = 13
LEAVES = [leaf_of(n + 1, uuid.uuid4(), n, "domain.keys:Key.Used", b"s%d" % n) for n in range(SIZE)]
TREE = MemoryTree()
for _leaf in LEAVES:
    TREE.append_leaf(_leaf)


def _checkpoint(size: int, key: Ed25519PrivateKey = KEY, origin: str = ORIGIN) -> CheckpointRow:
    root = TREE.root(size)
    note = sign_checkpoint(Checkpoint(origin, size, root), key)
    return CheckpointRow(size, root, note, datetime(2025, 1, 2, tzinfo=UTC))


def _inclusion(index: int, size: int = SIZE, **kwargs: Any) -> dict[str, Any]:
    fields = decode_leaf(LEAVES[index])
    proof = InclusionProof(
        index,
        LeafFields(
            fields.position, fields.originator_id, fields.version, fields.topic, fields.state_hash
        ),
        leaf_hash(LEAVES[index]),
        tuple(TREE.inclusion_proof(index, size)),
        _checkpoint(size, **kwargs),
    )
    return inclusion_document(proof)


def _consistency(size1: int, size2: int = SIZE, signed_from: bool = True) -> dict[str, Any]:
    proof = ConsistencyProof(
        size1,
        size2,
        TREE.root(size1),
        tuple(TREE.consistency_proof(size1, size2)),
        _checkpoint(size1) if signed_from else None,
        _checkpoint(size2),
    )
    return consistency_document(proof)


def _flipped(document: dict[str, Any], which: int = 0) -> dict[str, Any]:
    changed = copy.deepcopy(document)
    proof = changed["proof"]
    proof[which] = ("B" if proof[which][0] == "A" else "A") + proof[which][1:]
    return changed


@pytest.mark.parametrize("index", range(SIZE))
def test_a_good_inclusion_proof_checks(index: int) -> None:
    line = check_proof(_inclusion(index), [VERIFIER], ORIGIN)
    assert line.startswith(f"OK: the event at position {index + 1} ")


@pytest.mark.parametrize("size1", range(1, SIZE + 1))
def test_a_good_consistency_proof_checks(size1: int) -> None:
    assert check_proof(_consistency(size1), [VERIFIER]).startswith("OK: ")
    unsigned = check_proof(_consistency(size1, signed_from=False), [VERIFIER])
    assert "NOT signed" in unsigned


def test_a_proof_with_one_hash_flipped_fails() -> None:
    for document in (_inclusion(5), _consistency(5)):
        for which in range(len(document["proof"])):
            with pytest.raises(InvalidProofError):
                check_proof(_flipped(document, which), [VERIFIER])


def test_a_changed_leaf_field_fails_even_with_its_hash_recomputed_elsewhere() -> None:
    document = _inclusion(3)
    document["leaf"]["version"] += 1
    with pytest.raises(InvalidProofError, match="leaf_hash"):
        check_proof(document, [VERIFIER])


def test_unsigned_sizes_and_roots_are_not_trusted() -> None:
    document = _inclusion(3)
    document["tree_size"] = SIZE - 1
    with pytest.raises(InvalidProofError, match="tree_size"):
        check_proof(document, [VERIFIER])
    consistency = _consistency(4)
    consistency["from_root"] = _consistency(5)["from_root"]  # ignored: the note is signed
    assert check_proof(consistency, [VERIFIER]).startswith("OK: ")


def test_another_key_or_origin_is_refused() -> None:
    stranger = NoteVerifier.of(ORIGIN, Ed25519PrivateKey.generate().public_key())
    with pytest.raises(UnverifiedNoteError):
        check_proof(_inclusion(0), [stranger])
    forged = _inclusion(0, key=Ed25519PrivateKey.generate())  # same name, other key
    with pytest.raises((BadSignatureError, UnverifiedNoteError)):
        check_proof(forged, [VERIFIER])
    with pytest.raises(CheckpointOriginError):
        check_proof(_inclusion(0), [VERIFIER], "keyledger.test/other")


@pytest.mark.parametrize(
    "document",
    [
        {},
        {"type": "inclusion"},
        {"type": "other"},
        {**_inclusion(1), "proof": "not a list of hashes"},
        {**_inclusion(1), "leaf_index": "1"},
        {**_inclusion(1), "checkpoint": {"note": 7}},
        {**_consistency(2), "proof": ["%%%"]},
    ],
)
def test_malformed_documents_are_refused_saying_so(document: dict[str, Any]) -> None:
    with pytest.raises(LedgerVerificationError):
        check_proof(document, [VERIFIER])
