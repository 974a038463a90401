"""RFC 9162 §2.1 Merkle trees (domain/merkle.py).

Three kinds of evidence:

* Published vectors, copied verbatim from github.com/transparency-dev/merkle:
  ``testonly/constants.go`` (commit 582a6ad190b6848f1d26f8bf08ddef29955d9db1: leaf inputs,
  perfect-node hashes per level, roots at sizes 0..8, compact-range hashes) and
  ``proof/verify_test.go`` (commit 02194e9afb6c1d95b5381350007963aa70fff472: inclusion and
  consistency proofs, and the corruption probes each must fail). These are the RFC 6962
  vectors Certificate Transparency has used since certificate-transparency-go's merkletree.
* An independent implementation written here straight from the RFC text (recursive MTH,
  PATH, PROOF, and recursive verifiers that undo the recursion), sharing no code with
  domain/merkle.py.
* Hypothesis properties over any size, any pair of sizes and any index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.ledger_errors import InvalidProofError
from domain.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MemoryTree,
    NodeId,
    consistency_plan,
    descendants,
    frontier_nodes,
    inclusion_plan,
    leaf_hash,
    merkle_tree_hash,
    perfect_root,
    plan_nodes,
    root_from_inclusion_proof,
    subtree_nodes,
    verify_consistency,
    verify_inclusion,
)


def hd(s: str) -> bytes:
    return bytes.fromhex(s)


# --- transparency-dev/merkle testonly/constants.go -----------------------------------
LEAF_INPUTS = [
    hd(""),
    hd("00"),
    hd("10"),
    hd("2021"),
    hd("3031"),
    hd("40414243"),
    hd("5051525354555657"),
    hd("606162636465666768696a6b6c6d6e6f"),
]
NODE_HASHES = [
    [
        hd("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
        hd("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
        hd("0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7"),
        hd("07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7"),
        hd("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        hd("4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658"),
        hd("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
        hd("46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1"),
    ],
    [
        hd("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
        hd("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
        hd("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
        hd("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    ],
    [
        hd("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        hd("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
    ],
    [
        hd("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
    ],
]
ROOT_HASHES = [
    hd("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    hd("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
    hd("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    hd("aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77"),
    hd("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    hd("4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4"),
    hd("76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef"),
    hd("ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c"),
    hd("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"),
]
NH = NODE_HASHES
COMPACT_TREES: list[list[bytes]] = [
    [],
    [NH[0][0]],
    [NH[1][0]],
    [NH[1][0], NH[0][2]],
    [NH[2][0]],
    [NH[2][0], NH[0][4]],
    [NH[2][0], NH[1][2]],
    [NH[2][0], NH[1][2], NH[0][6]],
    [NH[3][0]],
]

# --- transparency-dev/merkle proof/verify_test.go ----------------------------------------
# (leaf, size, proof) with leaf 1-based, as in the Go table; {0, 0, nil} is its invalid probe.
INCLUSION_PROOFS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            hd("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            hd("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            hd("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            hd("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            hd("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            hd("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (3, 3, [hd("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (
        2,
        5,
        [
            hd("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            hd("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            hd("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
]
CONSISTENCY_PROOFS: list[tuple[int, int, list[bytes]]] = [
    (1, 1, []),
    (
        1,
        8,
        [
            hd("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            hd("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            hd("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
        ],
    ),
    (
        6,
        8,
        [
            hd("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            hd("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            hd("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
    (
        2,
        5,
        [
            hd("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            hd("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
        ],
    ),
    (
        6,
        7,
        [
            hd("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            hd("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            hd("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
        ],
    ),
]
SOME_HASH = hd("abacaba000000000000000000000000000000000000000000060061e00123456")


# --- an independent implementation, straight from RFC 9162 §2.1 -------------------------
def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: Sequence[bytes]) -> bytes:
    if len(d) == 0:
        return _h(b"")
    if len(d) == 1:
        return _h(b"\x00" + d[0])
    k = _k(len(d))
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: Sequence[bytes], b: bool) -> list[bytes]:
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _k(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes]) -> list[bytes]:
    return ref_subproof(m, d, True)


def ref_inclusion_root(lh: bytes, m: int, n: int, path: list[bytes]) -> bytes | None:
    """Undo PATH: the root the path implies, or None when its shape is wrong."""
    if n == 1:
        return lh if not path else None
    if not path:
        return None
    k = _k(n)
    last = path[-1]
    if m < k:
        sub = ref_inclusion_root(lh, m, k, path[:-1])
        return None if sub is None else _h(b"\x01" + sub + last)
    sub = ref_inclusion_root(lh, m - k, n - k, path[:-1])
    return None if sub is None else _h(b"\x01" + last + sub)


def ref_consistency_roots(
    m: int, n: int, proof: list[bytes], b: bool, old: bytes
) -> tuple[bytes, bytes] | None:
    """Undo SUBPROOF: the (old, new) subtree roots the proof implies, or None."""
    if m == n:
        if b:
            return (old, old) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = _k(n)
    last = proof[-1]
    if m <= k:
        sub = ref_consistency_roots(m, k, proof[:-1], b, old)
        return None if sub is None else (sub[0], _h(b"\x01" + sub[1] + last))
    sub = ref_consistency_roots(m - k, n - k, proof[:-1], False, old)
    if sub is None:
        return None
    return _h(b"\x01" + last + sub[0]), _h(b"\x01" + last + sub[1])


def ref_verify_consistency(m: int, n: int, proof: list[bytes], r1: bytes, r2: bytes) -> bool:
    if not 0 < m < n:
        return False
    roots = ref_consistency_roots(m, n, proof, True, r1)
    return roots == (r1, r2)


def leaves(n: int) -> list[bytes]:
    return [i.to_bytes(4, "big") + b"leaf" for i in range(n)]


def tree_of(d: Sequence[bytes]) -> MemoryTree:
    t = MemoryTree()
    for leaf in d:
        t.append_leaf(leaf)
    return t


VECTOR_TREE = tree_of(LEAF_INPUTS)


# --- published vectors ------------------------------------------------------------
@pytest.mark.parametrize("size", range(9))
def test_roots_match_the_published_vectors(size: int) -> None:
    assert merkle_tree_hash(LEAF_INPUTS[:size]) == ROOT_HASHES[size]
    assert VECTOR_TREE.root(size) == ROOT_HASHES[size]
    assert ref_mth(LEAF_INPUTS[:size]) == ROOT_HASHES[size]


def test_the_empty_root_is_the_hash_of_nothing() -> None:
    assert EMPTY_ROOT == ROOT_HASHES[0] == CompactRange().root()


def test_perfect_nodes_match_the_published_node_hashes() -> None:
    for level, row in enumerate(NODE_HASHES):
        for index, expected in enumerate(row):
            assert VECTOR_TREE.node(NodeId(level, index)) == expected, (level, index)
    assert [leaf_hash(x) for x in LEAF_INPUTS] == NODE_HASHES[0]


@pytest.mark.parametrize("size", range(9))
def test_compact_ranges_match_the_published_compact_trees(size: int) -> None:
    c = CompactRange()
    for leaf in LEAF_INPUTS[:size]:
        c.append_leaf(leaf)
    assert list(c.hashes) == COMPACT_TREES[size]
    assert [VECTOR_TREE.node(n) for n in frontier_nodes(size)] == COMPACT_TREES[size]


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS)
def test_inclusion_proofs_match_the_published_vectors(
    leaf: int, size: int, proof: list[bytes]
) -> None:
    index = leaf - 1
    assert VECTOR_TREE.inclusion_proof(index, size) == proof
    assert ref_path(index, LEAF_INPUTS[:size]) == proof
    lh = leaf_hash(LEAF_INPUTS[index])
    verify_inclusion(lh, index, size, proof, ROOT_HASHES[size])
    assert root_from_inclusion_proof(lh, index, size, proof) == ROOT_HASHES[size]


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_PROOFS)
def test_consistency_proofs_match_the_published_vectors(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    assert VECTOR_TREE.consistency_proof(size1, size2) == proof
    if size1 < size2:
        assert ref_proof(size1, LEAF_INPUTS[:size2]) == proof
    verify_consistency(size1, size2, proof, ROOT_HASHES[size1], ROOT_HASHES[size2])


def _flip(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ bit]) + out[i][1:]
    return out


@pytest.mark.parametrize(("leaf", "size", "proof"), INCLUSION_PROOFS)
def test_corrupted_inclusion_proofs_fail(leaf: int, size: int, proof: list[bytes]) -> None:
    # corruptInclusionProof of verify_test.go.
    i, root, lh = leaf - 1, ROOT_HASHES[size], leaf_hash(LEAF_INPUTS[leaf - 1])
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (i - 1, size, root, lh, proof),
        (i + 1, size, root, lh, proof),
        (i ^ 2, size, root, lh, proof),
        (i, size * 2, root, lh, proof),
        (i, size // 2, root, lh, proof),
        (i, size, root, b"WrongLeaf", proof),
        (i, size, EMPTY_ROOT, lh, proof),
        (i, size, SOME_HASH, lh, proof),
        (i, size, root, lh, [*proof, b""]),
        (i, size, root, lh, [*proof, root]),
        (i, size, root, lh, [b"", *proof]),
        (i, size, root, lh, [root, *proof]),
    ]
    probes += [(i, size, root, lh, _flip(proof, j, 8)) for j in range(len(proof))]
    if proof:
        probes.append((i, size, root, lh, proof[:-1]))
    if len(proof) > 1:
        probes.append((i, size, root, lh, [proof[0], SOME_HASH, *proof[1:]]))
    for index, sz, rt, leaf_h, pr in probes:
        with pytest.raises(InvalidProofError):
            verify_inclusion(leaf_h, index, sz, pr, rt)


@pytest.mark.parametrize(("size1", "size2", "proof"), [p for p in CONSISTENCY_PROOFS if p[2]])
def test_corrupted_consistency_proofs_fail(size1: int, size2: int, proof: list[bytes]) -> None:
    # corruptConsistencyProof of verify_test.go.
    r1, r2 = ROOT_HASHES[size1], ROOT_HASHES[size2]
    probes: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (size1 - 1, size2, r1, r2, proof),
        (size1 + 1, size2, r1, r2, proof),
        (size1 ^ 2, size2, r1, r2, proof),
        (size1, size2 * 2, r1, r2, proof),
        (size1, size2 // 2, r1, r2, proof),
        (size1, size2, b"WrongRoot", r2, proof),
        (size1, size2, r1, b"WrongRoot", proof),
        (size1, size2, r2, r1, proof),
        (size1, size2, r1, r2, []),
        (size1, size2, r1, r2, [*proof, b""]),
        (size1, size2, r1, r2, [*proof, r1]),
        (size1, size2, r1, r2, [*proof, r2]),
        (size1, size2, r1, r2, [b"", *proof]),
        (size1, size2, r1, r2, [r1, *proof]),
        (size1, size2, r1, r2, [r2, *proof]),
        (size1, size2, r1, r2, [proof[0], *proof]),
        (size1, size2, r1, r2, proof[:-1]),
    ]
    probes += [(size1, size2, r1, r2, _flip(proof, j, 16)) for j in range(len(proof))]
    for s1, s2, a, b, pr in probes:
        with pytest.raises(InvalidProofError):
            verify_consistency(s1, s2, pr, a, b)


@pytest.mark.parametrize(("index", "size"), [(0, 0), (0, 1), (1, 0), (2, 1)])
def test_inclusion_probes_of_the_go_tests_fail(index: int, size: int) -> None:
    # TestVerifyInclusion's probes (an empty hash is the wrong size here).
    for lh, root in [(SOME_HASH, b""), (b"", EMPTY_ROOT), (SOME_HASH, EMPTY_ROOT)]:
        with pytest.raises(InvalidProofError):
            verify_inclusion(lh, index, size, [], root)


def test_single_entry_inclusion() -> None:
    h = leaf_hash(b"data")
    verify_inclusion(h, 0, 1, [], h)
    for lh, root in [(h, b""), (b"", h), (b"", b"")]:
        with pytest.raises(InvalidProofError):
            verify_inclusion(lh, 0, 1, [], root)


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "ok"),
    [
        # TestVerifyConsistency's table; the "don't care" roots are 32-byte hashes here, and
        # a tree of size 0 must have the empty root (stricter than the Go code).
        (0, 0, SOME_HASH, EMPTY_ROOT, [], False),
        (1, 1, SOME_HASH, EMPTY_ROOT, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [], True),
        (0, 1, EMPTY_ROOT, SOME_HASH, [], True),
        (0, 1, SOME_HASH, SOME_HASH, [], False),
        (1, 1, SOME_HASH, SOME_HASH, [], True),
        (1, 0, SOME_HASH, EMPTY_ROOT, [], False),
        (2, 1, SOME_HASH, EMPTY_ROOT, [], False),
        (1, 2, SOME_HASH, EMPTY_ROOT, [], False),
        (0, 0, EMPTY_ROOT, SOME_HASH, [], False),
        (1, 1, EMPTY_ROOT, SOME_HASH, [], False),
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_consistency_edge_cases(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], ok: bool
) -> None:
    if ok:
        verify_consistency(size1, size2, proof, root1, root2)
    else:
        with pytest.raises(InvalidProofError):
            verify_consistency(size1, size2, proof, root1, root2)


# --- node addressing -------------------------------------------------------------------
def test_subtree_nodes_decompose_by_the_binary_digits_of_the_width() -> None:
    assert subtree_nodes(0, 7) == (NodeId(2, 0), NodeId(1, 2), NodeId(0, 6))
    assert subtree_nodes(8, 13) == (NodeId(2, 2), NodeId(0, 12))
    assert frontier_nodes(0) == ()
    with pytest.raises(ValueError):
        subtree_nodes(2, 5)  # not a subtree of any Merkle tree


def test_plans_name_only_perfect_nodes_below_the_size() -> None:
    plan = inclusion_plan(5, 7)
    assert plan == ((NodeId(0, 4),), (NodeId(0, 6),), (NodeId(2, 0),))
    assert plan_nodes(consistency_plan(3, 7)) == {
        NodeId(0, 2),
        NodeId(0, 3),
        NodeId(1, 0),
        NodeId(1, 2),
        NodeId(0, 6),
    }


def test_append_reports_the_nodes_it_completes() -> None:
    c = CompactRange()
    for leaf in LEAF_INPUTS[:7]:
        c.append_leaf(leaf)
    done = c.append_leaf(LEAF_INPUTS[7])
    assert [n for n, _ in done] == [NodeId(0, 7), NodeId(1, 3), NodeId(2, 1), NodeId(3, 0)]
    assert [h for _, h in done] == [NH[0][7], NH[1][3], NH[2][1], NH[3][0]]


def test_a_compact_range_restores_from_stored_nodes_and_keeps_going() -> None:
    c = CompactRange.restore(6, VECTOR_TREE.node)
    assert c.root() == ROOT_HASHES[6]
    c.append_leaf(LEAF_INPUTS[6])
    c.append_leaf(LEAF_INPUTS[7])
    assert c.root() == ROOT_HASHES[8]
    with pytest.raises(ValueError):
        CompactRange(3, [NH[1][0]])


# --- properties against the independent implementation -----------------------------------
@settings(max_examples=150, deadline=None)
@given(st.integers(0, 300))
def test_the_compact_range_root_is_the_mth(n: int) -> None:
    d = leaves(n)
    c = CompactRange()
    for leaf in d:
        c.append_leaf(leaf)
    assert c.root() == ref_mth(d)
    assert tree_of(d).root() == ref_mth(d)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_inclusion_proofs_agree_with_the_rfc_and_verify(n_m: tuple[int, int]) -> None:
    n, m = n_m
    d = leaves(n)
    tree = tree_of(d)
    proof = tree.inclusion_proof(m, n)
    assert proof == ref_path(m, d)
    root = ref_mth(d)
    lh = leaf_hash(d[m])
    verify_inclusion(lh, m, n, proof, root)
    assert ref_inclusion_root(lh, m, n, proof) == root


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 200).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n - 1), st.integers(0, 255), st.data())
    )
)
def test_tampered_inclusion_proofs_fail(args: tuple[int, int, int, st.DataObject]) -> None:
    n, m, bit, data = args
    d = leaves(n)
    proof = tree_of(d).inclusion_proof(m, n)
    root, lh = ref_mth(d), leaf_hash(d[m])
    tampered: list[list[bytes]] = [[*proof, SOME_HASH]]
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1))
        flipped = list(proof)
        flipped[j] = bytes([flipped[j][0] ^ (1 << (bit % 8))]) + flipped[j][1:]
        tampered += [flipped, proof[:j] + proof[j + 1 :]]
    for bad in tampered:
        with pytest.raises(InvalidProofError):
            verify_inclusion(lh, m, n, bad, root)
        assert ref_inclusion_root(lh, m, n, bad) != root
    other = data.draw(st.integers(0, n - 1))
    if leaf_hash(d[other]) != lh:
        with pytest.raises(InvalidProofError):
            verify_inclusion(leaf_hash(d[other]), m, n, proof, root)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 200).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.data())))
def test_consistency_proofs_agree_with_the_rfc_and_verify(
    args: tuple[int, int, st.DataObject],
) -> None:
    n, m, data = args
    d = leaves(n)
    tree = tree_of(d)
    proof = tree.consistency_proof(m, n)
    r1, r2 = ref_mth(d[:m]), ref_mth(d)
    assert tree.root(m) == r1
    verify_consistency(m, n, proof, r1, r2)
    if 0 < m < n:
        assert proof == ref_proof(m, d)
        assert ref_verify_consistency(m, n, proof, r1, r2)
        j = data.draw(st.integers(0, len(proof) - 1))
        flipped = list(proof)
        flipped[j] = bytes([flipped[j][0] ^ 1]) + flipped[j][1:]
        for bad in (flipped, proof[:j] + proof[j + 1 :], [*proof, SOME_HASH]):
            with pytest.raises(InvalidProofError):
                verify_consistency(m, n, bad, r1, r2)
            assert not ref_verify_consistency(m, n, bad, r1, r2)
        forked = leaves(n)
        forked[data.draw(st.integers(0, m - 1))] += b"forked"
        with pytest.raises(InvalidProofError):
            verify_consistency(m, n, proof, ref_mth(forked[:m]), r2)
    else:
        assert proof == []


# --- appending a batch --------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.integers(0, 70), st.integers(1, 70), st.sampled_from([1, 2, 4]))
def test_extend_completes_the_nodes_append_does(start: int, count: int, every: int) -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(start + count)]
    one_by_one = CompactRange()
    for h in hashes[:start]:
        one_by_one.append(h)
    batched = one_by_one.copy()
    expected = [
        (node.level, node.index, value)
        for h in hashes[start:]
        for node, value in one_by_one.append(h)
        if node.level % every == 0
    ]
    assert batched.extend(b"".join(hashes[start:]), every=every) == expected
    assert (batched.size, batched.root()) == (one_by_one.size, one_by_one.root())


def test_extend_without_keeping_nodes_only_moves_the_range() -> None:
    compact = CompactRange()
    assert compact.extend(b"\x01" * 32 * 5) == []
    assert compact.size == 5
    with pytest.raises(ValueError):
        compact.extend(b"\x01" * 31)


def test_a_node_is_the_perfect_root_of_its_descendants_at_any_level() -> None:
    hashes = [hashlib.sha256(bytes([i])).digest() for i in range(16)]
    compact = CompactRange()
    store = {node: value for h in hashes for node, value in compact.append(h)}
    node = NodeId(3, 1)  # leaves 8 to 15
    for level in range(4):
        parts = descendants(node, level)
        assert len(parts) == 1 << (3 - level)
        assert perfect_root([store[p] for p in parts]) == store[node]
    with pytest.raises(ValueError):
        perfect_root(hashes[:3])
    with pytest.raises(ValueError):
        descendants(node, 4)
