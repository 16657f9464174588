"""Signing checkpoints of the ledger into ``audit_checkpoints`` and delivering them to witnesses.

A checkpoint signs the Merkle root of the first ``size`` entries (format in
:mod:`faceledger.ledger.notes`). Each stored checkpoint keeps its *frontier*, the
complete subtree hashes covering its entries, so the next root is computed from the
entries added since: signing costs O(new entries + log n), whatever the ledger's size.
Before signing, the new entries are checked (sequence, chain link, hash, and the
operator's HMAC seal through ``check_entry``) and the previous checkpoint's frontier
against its own signature: the key never vouches for entries it has not checked.

Delivery to witnesses is tracked per witness in ``audit_witnesses`` (the id of the last
checkpoint it took); undelivered checkpoints are retried in order, never dropped.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from faceledger.errors import NotFound, StoreError
from faceledger.ledger.entries import GENESIS, canonical
from faceledger.ledger.merkle import extend_frontier, leaf_hash, root_from_frontier
from faceledger.ledger.notes import (
    Checkpoint,
    CheckpointError,
    SigningKey,
    read_checkpoint,
    verify_note,
)
from faceledger.ledger.schema import audit_checkpoints, audit_log, audit_witnesses
from faceledger.ledger.witnesses import DeliveryFailed, Witness
from faceledger.store.db import greatest, read_transaction, write_transaction

log = logging.getLogger("faceledger.ledger")

EntryCheck = Callable[[dict[str, Any]], str | None]
"""Returns why an entry must not be signed (for example a wrong HMAC seal), or None."""


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    """A stored checkpoint: its row id, when it was made, and the signed checkpoint."""

    id: int
    ts: str
    checkpoint: Checkpoint

    @property
    def size(self) -> int:
        return self.checkpoint.size


@dataclass(frozen=True, slots=True)
class WitnessStatus:
    """How far a witness is: checkpoints not yet taken and failed attempts in a row."""

    witness: str
    delivered_id: int
    undelivered: int
    failures: int
    last_error: str | None
    last_attempt: str | None


def _record(row: Any) -> CheckpointRecord:
    return CheckpointRecord(int(row.id), str(row.ts), read_checkpoint(str(row.note)))


class Checkpointer:
    """Signs checkpoints of the ledger in one database and delivers them to witnesses."""

    def __init__(
        self,
        engine: Engine,
        signer: SigningKey,
        *,
        witnesses: Sequence[Witness] = (),
        check_entry: EntryCheck | None = None,
    ) -> None:
        self._engine = engine
        self._signer = signer
        self.witnesses = list(witnesses)
        self._check_entry = check_entry
        self._sign_lock = threading.Lock()
        self._deliver_lock = threading.Lock()

    # -- reading -------------------------------------------------------------------------
    def latest(self) -> CheckpointRecord | None:
        with read_transaction(self._engine) as conn:
            row = conn.execute(
                select(audit_checkpoints).order_by(audit_checkpoints.c.id.desc()).limit(1)
            ).first()
        return None if row is None else _record(row)

    def since(self, *, after: int = 0, limit: int = 100) -> list[CheckpointRecord]:
        """Checkpoints with id after ``after``, oldest first."""
        with read_transaction(self._engine) as conn:
            rows = conn.execute(
                select(audit_checkpoints)
                .where(audit_checkpoints.c.id > after)
                .order_by(audit_checkpoints.c.id)
                .limit(limit)
            ).all()
        return [_record(r) for r in rows]

    def at_size(self, size: int) -> CheckpointRecord:
        """The latest checkpoint of exactly ``size`` entries.

        Raises:
            NotFound: no checkpoint was signed at that size.
        """
        with read_transaction(self._engine) as conn:
            row = conn.execute(
                select(audit_checkpoints)
                .where(audit_checkpoints.c.tree_size == size)
                .order_by(audit_checkpoints.c.id.desc())
                .limit(1)
            ).first()
        if row is None:
            raise NotFound(f"no checkpoint was signed at tree size {size}")
        return _record(row)

    # -- signing -------------------------------------------------------------------------
    def make(self) -> CheckpointRecord:
        """Sign a checkpoint of every entry now; O(entries since the last one + log n).

        Raises:
            StoreError: an entry since the last checkpoint fails its checks, or the stored
                last checkpoint does not match its own signature: nothing is signed.
        """
        with self._sign_lock:
            # Checked and hashed in a read snapshot: writers are not held up meanwhile.
            with read_transaction(self._engine) as conn:
                size, frontier, prev = self._base(conn)
                leaves: list[bytes] = []
                rows = conn.execute(
                    select(audit_log).where(audit_log.c.seq > size).order_by(audit_log.c.seq)
                )
                for row in rows:
                    values = dict(row._mapping)
                    self._refuse_unless_valid(values, size + len(leaves) + 1, prev)
                    leaves.append(leaf_hash(bytes.fromhex(values["entry_hash"])))
                    prev = values["entry_hash"]
            frontier = extend_frontier(frontier, size, leaves)
            size += len(leaves)
            root = root_from_frontier(frontier)
            cp = self._signer.sign_checkpoint(size, root, timestamp_ns=time.time_ns())
            ts = cp.time.isoformat(timespec="microseconds")
            with write_transaction(self._engine) as conn:
                newest = conn.execute(
                    select(audit_checkpoints)
                    .where(audit_checkpoints.c.key_id == cp.key_id)
                    .order_by(audit_checkpoints.c.tree_size.desc(), audit_checkpoints.c.id.desc())
                    .limit(1)
                ).first()
                if newest is not None and newest.tree_size > size:
                    return _record(newest)  # another process signed a larger tree meanwhile
                conn.execute(
                    insert(audit_checkpoints).values(
                        tree_size=size,
                        root_hash=root.hex(),
                        ts=ts,
                        key_id=cp.key_id,
                        note=cp.note,
                        frontier="".join(h.hex() for h in frontier),
                    )
                )
                row_id = conn.scalar(select(func.max(audit_checkpoints.c.id)))
        return CheckpointRecord(int(row_id or 0), ts, cp)

    def _base(self, conn: Connection) -> tuple[int, list[bytes], str]:
        """Size, frontier and last entry hash of the latest checkpoint, checked."""
        row = conn.execute(
            select(audit_checkpoints).order_by(audit_checkpoints.c.id.desc()).limit(1)
        ).first()
        if row is None:
            return 0, [], GENESIS
        if read_checkpoint(str(row.note)).origin != self._signer.public.origin:
            # A new signing key starts a new log over the same entries, checked from the first.
            log.warning("the last checkpoint was signed by another key: signing all entries anew")
            return 0, [], GENESIS
        try:
            cp = verify_note(str(row.note), self._signer.public)
        except CheckpointError as exc:
            raise StoreError(f"the last stored checkpoint is not ours: {exc.message}") from exc
        text = str(row.frontier)
        frontier = [bytes.fromhex(text[i : i + 64]) for i in range(0, len(text), 64)]
        if cp.size != row.tree_size or root_from_frontier(frontier) != cp.root:
            raise StoreError("the last stored checkpoint's frontier does not match its root")
        if cp.size == 0:
            return 0, [], GENESIS
        prev = conn.scalar(select(audit_log.c.entry_hash).where(audit_log.c.seq == cp.size))
        # An odd size's frontier ends with the last leaf itself: check it where it is free.
        if prev is None or (cp.size & 1 and leaf_hash(bytes.fromhex(prev)) != frontier[-1]):
            raise StoreError(f"entry {cp.size}, the last one signed, is missing or was changed")
        return cp.size, frontier, str(prev)

    def _refuse_unless_valid(self, values: dict[str, Any], seq: int, prev: str) -> None:
        reason = None
        if values["seq"] != seq:
            reason = f"entry {seq} is missing"
        elif values["prev_hash"] != prev:
            reason = "its previous hash does not match"
        elif hashlib.sha256(canonical(values)).hexdigest() != values["entry_hash"]:
            reason = "its hash does not match its contents"
        elif self._check_entry is not None:
            reason = self._check_entry(values)
        if reason is not None:
            raise StoreError(f"refusing to sign ledger entry {values['seq']}: {reason}")

    # -- witnesses -----------------------------------------------------------------------
    def deliver_pending(self, *, skip_failing: bool = False) -> int:
        """Deliver every checkpoint each witness has not taken yet; the number still pending.

        ``skip_failing`` leaves witnesses whose last attempt failed to the retry loop, so
        that a dead witness does not slow the caller down on every checkpoint.
        """
        with self._deliver_lock:
            for witness in self.witnesses:
                state = self._state(witness.name)
                if skip_failing and state.failures:
                    continue
                pending = self.since(after=state.delivered_id, limit=1000)
                if pending:
                    self._deliver(witness, pending)
        return sum(s.undelivered for s in self.status())

    def _deliver(self, witness: Witness, pending: list[CheckpointRecord]) -> None:
        now = datetime.now(UTC).isoformat(timespec="seconds")
        row = audit_witnesses.c
        try:
            witness.deliver([r.checkpoint for r in pending])
        except DeliveryFailed as exc:
            log.warning("checkpoint delivery to %s failed (will retry): %s", witness.name, exc)
            values: dict[str, Any] = {
                "failures": row.failures + 1,
                "last_error": str(exc),
                "last_attempt": now,
            }
        else:
            values = {
                "delivered_id": greatest(row.delivered_id, pending[-1].id),
                "failures": 0,
                "last_error": None,
                "last_attempt": now,
            }
        with write_transaction(self._engine) as conn:
            conn.execute(update(audit_witnesses).where(row.witness == witness.name).values(values))

    def _state(self, name: str) -> WitnessStatus:
        with write_transaction(self._engine) as conn:
            row = conn.execute(
                select(audit_witnesses).where(audit_witnesses.c.witness == name)
            ).first()
            if row is None:
                conn.execute(insert(audit_witnesses).values(witness=name, delivered_id=0))
                return WitnessStatus(name, 0, 0, 0, None, None)
        return WitnessStatus(name, int(row.delivered_id), 0, int(row.failures), None, None)

    def status(self) -> list[WitnessStatus]:
        """Every configured witness: how many checkpoints it has not taken, failures in a row."""
        out = []
        with read_transaction(self._engine) as conn:
            for witness in self.witnesses:
                row = conn.execute(
                    select(audit_witnesses).where(audit_witnesses.c.witness == witness.name)
                ).first()
                delivered = int(row.delivered_id) if row is not None else 0
                undelivered = conn.scalar(
                    select(func.count())
                    .select_from(audit_checkpoints)
                    .where(audit_checkpoints.c.id > delivered)
                )
                out.append(
                    WitnessStatus(
                        witness.name,
                        delivered,
                        int(undelivered or 0),
                        int(row.failures) if row is not None else 0,
                        row.last_error if row is not None else None,
                        row.last_attempt if row is not None else None,
                    )
                )
        return out
