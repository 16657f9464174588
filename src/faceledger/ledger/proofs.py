"""Inclusion and consistency proofs of the ledger against its signed checkpoints.

The Merkle tree of the stored entries is built in memory on the first proof (about 2n
hashes and one read of the ``entry_hash`` column: a few seconds per million entries)
and extended with new entries on each later call; it then holds 64 bytes per entry and
answers a proof in O(log² n) hashes (see :class:`~faceledger.ledger.merkle.MerkleTree`).
The proofs are computed from what the database holds now: if that differs from what a
checkpoint signed, the proof does not verify against the checkpoint, which is the point.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from faceledger.errors import InvalidArgument, StoreError
from faceledger.ledger.checkpoints import Checkpointer, CheckpointRecord
from faceledger.ledger.merkle import MerkleTree, leaf_hash
from faceledger.ledger.schema import audit_log
from faceledger.store.db import read_transaction

_BATCH = 50_000


@dataclass(frozen=True, slots=True)
class InclusionProof:
    """Entry ``seq`` is leaf ``seq - 1`` of the tree that ``checkpoint`` signed."""

    seq: int
    entry: dict[str, Any]
    """The entry as stored now: recompute its hash and leaf to check it."""
    entry_hash: str
    leaf_hash: str
    tree_size: int
    root_hash: str
    path: list[str]
    """Sibling hashes, hex, leaf to root (RFC 9162 §2.1.3)."""
    checkpoint: CheckpointRecord


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    """The tree signed at ``new`` extends the tree signed at ``old`` (RFC 9162 §2.1.4)."""

    old_size: int
    new_size: int
    old_root: str
    new_root: str
    path: list[str]
    old_checkpoint: CheckpointRecord
    new_checkpoint: CheckpointRecord


class Prover:
    """Builds proofs from the stored entries, against checkpoints of one :class:`Checkpointer`."""

    def __init__(self, engine: Engine, checkpoints: Checkpointer) -> None:
        self._engine = engine
        self._checkpoints = checkpoints
        self._tree = MerkleTree()
        self._lock = threading.Lock()

    def _synced(self, size: int) -> MerkleTree:
        """The cached tree, extended with stored entries until it has at least ``size``."""
        tree = self._tree
        while tree.size < size:
            with read_transaction(self._engine) as conn:
                rows = conn.execute(
                    select(audit_log.c.seq, audit_log.c.entry_hash)
                    .where(audit_log.c.seq > tree.size)
                    .order_by(audit_log.c.seq)
                    .limit(_BATCH)
                ).all()
            if not rows:
                raise StoreError(f"the ledger holds {tree.size} entries, fewer than {size}")
            for seq, entry_hash in rows:
                if seq != tree.size + 1:
                    raise StoreError(f"ledger entry {tree.size + 1} is missing")
                tree.append_hash(leaf_hash(bytes.fromhex(entry_hash)))
        return tree

    def _checkpoint(self, size: int | None, *, covering: int = 0) -> CheckpointRecord:
        if size is not None:
            return self._checkpoints.at_size(size)
        latest = self._checkpoints.latest()
        if latest is None or latest.size < covering:
            raise InvalidArgument(
                f"no checkpoint covers entry {covering} yet: ask for one (POST checkpoints)"
            )
        return latest

    def inclusion(self, seq: int, *, size: int | None = None) -> InclusionProof:
        """Proof that entry ``seq`` is in the checkpoint of ``size`` (default the latest).

        Raises:
            NotFound: no checkpoint at ``size``.
            InvalidArgument: ``seq`` is not covered by that checkpoint.
        """
        cp = self._checkpoint(size, covering=seq)
        if not 1 <= seq <= cp.size:
            raise InvalidArgument(f"entry {seq} is not among the {cp.size} of that checkpoint")
        with self._lock:
            tree = self._synced(cp.size)
            path = tree.inclusion_proof(seq - 1, cp.size)
            leaf = tree.leaf(seq - 1)
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(audit_log).where(audit_log.c.seq == seq)).first()
        if row is None:
            raise StoreError(f"ledger entry {seq} is missing")
        entry = dict(row._mapping)
        return InclusionProof(
            seq,
            entry,
            str(entry["entry_hash"]),
            leaf.hex(),
            cp.size,
            cp.checkpoint.root_hex,
            [h.hex() for h in path],
            cp,
        )

    def consistency(self, old: int, new: int | None = None) -> ConsistencyProof:
        """Proof that the checkpoint of ``new`` (default the latest) extends that of ``old``.

        Raises:
            NotFound: no checkpoint at one of the sizes.
            InvalidArgument: ``old`` is larger than ``new``.
        """
        new_cp = self._checkpoint(new)
        old_cp = self._checkpoints.at_size(old)
        if old > new_cp.size:
            raise InvalidArgument(f"from ({old}) must not be larger than to ({new_cp.size})")
        with self._lock:
            tree = self._synced(new_cp.size)
            path = tree.consistency_proof(old, new_cp.size)
        return ConsistencyProof(
            old,
            new_cp.size,
            old_cp.checkpoint.root_hex,
            new_cp.checkpoint.root_hex,
            [h.hex() for h in path],
            old_cp,
            new_cp,
        )
