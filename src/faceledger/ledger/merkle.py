"""RFC 9162 Merkle trees: roots, inclusion proofs and consistency proofs.

Hashing is that of Certificate Transparency (RFC 9162 §2.1.1) with SHA-256::

    leaf hash  = SHA-256(0x00 || leaf data)
    node hash  = SHA-256(0x01 || left || right)
    MTH({})    = SHA-256("")

The tree over ``n`` leaves splits at the largest power of two smaller than ``n``. The
ledger's leaf data is the 32 raw bytes of an entry's ``entry_hash`` (itself SHA-256 of
the entry's canonical JSON, which includes its sequence number and the previous hash),
leaf index ``seq - 1``.

:class:`MerkleTree` keeps every *complete* (perfect, aligned) subtree hash, level by
level, in flat byte arrays: 32 bytes per leaf at level 0 plus as much again above, so
64 bytes per entry (64 MB per million entries). Appending costs O(1) amortised hashes;
building over ``n`` leaves about 2n hashes (3 s per million leaves in CPython here). Any
subtree of a tree of size ``m <= n`` is either one of those complete subtrees or a right
edge built from O(log n) of them, so a root, an inclusion proof or a consistency proof
of any earlier size costs O(log² n) hashes at most, without touching the leaves again.

The verification functions follow RFC 9162 §2.1.3.2 and §2.1.4.2 step by step and need
nothing but hashes; they are what an outside auditor runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    """SHA-256(0x00 || data)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class ProofError(ValueError):
    """A proof was asked for sizes or indexes the tree does not have."""


class MerkleTree:
    """An append-only RFC 9162 tree holding its complete subtree hashes (see module doc)."""

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        self._levels: list[bytearray] = [bytearray()]
        self._size = 0
        for h in leaf_hashes:
            self.append_hash(h)

    @property
    def size(self) -> int:
        return self._size

    def __len__(self) -> int:
        return self._size

    def append(self, data: bytes) -> None:
        """Append a leaf whose data is ``data``."""
        self.append_hash(leaf_hash(data))

    def append_hash(self, h: bytes) -> None:
        """Append a leaf by its leaf hash (32 bytes)."""
        if len(h) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(h)}")
        self._levels[0] += h
        self._size += 1
        level, index = 0, self._size - 1
        while index & 1:  # a right child completes its parent
            below = self._levels[level]
            left = bytes(below[(index - 1) * 32 : index * 32])
            parent = node_hash(left, bytes(below[index * 32 : index * 32 + 32]))
            level, index = level + 1, index >> 1
            if len(self._levels) == level:
                self._levels.append(bytearray())
            self._levels[level] += parent

    def leaf(self, index: int) -> bytes:
        """The leaf hash at ``index``."""
        if not 0 <= index < self._size:
            raise ProofError(f"no leaf {index} in a tree of {self._size}")
        return bytes(self._levels[0][index * 32 : index * 32 + 32])

    def _subtree(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) where ``lo`` is aligned to the largest power of two <= hi - lo."""
        n = hi - lo
        if n & (n - 1) == 0:  # complete subtree, stored
            level = n.bit_length() - 1
            i = lo >> level
            return bytes(self._levels[level][i * 32 : i * 32 + 32])
        k = _split(n)
        return node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first ``size`` leaves (default all). O(log n) hashes."""
        size = self._size if size is None else size
        if not 0 <= size <= self._size:
            raise ProofError(f"no tree of size {size}: the log has {self._size} entries")
        return EMPTY_ROOT if size == 0 else self._subtree(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf to root."""
        size = self._size if size is None else size
        if not 0 <= index < size <= self._size:
            raise ProofError(f"no leaf {index} in a tree of size {size} (log has {self._size})")
        path: list[bytes] = []
        lo, hi, m = 0, size, index
        while hi - lo > 1:
            k = _split(hi - lo)
            if m < k:
                path.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                path.append(self._subtree(lo, lo + k))
                lo, m = lo + k, m - k
        path.reverse()
        return path

    def consistency_proof(self, old: int, new: int | None = None) -> list[bytes]:
        """PROOF(old, D[0:new]) of RFC 9162 §2.1.4.1, empty when ``old`` is 0 or ``new``."""
        new = self._size if new is None else new
        if not 0 <= old <= new <= self._size:
            raise ProofError(f"no consistency proof from {old} to {new} (log has {self._size})")
        if old in (0, new):
            return []
        proof: list[bytes] = []
        lo, hi, m, whole = 0, new, old, True
        while m != hi - lo:
            k = _split(hi - lo)
            if m <= k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo, m, whole = lo + k, m - k, False
        if not whole:
            proof.append(self._subtree(lo, hi))
        proof.reverse()
        return proof


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2: does ``proof`` place leaf hash ``leaf`` at ``index`` under ``root``?"""
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    old: int, new: int, proof: Sequence[bytes], old_root: bytes, new_root: bytes
) -> bool:
    """RFC 9162 §2.1.4.2: does ``proof`` show the tree of ``new`` extends that of ``old``?"""
    if not 0 <= old <= new:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof and old_root == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == old_root and sr == new_root and sn == 0


def root_from_frontier(frontier: Sequence[bytes]) -> bytes:
    """The root of a tree given its frontier (see :func:`frontier`)."""
    if not frontier:
        return EMPTY_ROOT
    r = frontier[-1]
    for h in reversed(frontier[:-1]):
        r = node_hash(h, r)
    return r


def frontier(tree: MerkleTree, size: int | None = None) -> list[bytes]:
    """The complete subtrees covering the first ``size`` leaves, largest first.

    They are one per bit set in ``size``; with them a later tree's root can be computed
    from the new leaves alone (:func:`extend_frontier`), without the older ones.
    """
    size = tree.size if size is None else size
    out, lo = [], 0
    for bit in reversed(range(size.bit_length())):
        if size >> bit & 1:
            out.append(tree._subtree(lo, lo + (1 << bit)))
            lo += 1 << bit
    return out


def extend_frontier(frontier: Sequence[bytes], size: int, leaves: Iterable[bytes]) -> list[bytes]:
    """The frontier after appending leaf hashes ``leaves`` to a tree of ``size`` leaves."""
    stack = list(frontier)
    for h in leaves:
        node, index = h, size
        while index & 1:
            node = node_hash(stack.pop(), node)
            index >>= 1
        stack.append(node)
        size += 1
    return stack
