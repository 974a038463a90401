"""RFC 9162 section 2.1 Merkle trees: hashing, proofs, and a compact, appendable form.

Hashing (RFC 9162 §2.1.1, identical to RFC 6962 §2.1), H = SHA-256::

    MTH({})      = H()                                   (the empty tree)
    MTH({d0})    = H(0x00 || d0)                         (leaf hash)
    MTH(D[0:n])  = H(0x01 || MTH(D[0:k]) || MTH(D[k:n])) k = largest power of two < n

Inclusion proofs are PATH (§2.1.3.1), consistency proofs PROOF/SUBPROOF (§2.1.4.1); both
are verified with the algorithms of §2.1.3.2 and §2.1.4.2, written as the RFC gives them.

Stored nodes: level and index
-----------------------------
A *perfect subtree* is a full binary tree of 2**level leaves. The node ``NodeId(level,
index)`` is the root of the perfect subtree over leaves ``[index * 2**level, (index + 1) *
2**level)``; level 0 holds the leaf hashes (``NodeId(0, i)`` is the hash of leaf i). This is
the addressing of Trillian and transparency-dev (``compact.NodeID``). A node exists once all
of its leaves exist and never changes afterwards, so a store of nodes is append-only: a row
``(level, index, hash)`` is written once, when its last leaf is appended, and never updated.
`CompactRange.append` returns exactly the nodes an append completes (one per level the
append carries through), so a projection writes them in the same transaction as the leaf.

Every hash a proof or a root needs is either such a perfect node or the root of a
*right-edge* subtree ``[begin, end)`` whose ``begin`` is a multiple of the power of two at or
above ``end - begin`` (that is how the RFC's recursion splits). Such a range is the
concatenation of the perfect subtrees given by the binary digits of ``end - begin``, largest
first (`subtree_nodes`), and its MTH is those nodes' hashes folded from the right:
``H(0x01 || n1 || H(0x01 || n2 || ... nk))``. So any root ``MTH(D[0:size])`` and any proof
at any past size is computed from at most O(log^2 n) stored perfect nodes: `inclusion_plan`
and `consistency_plan` list the node ids (to fetch in one query), `assemble` folds them into
proof hashes. Nodes at level 0 need not be stored if the leaves can be rehashed, but storing
them keeps proofs to one lookup.

Compact range
-------------
`CompactRange` is the state needed to keep appending: the tree size and the hashes of the
perfect subtrees ``[0, size)`` decomposes into (one per set bit of the size, largest and
leftmost first) -- transparency-dev's ``compact.Range`` starting at 0, Certificate
Transparency's "frontier". It is O(log n) hashes, gives the root at its size, and is
restored from the store by `frontier_nodes` (the ids of those subtrees).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from domain.ledger_errors import InvalidProofError

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf)."""
    return hashlib.sha256(LEAF_PREFIX + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly smaller than n (n >= 2)."""
    if n < 2:
        raise ValueError(f"no split for a tree of {n} leaves")
    return 1 << ((n - 1).bit_length() - 1)


@dataclass(frozen=True, slots=True, order=True)
class NodeId:
    """The root of the perfect subtree over leaves [index * 2**level, (index+1) * 2**level)."""

    level: int
    index: int

    @property
    def begin(self) -> int:
        return self.index << self.level

    @property
    def end(self) -> int:
        return (self.index + 1) << self.level


# --- hashing whole lists ------------------------------------------------------
def root_from_leaf_hashes(hashes: Iterable[bytes]) -> bytes:
    """MTH of the leaves whose leaf hashes are given, in order (one pass, O(log n) state)."""
    compact = CompactRange()
    for h in hashes:
        compact.append(h)
    return compact.root()


def merkle_tree_hash(leaves: Iterable[bytes]) -> bytes:
    """MTH(D[0:n]) of the leaf inputs (not yet leaf-hashed)."""
    return root_from_leaf_hashes(leaf_hash(leaf) for leaf in leaves)


# --- ranges and node ids ------------------------------------------------------
def subtree_nodes(begin: int, end: int) -> tuple[NodeId, ...]:
    """The perfect subtrees that make up the RFC subtree D[begin:end], largest first.

    ``begin`` must be a multiple of the power of two at or above ``end - begin`` (every
    subtree of the RFC's recursion is; so is [0, size) for any size).
    """
    if not 0 <= begin < end:
        raise ValueError(f"empty or negative range [{begin}, {end})")
    width = end - begin
    if begin % (1 << (width - 1).bit_length()):
        raise ValueError(f"[{begin}, {end}) is not a subtree of any Merkle tree")
    nodes = []
    for level in range(width.bit_length() - 1, -1, -1):
        if width >> level & 1:
            nodes.append(NodeId(level, begin >> level))
            begin += 1 << level
    return tuple(nodes)


def frontier_nodes(size: int) -> tuple[NodeId, ...]:
    """The perfect subtrees of the tree of `size` leaves, largest (leftmost) first."""
    if size < 0:
        raise ValueError("negative tree size")
    return subtree_nodes(0, size) if size else ()


def fold(hashes: Sequence[bytes]) -> bytes:
    """The MTH of a right-edge subtree from its perfect subtrees' hashes, largest first."""
    if not hashes:
        raise ValueError("nothing to fold")
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def perfect_root(hashes: Sequence[bytes]) -> bytes:
    """The root of a perfect subtree from its 2**k descendants at one level, in order
    (a node a store does not keep is rebuilt from the nearest level it does)."""
    count = len(hashes)
    if count == 0 or count & (count - 1):
        raise ValueError(f"{count} nodes are not a perfect subtree's level")
    level = list(hashes)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def descendants(node: NodeId, level: int) -> list[NodeId]:
    """The nodes at `level` (<= the node's) under `node`, left to right."""
    depth = node.level - level
    if depth < 0:
        raise ValueError(f"level {level} is above {node}")
    first = node.index << depth
    return [NodeId(level, first + i) for i in range(1 << depth)]


# --- proof plans: which stored nodes a proof needs ------------------------------
ProofPlan = tuple[tuple[NodeId, ...], ...]
"""One entry per proof hash: the perfect nodes to fold (largest first) into that hash."""


def _path(m: int, begin: int, end: int) -> list[tuple[int, int]]:
    # PATH(m, D[begin:end]) of RFC 9162 §2.1.3.1, as ranges; m is relative to begin.
    ranges: list[tuple[int, int]] = []
    while end - begin > 1:
        k = split_point(end - begin)
        if m < k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            m -= k
            begin += k
    ranges.reverse()  # the recursion appends on the way back up: deepest first
    return ranges


def _subproof(m: int, begin: int, end: int) -> list[tuple[int, int]]:
    # SUBPROOF(m, D[begin:end], True) of RFC 9162 §2.1.4.1, as ranges.
    ranges: list[tuple[int, int]] = []
    complete = True
    while m != end - begin:
        k = split_point(end - begin)
        if m <= k:
            ranges.append((begin + k, end))
            end = begin + k
        else:
            ranges.append((begin, begin + k))
            m -= k
            begin += k
            complete = False
    if not complete:
        ranges.append((begin, end))
    ranges.reverse()
    return ranges


def inclusion_plan(index: int, size: int) -> ProofPlan:
    """The nodes of the inclusion proof of leaf `index` in the tree of `size` leaves."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    return tuple(subtree_nodes(b, e) for b, e in _path(index, 0, size))


def consistency_plan(size1: int, size2: int) -> ProofPlan:
    """The nodes of the consistency proof from the tree of size1 leaves to size2 leaves."""
    if not 0 <= size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2}")
    if size1 == 0 or size1 == size2:
        return ()
    return tuple(subtree_nodes(b, e) for b, e in _subproof(size1, 0, size2))


def plan_nodes(plan: ProofPlan) -> frozenset[NodeId]:
    """Every node a plan needs (what to fetch from the store)."""
    return frozenset(node for entry in plan for node in entry)


NodeLookup = Mapping[NodeId, bytes] | Callable[[NodeId], bytes]


def assemble(plan: ProofPlan, nodes: NodeLookup) -> list[bytes]:
    """The proof hashes of a plan, from stored perfect-node hashes."""
    get = nodes.__getitem__ if isinstance(nodes, Mapping) else nodes
    return [fold([get(node) for node in entry]) for entry in plan]


def root_at(size: int, nodes: NodeLookup) -> bytes:
    """MTH(D[0:size]) from stored perfect-node hashes (any size up to the stored one)."""
    if size == 0:
        return EMPTY_ROOT
    get = nodes.__getitem__ if isinstance(nodes, Mapping) else nodes
    return fold([get(node) for node in frontier_nodes(size)])


# --- verification (RFC 9162 §2.1.3.2 and §2.1.4.2) ---------------------------------
def _check_hashes(*hashes: bytes) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise InvalidProofError(f"a hash of {len(h)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(
    leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root an inclusion proof implies (RFC 9162 §2.1.3.2 steps 1-5)."""
    _check_hashes(leaf_hash_, *proof)
    if not 0 <= index < size:
        raise InvalidProofError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn, r = index, size - 1, leaf_hash_
    for p in proof:
        if sn == 0:
            raise InvalidProofError("inclusion proof is too long")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError("inclusion proof is too short")
    return r


def verify_inclusion(
    leaf_hash_: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Raises InvalidProofError unless `proof` shows leaf `index` under `root` at `size`."""
    _check_hashes(root)
    if root_from_inclusion_proof(leaf_hash_, index, size, proof) != root:
        raise InvalidProofError(f"inclusion proof of leaf {index} does not lead to the root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Raises InvalidProofError unless `proof` shows the tree at size1 is a prefix of size2.

    Edge cases as transparency-dev's ``proof.VerifyConsistency``, stricter on the empty
    tree: size1 == size2 needs an empty proof and equal roots; size1 == 0 needs an empty
    proof and root1 == MTH({}).
    """
    _check_hashes(root1, root2, *proof)
    if not 0 <= size1 <= size2:
        raise InvalidProofError(f"size {size2} cannot follow size {size1}")
    if size1 == size2:
        if proof:
            raise InvalidProofError("a consistency proof between equal sizes must be empty")
        if root1 != root2:
            raise InvalidProofError(f"two different roots at size {size1}")
        return
    if size1 == 0:
        if proof:
            raise InvalidProofError("a consistency proof from the empty tree must be empty")
        if root1 != EMPTY_ROOT:
            raise InvalidProofError("the root of the empty tree is not MTH({})")
        return
    # RFC 9162 §2.1.4.2.
    if not proof:
        raise InvalidProofError("empty consistency proof")
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProofError("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise InvalidProofError("consistency proof is too short")
    if fr != root1:
        raise InvalidProofError(f"consistency proof does not lead to the root at size {size1}")
    if sr != root2:
        raise InvalidProofError(f"consistency proof does not lead to the root at size {size2}")


# --- the compact range -----------------------------------------------------------
class CompactRange:
    """The perfect subtrees of [0, size): append leaves with O(log n) state, get the root."""

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError("negative tree size")
        if len(hashes) != size.bit_count():
            raise ValueError(f"a tree of {size} leaves has {size.bit_count()} subtrees")
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError(f"subtree hashes are {HASH_SIZE} bytes")
        self._size = size
        self._hashes = list(hashes)

    @classmethod
    def restore(cls, size: int, nodes: NodeLookup) -> CompactRange:
        """The compact range of a stored tree of `size` leaves, from its frontier nodes."""
        get = nodes.__getitem__ if isinstance(nodes, Mapping) else nodes
        return cls(size, [get(node) for node in frontier_nodes(size)])

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The frontier's hashes, in the order of `frontier_nodes(size)`."""
        return tuple(self._hashes)

    def nodes(self) -> dict[NodeId, bytes]:
        return dict(zip(frontier_nodes(self._size), self._hashes, strict=True))

    def append(self, leaf_hash_: bytes) -> list[tuple[NodeId, bytes]]:
        """Appends a leaf (by its leaf hash); returns the perfect nodes it completed.

        The first is the leaf's own node (level 0), then one per level the append carried.
        """
        if len(leaf_hash_) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes")
        index, level, h = self._size, 0, leaf_hash_
        completed = [(NodeId(0, index), h)]
        carry = self._size
        while carry & 1:
            h = node_hash(self._hashes.pop(), h)
            carry >>= 1
            level += 1
            completed.append((NodeId(level, index >> level), h))
        self._hashes.append(h)
        self._size += 1
        return completed

    def append_leaf(self, leaf: bytes) -> list[tuple[NodeId, bytes]]:
        """Appends a leaf input (hashed here with the 0x00 prefix)."""
        return self.append(leaf_hash(leaf))

    def extend(self, leaf_hashes: bytes, every: int = 0) -> list[tuple[int, int, bytes]]:
        """Appends the leaf hashes concatenated in `leaf_hashes` (32 bytes each); returns
        the (level, index, hash) of the nodes they complete at the levels that are
        multiples of `every` (0: none). `append` for a batch, without its per-node
        objects: the Merkle log appends every event of the ledger through it."""
        if len(leaf_hashes) % HASH_SIZE:
            raise ValueError(f"leaf hashes are {HASH_SIZE} bytes each")
        sha256, prefix = hashlib.sha256, NODE_PREFIX
        frontier, size = self._hashes, self._size
        completed: list[tuple[int, int, bytes]] = []
        keep = completed.append if every else None
        for offset in range(0, len(leaf_hashes), HASH_SIZE):
            h = leaf_hashes[offset : offset + HASH_SIZE]
            if keep is not None:
                keep((0, size, h))
            carry, level = size, 0
            while carry & 1:
                h = sha256(prefix + frontier.pop() + h).digest()
                carry >>= 1
                level += 1
                if keep is not None and level % every == 0:
                    keep((level, carry, h))
            frontier.append(h)
            size += 1
        self._size = size
        return completed

    def root(self) -> bytes:
        return fold(self._hashes) if self._hashes else EMPTY_ROOT

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)


class MemoryTree:
    """Every perfect node of a tree, in memory: a store for tests and small offline checks."""

    def __init__(self) -> None:
        self._compact = CompactRange()
        self._levels: list[list[bytes]] = []

    @property
    def size(self) -> int:
        return self._compact.size

    def append(self, leaf_hash_: bytes) -> None:
        for node, h in self._compact.append(leaf_hash_):
            if node.level == len(self._levels):
                self._levels.append([])
            self._levels[node.level].append(h)

    def append_leaf(self, leaf: bytes) -> None:
        self.append(leaf_hash(leaf))

    def node(self, node: NodeId) -> bytes:
        try:
            return self._levels[node.level][node.index]
        except IndexError:
            raise KeyError(node) from None

    def root(self, size: int | None = None) -> bytes:
        size = self.size if size is None else size
        if not 0 <= size <= self.size:
            raise ValueError(f"no tree of {size} leaves here (size {self.size})")
        return root_at(size, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self.size if size is None else size
        if size > self.size:
            raise ValueError(f"no tree of {size} leaves here (size {self.size})")
        return assemble(inclusion_plan(index, size), self.node)

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self.size if size2 is None else size2
        if size2 > self.size:
            raise ValueError(f"no tree of {size2} leaves here (size {self.size})")
        return assemble(consistency_plan(size1, size2), self.node)
