"""The audit ledger: append-only entries, leaves of a Merkle tree under signed checkpoints.

Each entry's hash covers its fields and the previous entry's hash (see
:mod:`faceledger.ledger.entries`), so editing an entry breaks its own hash, and deleting
or reordering entries breaks the chain. Entries are appended inside the transaction of
the change they record (:meth:`Ledger.append`).

The entries are also the leaves of an RFC 9162 Merkle tree (:mod:`~faceledger.ledger.merkle`).
After each commit (:meth:`Ledger.write_head`) the ledger signs a **checkpoint** (tree
size, root, time) with its Ed25519 key when ``checkpoint_every_entries`` entries are
uncovered or the last checkpoint is ``checkpoint_every_seconds`` old, and on demand
(:meth:`Ledger.checkpoint`); a background thread signs the last entries of a quiet
period and retries witnesses. Each checkpoint goes to the configured **witnesses**
(:mod:`~faceledger.ledger.witnesses`). Anyone holding the public key and a witness's
checkpoints can then verify an export or a data folder (:mod:`~faceledger.ledger.verify`)
with no secret: a rewritten chain, a truncated tail or an older copy of the database no
longer extends what was signed.

The HMAC seal of each entry under ``DIR/ledger.key`` and the sealed head file
``DIR/ledger.head`` are kept: they let the operator's own :meth:`Ledger.verify` name
forged entries, and the checkpointer refuses to sign entries whose seal is wrong, but no
outside trust rests on them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, Text, cast, func, insert, or_, select

from faceledger.config import Settings
from faceledger.errors import NotFound, StoreError
from faceledger.ledger.checkpoints import Checkpointer, CheckpointRecord, WitnessStatus
from faceledger.ledger.entries import FIELDS, GENESIS, Actor, Entry, canonical
from faceledger.ledger.notes import SIGNING_KEY_FILE, PublicKey, SigningKey
from faceledger.ledger.proofs import Prover
from faceledger.ledger.schema import audit_log
from faceledger.ledger.verify import Head, Report, check_chain, check_checkpoints, check_head
from faceledger.ledger.witnesses import configured_witnesses
from faceledger.store.db import lock_for_writing, read_transaction

__all__ = ["FIELDS", "GENESIS", "Actor", "Entry", "Ledger", "LedgerHealth", "canonical"]

log = logging.getLogger("faceledger.ledger")
RETRY_SECONDS = 15.0
"""How soon the background thread retries a witness that did not take a checkpoint."""


def _load_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


@dataclass(frozen=True, slots=True)
class LedgerHealth:
    """What ``/healthz`` and ``/metrics`` show of the ledger."""

    entries: int
    checkpoint_size: int
    """Entries covered by the latest signed checkpoint."""
    uncovered: int
    witnesses: list[WitnessStatus]

    @property
    def undelivered(self) -> int:
        """Checkpoints some witness has not taken yet (summed over witnesses)."""
        return sum(w.undelivered for w in self.witnesses)


class Ledger:
    """Appends, checkpoints, proves and verifies audit entries in the shared database.

    ``settings`` supplies the signing key file, the checkpoint schedule and the witnesses;
    without it they come from the environment (``Settings(data=data_dir)``).
    """

    def __init__(self, engine: Engine, data_dir: Path, *, settings: Settings | None = None) -> None:
        settings = settings or Settings(data=data_dir)
        self._engine = engine
        self._key = _load_key(data_dir / "ledger.key")
        self._head = data_dir / "ledger.head"
        self._head_lock = threading.Lock()
        signer = SigningKey.load_or_create(settings.signing_key_file or data_dir / SIGNING_KEY_FILE)
        self.public_key: PublicKey = signer.public
        """The key checkpoints are verified with (the private half never leaves ``signer``)."""
        self.checkpoints = Checkpointer(
            engine,
            signer,
            witnesses=configured_witnesses(settings.witness_files, settings.witness_urls),
            check_entry=self._check_seal,
        )
        self.proofs = Prover(engine, self.checkpoints)
        self._every_entries = settings.checkpoint_every_entries
        self._every_seconds = settings.checkpoint_every_seconds
        self._worker: _Worker | None = None
        self._worker_lock = threading.Lock()
        self._sign_lock = threading.Lock()
        """One signer at a time: a commit's thread and the background thread would
        otherwise both find the same entries due and sign two checkpoints of one size."""
        # A replica joining a shared database: its head (its own lower bound of the chain)
        # starts at the tail it finds, not at its first write.
        joining = engine.dialect.name != "sqlite" and not self._head.exists()
        if joining and (tail := self._tail()) is not None:
            self._advance_head(*tail)
        # A ledger migrated from before checkpoints (or left with a due one) is signed now.
        self._after_commit(self._last_seq(), start_worker=False)

    def close(self) -> None:
        """Stop the background thread and make a last attempt at pending deliveries."""
        with self._worker_lock:
            worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
        self._deliver(skip_failing=True)

    # -- appending -----------------------------------------------------------------------
    def _seal(self, entry_hash: str) -> str:
        return hmac.new(self._key, entry_hash.encode(), hashlib.sha256).hexdigest()

    def _check_seal(self, values: dict[str, Any]) -> str | None:
        if hmac.compare_digest(self._seal(values["entry_hash"]), values["seal"]):
            return None
        return "its seal was not written with this ledger's key"

    def append(self, conn: Connection, actor: Actor, entry: Entry) -> int:
        """Append an entry inside the caller's write transaction; returns its sequence number.

        The database's write lock is taken first (a no-op if the transaction holds it), so
        appends of every process and replica form one chain.
        """
        lock_for_writing(conn)
        last = conn.execute(
            select(audit_log.c.seq, audit_log.c.entry_hash)
            .order_by(audit_log.c.seq.desc())
            .limit(1)
        ).first()
        seq = (last[0] + 1) if last else 1
        values: dict[str, Any] = {
            "seq": seq,
            "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
            "key_id": actor.key_id,
            "role": actor.role,
            "actor": actor.name,
            "operation": entry.operation,
            "collection": entry.collection,
            "purpose": entry.purpose,
            "case_ref": entry.case_ref,
            "image_sha256": entry.image_sha256,
            "request": entry.request or {},
            "result": entry.result or {},
            "prev_hash": last[1] if last else GENESIS,
        }
        # Round-trip through JSON so the hash covers exactly what the database will return.
        values["request"] = json.loads(json.dumps(values["request"], default=str))
        values["result"] = json.loads(json.dumps(values["result"], default=str))
        entry_hash = hashlib.sha256(canonical(values)).hexdigest()
        conn.execute(
            insert(audit_log).values(**values, entry_hash=entry_hash, seal=self._seal(entry_hash))
        )
        return seq

    def write_head(self) -> None:
        """After a commit: record the last entry outside the database, sign a due checkpoint.

        A checkpoint is due when ``checkpoint_every_entries`` entries are uncovered, or some
        are and the last checkpoint is ``checkpoint_every_seconds`` old, or none exists yet.
        Signing costs well under a millisecond plus one small write transaction (see the
        README); a new checkpoint is then appended to the file witnesses and posted to the
        HTTP ones still answering (failing ones are retried by the background thread).
        """
        tail = self._tail()
        if tail is None:
            return
        self._advance_head(*tail)
        self._after_commit(tail[0])

    def _tail(self) -> tuple[int, str] | None:
        """The last entry's sequence number and hash (None: the ledger is empty)."""
        with read_transaction(self._engine) as conn:
            last = conn.execute(
                select(audit_log.c.seq, audit_log.c.entry_hash)
                .order_by(audit_log.c.seq.desc())
                .limit(1)
            ).first()
        return None if last is None else (int(last[0]), str(last[1]))

    def _advance_head(self, seq: int, entry_hash: str) -> None:
        """Record ``seq`` in the sealed head file unless it already holds a later entry."""
        with self._head_lock:
            current = self._read_head()
            if current is None or current.seq < seq:
                tmp = self._head.with_name(
                    f"{self._head.name}.{os.getpid()}.{threading.get_ident()}.tmp"
                )
                seal = self._seal(f"head:{seq}:{entry_hash}")
                tmp.write_text(json.dumps({"seq": seq, "entry_hash": entry_hash, "seal": seal}))
                os.replace(tmp, self._head)

    def _read_head(self) -> Head | None:
        try:
            data = json.loads(self._head.read_text())
            head = Head(int(data["seq"]), str(data["entry_hash"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not hmac.compare_digest(
            str(data.get("seal", "")), self._seal(f"head:{head.seq}:{head.entry_hash}")
        ):
            return None
        return head

    # -- checkpoints ---------------------------------------------------------------------
    def _last_seq(self) -> int:
        with read_transaction(self._engine) as conn:
            return int(conn.scalar(select(func.max(audit_log.c.seq))) or 0)

    def _due(self, seq: int, latest: CheckpointRecord | None) -> bool:
        if seq == 0:
            return False
        if latest is None:
            return True
        uncovered = seq - latest.size
        age = (time.time_ns() - latest.checkpoint.timestamp_ns) / 1e9
        return uncovered > 0 and (
            (self._every_entries > 0 and uncovered >= self._every_entries)
            or (self._every_seconds > 0 and age >= self._every_seconds)
        )

    def _sign_if_due(self, seq: int) -> tuple[CheckpointRecord | None, bool]:
        """The latest checkpoint after signing one if ``seq`` entries make it due."""
        with self._sign_lock:
            latest = self.checkpoints.latest()
            if self._due(seq, latest):
                return self.checkpoints.make(), True
            return latest, False

    def _after_commit(self, seq: int, *, start_worker: bool = True) -> None:
        try:
            if self._sign_if_due(seq)[1]:
                self._deliver(skip_failing=True)
        except StoreError as exc:  # the commit stands; the refusal is logged and shown
            log.error("ledger checkpoint not signed: %s", exc.message)
        if start_worker and (self._every_seconds > 0 or self.checkpoints.witnesses):
            self._ensure_worker()

    def _deliver(self, *, skip_failing: bool) -> None:
        if not self.checkpoints.witnesses:
            return
        try:
            self.checkpoints.deliver_pending(skip_failing=skip_failing)
        except StoreError as exc:
            log.error("checkpoint delivery state could not be updated: %s", exc.message)

    def checkpoint(self) -> CheckpointRecord:
        """Sign a checkpoint of every entry now and deliver it (on demand).

        Raises:
            StoreError: the entries since the last checkpoint fail their checks.
        """
        with self._sign_lock:
            record = self.checkpoints.make()
        self._deliver(skip_failing=True)
        return record

    def latest_checkpoint(self) -> CheckpointRecord:
        """The most recent signed checkpoint.

        Raises:
            NotFound: none was signed yet (the ledger is empty).
        """
        latest = self.checkpoints.latest()
        if latest is None:
            raise NotFound("no checkpoint has been signed yet")
        return latest

    def witness_status(self) -> list[WitnessStatus]:
        """Each configured witness: checkpoints it has not taken yet, failures in a row."""
        return self.checkpoints.status()

    def health(self) -> LedgerHealth:
        """Entries, how many no checkpoint covers yet, and each witness's backlog."""
        latest = self.checkpoints.latest()
        entries = self._last_seq()
        size = latest.size if latest else 0
        return LedgerHealth(entries, size, max(0, entries - size), self.witness_status())

    def _tick(self) -> float:
        """One round of the background thread; seconds until the next one."""
        latest = self.checkpoints.latest()
        try:
            latest = self._sign_if_due(self._last_seq())[0]
        except StoreError as exc:
            log.error("ledger checkpoint not signed: %s", exc.message)
        self._deliver(skip_failing=False)
        wait = self._every_seconds if self._every_seconds > 0 else 60.0
        if latest is not None and self._every_seconds > 0:
            age = (time.time_ns() - latest.checkpoint.timestamp_ns) / 1e9
            wait = max(0.5, self._every_seconds - age)
        if any(s.undelivered for s in self.checkpoints.status()):
            wait = min(wait, RETRY_SECONDS)
        return wait

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None:
                self._worker = _Worker(self)
                self._worker.start()

    # -- reading -------------------------------------------------------------------------
    def entries(
        self, *, after: int = 0, limit: int | None = None, **filters: str | None
    ) -> list[dict[str, Any]]:
        """Entries in order, optionally filtered by operation, collection, key_id or purpose."""
        query = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq)
        for name, value in filters.items():
            if value is not None:
                query = query.where(audit_log.c[name] == value)
        if limit is not None:
            query = query.limit(limit)
        with read_transaction(self._engine) as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def entries_mentioning(self, token: str) -> list[dict[str, Any]]:
        """Entries whose request or result holds ``token`` (a person's pseudonym), in order.

        Costs one scan of the ledger (the JSON columns are searched as text, then each hit
        is checked again here, so a token is matched whole)."""
        if not token:
            return []
        escaped = token.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = (
            select(audit_log)
            .where(
                or_(
                    cast(audit_log.c.request, Text).like(pattern, escape="\\"),
                    cast(audit_log.c.result, Text).like(pattern, escape="\\"),
                )
            )
            .order_by(audit_log.c.seq)
        )
        with read_transaction(self._engine) as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        return [r for r in rows if _mentions(r["request"], token) or _mentions(r["result"], token)]

    def iter_all(self, batch: int = 5000) -> Iterator[RowMapping]:
        """Every entry in sequence order, read in batches."""
        after = 0
        while True:
            with read_transaction(self._engine) as conn:
                rows = conn.execute(
                    select(audit_log)
                    .where(audit_log.c.seq > after)
                    .order_by(audit_log.c.seq)
                    .limit(batch)
                ).all()
            if not rows:
                return
            for r in rows:
                yield r._mapping
            after = int(rows[-1][0])

    def verify(self) -> dict[str, Any]:
        """The operator's full check: offline checks (chain, stored checkpoints, head) + seals.

        Returns the :class:`~faceledger.ledger.verify.Report` as a dict (``ok``,
        ``entries``, ``problems``...).
        """
        report = Report()

        def sealed() -> Iterator[dict[str, Any]]:
            for row in self.iter_all():
                values = dict(row)
                if self._check_seal(values) is not None:
                    report.add("seal invalid: not written with this ledger's key", values["seq"])
                yield values

        tree = check_chain(sealed(), report)
        notes: list[tuple[str, str]] = []
        after = 0
        while page := self.checkpoints.since(after=after, limit=1000):
            notes += [(f"checkpoint {r.id}", r.checkpoint.note) for r in page]
            after = page[-1].id
        check_checkpoints(tree, notes, self.public_key, report, skip_other_keys=True)
        check_head(tree, self._read_head(), report)
        return report.to_dict()

    def count(self) -> int:
        with read_transaction(self._engine) as conn:
            return int(conn.scalar(select(func.count()).select_from(audit_log)) or 0)


def _mentions(value: Any, token: str) -> bool:
    """Does a JSON value hold ``token`` as a whole string (or in a list or mapping)?"""
    if isinstance(value, str):
        return value == token
    if isinstance(value, dict):
        return any(_mentions(k, token) or _mentions(v, token) for k, v in value.items())
    if isinstance(value, list):
        return any(_mentions(v, token) for v in value)
    return False


class _Worker:
    """Signs the checkpoint of a quiet period and retries witnesses, on a daemon thread.

    It holds its ledger weakly: a ledger dropped without :meth:`Ledger.close` ends it.
    """

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = weakref.ref(ledger)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faceledger-ledger", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        wait = 1.0
        while not self._stop.wait(wait):
            ledger = self._ledger()
            if ledger is None:
                return
            try:
                wait = ledger._tick()
            except Exception:  # keep checkpointing; the failure is logged
                log.exception("ledger background round failed")
                wait = RETRY_SECONDS
            del ledger
