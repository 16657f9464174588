"""The audit ledger: append-only, hash-chained entries sealed with an HMAC key.

Each entry's hash covers its fields and the previous entry's hash, so editing an entry
breaks its own hash, and deleting or reordering entries breaks the chain. Each hash is
sealed with HMAC-SHA256 under a key kept in a file outside the database
(``DIR/ledger.key``, mode 0600), so whoever can write the database but not read the key
cannot forge a consistent chain. A head file (``DIR/ledger.head``) records the last
sealed entry so that truncating the tail is detected too. Entries are appended inside
the transaction of the change they record.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, RowMapping, func, insert, select

from faceledger.ledger.schema import audit_log
from faceledger.store.db import read_transaction

GENESIS = "0" * 64
FIELDS = (
    "seq",
    "ts",
    "key_id",
    "role",
    "actor",
    "operation",
    "collection",
    "purpose",
    "case_ref",
    "image_sha256",
    "request",
    "result",
    "prev_hash",
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: an API key (id and role) or a local user of the CLI or library."""

    key_id: str | None
    role: str | None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """What an operation records besides who did it."""

    operation: str
    collection: str | None = None
    purpose: str | None = None
    case_ref: str | None = None
    image_sha256: str | None = None
    request: dict[str, Any] | None = None
    result: dict[str, Any] | None = None


def canonical(values: dict[str, Any]) -> bytes:
    """The bytes hashed for an entry: its fields as sorted, compact JSON."""
    return json.dumps(
        {k: values[k] for k in FIELDS}, sort_keys=True, separators=(",", ":"), default=str
    ).encode()


def _load_key(path: Path) -> bytes:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return bytes.fromhex(path.read_text().strip())


class Ledger:
    """Appends and verifies audit entries in the shared database."""

    def __init__(self, engine: Engine, data_dir: Path) -> None:
        self._engine = engine
        self._key = _load_key(data_dir / "ledger.key")
        self._head = data_dir / "ledger.head"
        self._head_lock = threading.Lock()
        self._head_lock = threading.Lock()

    def _seal(self, entry_hash: str) -> str:
        return hmac.new(self._key, entry_hash.encode(), hashlib.sha256).hexdigest()

    def append(self, conn: Connection, actor: Actor, entry: Entry) -> int:
        """Append an entry inside the caller's write transaction; returns its sequence number."""
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
        """Record the last sealed entry outside the database (after a commit)."""
        with read_transaction(self._engine) as conn:
            last = conn.execute(
                select(audit_log.c.seq, audit_log.c.entry_hash)
                .order_by(audit_log.c.seq.desc())
                .limit(1)
            ).first()
        if last is None:
            return
        seq, entry_hash = int(last[0]), str(last[1])
        with self._head_lock:
            current = self._read_head()
            if current is not None and current[0] >= seq:
                return
            tmp = self._head.with_name(
                f"{self._head.name}.{os.getpid()}.{threading.get_ident()}.tmp"
            )
            seal = self._seal(f"head:{seq}:{entry_hash}")
            tmp.write_text(json.dumps({"seq": seq, "entry_hash": entry_hash, "seal": seal}))
            os.replace(tmp, self._head)

    def _read_head(self) -> tuple[int, str] | None:
        try:
            data = json.loads(self._head.read_text())
        except (OSError, ValueError):
            return None
        if not hmac.compare_digest(
            data.get("seal", ""), self._seal(f"head:{data['seq']}:{data['entry_hash']}")
        ):
            return None
        return int(data["seq"]), str(data["entry_hash"])

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
        """Check every entry's hash, seal and chain link, and the head; report the first break."""
        prev, expected_seq, count = GENESIS, 1, 0
        problems: list[dict[str, Any]] = []
        for row in self.iter_all():
            values = dict(row)
            seq = int(values["seq"])
            if seq != expected_seq:
                problems.append(
                    {"seq": seq, "problem": f"entry {expected_seq} is missing (sequence gap)"}
                )
            if values["prev_hash"] != prev:
                problems.append(
                    {"seq": seq, "problem": "chain broken: previous hash does not match"}
                )
            digest = hashlib.sha256(canonical(values)).hexdigest()
            if digest != values["entry_hash"]:
                problems.append(
                    {"seq": seq, "problem": "entry altered: hash does not match its contents"}
                )
            if not hmac.compare_digest(self._seal(values["entry_hash"]), values["seal"]):
                problems.append(
                    {"seq": seq, "problem": "seal invalid: not written with this ledger's key"}
                )
            prev, expected_seq, count = values["entry_hash"], seq + 1, count + 1
            if len(problems) >= 20:
                break
        head = self._read_head()
        if head is not None and head[0] >= expected_seq:
            problems.append(
                {"seq": head[0], "problem": "entries after the last one present were removed"}
            )
        elif head is not None:
            with read_transaction(self._engine) as conn:
                at = conn.scalar(select(audit_log.c.entry_hash).where(audit_log.c.seq == head[0]))
            if at is not None and at != head[1]:
                problems.append({"seq": head[0], "problem": "entry differs from the recorded head"})
        return {"ok": not problems, "entries": count, "problems": problems}

    def count(self) -> int:
        with read_transaction(self._engine) as conn:
            return int(conn.scalar(select(func.count()).select_from(audit_log)) or 0)
