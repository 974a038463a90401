"""An independent RFC 9162 §2.1 implementation, written from the RFC's text for the tests.

It shares no code with domain/merkle.py (do not import it here): the tree hash is the
recursive MTH of §2.1.1, proofs are PATH (§2.1.3.1) and PROOF/SUBPROOF (§2.1.4.1) by their
recursive definitions over the list of entries, and the verifiers are the bit-shifting
algorithms of §2.1.3.2 and §2.1.4.2, step by step. Subtree hashes are memoised by range,
which changes nothing in the definitions and keeps tests over hundreds of leaves fast.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def _hash(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _k(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class ReferenceTree:
    """D[0:n]: the entries (leaf inputs, not yet hashed) of a Merkle tree."""

    def __init__(self, entries: Sequence[bytes]) -> None:
        self.entries = list(entries)
        self._mth: dict[tuple[int, int], bytes] = {}

    def mth(self, begin: int = 0, end: int | None = None) -> bytes:
        """MTH(D[begin:end]) (§2.1.1)."""
        end = len(self.entries) if end is None else end
        n = end - begin
        if n == 0:
            return _hash(b"")
        if n == 1:
            return _hash(b"\x00" + self.entries[begin])
        if (begin, end) not in self._mth:
            k = _k(n)
            left, right = self.mth(begin, begin + k), self.mth(begin + k, end)
            self._mth[begin, end] = _hash(b"\x01" + left + right)
        return self._mth[begin, end]

    def path(self, m: int, begin: int = 0, end: int | None = None) -> list[bytes]:
        """PATH(m, D[begin:end]) (§2.1.3.1), m relative to begin."""
        end = len(self.entries) if end is None else end
        n = end - begin
        if n == 1:
            return []
        k = _k(n)
        if m < k:
            return [*self.path(m, begin, begin + k), self.mth(begin + k, end)]
        return [*self.path(m - k, begin + k, end), self.mth(begin, begin + k)]

    def proof(self, m: int, n: int | None = None) -> list[bytes]:
        """PROOF(m, D[0:n]) = SUBPROOF(m, D[0:n], true) (§2.1.4.1)."""
        n = len(self.entries) if n is None else n
        return self._subproof(m, 0, n, True)

    def _subproof(self, m: int, begin: int, end: int, b: bool) -> list[bytes]:
        n = end - begin
        if m == n:
            return [] if b else [self.mth(begin, end)]
        k = _k(n)
        if m <= k:
            return [*self._subproof(m, begin, begin + k, b), self.mth(begin + k, end)]
        return [*self._subproof(m - k, begin + k, end, False), self.mth(begin, begin + k)]


def mth(entries: Sequence[bytes]) -> bytes:
    return ReferenceTree(entries).mth()


def leaf_hash(entry: bytes) -> bytes:
    return _hash(b"\x00" + entry)


def verify_inclusion(
    leaf_index: int, tree_size: int, hash_: bytes, inclusion_path: Sequence[bytes], root: bytes
) -> bool:
    """§2.1.3.2, step by step."""
    if leaf_index >= tree_size:  # 1
        return False
    fn, sn = leaf_index, tree_size - 1  # 2
    r = hash_  # 3
    for p in inclusion_path:  # 4
        if sn == 0:  # a
            return False
        if fn & 1 or fn == sn:  # b
            r = _hash(b"\x01" + p + r)  # i
            if not fn & 1:  # ii
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            r = _hash(b"\x01" + r + p)
        fn >>= 1  # c
        sn >>= 1
    return sn == 0 and r == root  # 5


def verify_consistency(
    first: int,
    second: int,
    first_hash: bytes,
    second_hash: bytes,
    consistency_path: Sequence[bytes],
) -> bool:
    """§2.1.4.2, step by step, for 0 < first < second; equal sizes need an empty path and
    equal hashes (the RFC defines no proof for them: nothing to prove)."""
    if first == second:
        return not consistency_path and first_hash == second_hash
    if not 0 < first < second:
        return False
    path = list(consistency_path)
    if not path:  # 1
        return False
    if first & (first - 1) == 0:  # 2: an exact power of two
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1  # 3
    while fn & 1:  # 4
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]  # 5
    for c in path[1:]:  # 6
        if sn == 0:  # a
            return False
        if fn & 1 or fn == sn:  # b
            fr = _hash(b"\x01" + c + fr)  # i
            sr = _hash(b"\x01" + c + sr)  # ii
            if not fn & 1:  # iii
                while not (fn & 1 or fn == 0):
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _hash(b"\x01" + sr + c)
        fn >>= 1  # c
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0  # 7
