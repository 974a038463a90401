"""The tests' independent RFC 9162 implementation (tests/support/rfc9162_reference.py)
reproduces transparency-dev's published vectors, and agrees with domain/merkle.py's stored-
node proofs for any size, index and pair of sizes; a proof with one hash flipped fails."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.merkle import MemoryTree
from tests.domain.test_merkle import (
    CONSISTENCY_PROOFS,
    INCLUSION_PROOFS,
    LEAF_INPUTS,
    ROOT_HASHES,
)
from tests.support import rfc9162_reference as ref


def _flip(proof: list[bytes], which: int) -> list[bytes]:
    changed = list(proof)
    changed[which] = bytes([changed[which][0] ^ 1]) + changed[which][1:]
    return changed


@pytest.mark.parametrize("size", range(len(ROOT_HASHES)))
def test_reference_roots_are_the_published_roots(size: int) -> None:
    assert ref.mth(LEAF_INPUTS[:size]) == ROOT_HASHES[size]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS)
def test_reference_paths_are_the_published_inclusion_proofs(
    leaf: int, size: int, proof: list[bytes]
) -> None:
    tree = ref.ReferenceTree(LEAF_INPUTS[:size])
    assert tree.path(leaf - 1) == proof
    entry_hash = ref.leaf_hash(LEAF_INPUTS[leaf - 1])
    assert ref.verify_inclusion(leaf - 1, size, entry_hash, proof, ROOT_HASHES[size])
    for which in range(len(proof)):
        assert not ref.verify_inclusion(
            leaf - 1, size, entry_hash, _flip(proof, which), ROOT_HASHES[size]
        )


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_PROOFS)
def test_reference_proofs_are_the_published_consistency_proofs(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    tree = ref.ReferenceTree(LEAF_INPUTS[:size2])
    assert tree.proof(size1) == proof
    roots = ROOT_HASHES[size1], ROOT_HASHES[size2]
    assert ref.verify_consistency(size1, size2, *roots, proof)
    for which in range(len(proof)):
        assert not ref.verify_consistency(size1, size2, *roots, _flip(proof, which))


def _entries(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") for i in range(n)]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_domain_inclusion_proofs_are_the_reference_paths(case: tuple[int, int]) -> None:
    size, index = case
    entries = _entries(size)
    tree, memory = ref.ReferenceTree(entries), MemoryTree()
    for entry in entries:
        memory.append_leaf(entry)
    proof = memory.inclusion_proof(index)
    assert proof == tree.path(index) and memory.root() == tree.mth()
    assert ref.verify_inclusion(index, size, ref.leaf_hash(entries[index]), proof, tree.mth())


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.integers(1, n), st.just(n))))
def test_domain_consistency_proofs_are_the_reference_proofs(case: tuple[int, int]) -> None:
    size1, size2 = case
    entries = _entries(size2)
    tree, memory = ref.ReferenceTree(entries), MemoryTree()
    for entry in entries:
        memory.append_leaf(entry)
    proof = memory.consistency_proof(size1)
    assert proof == (tree.proof(size1) if size1 < size2 else [])
    assert ref.verify_consistency(size1, size2, tree.mth(0, size1), tree.mth(), proof)
    if proof:
        assert not ref.verify_consistency(
            size1, size2, tree.mth(0, size1), tree.mth(), _flip(proof, len(proof) - 1)
        )
