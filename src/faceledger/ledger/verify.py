"""Offline verification of the ledger: no secret, only the public key and checkpoints.

What is checked, from an export (JSON Lines of ``faceledger audit export``) or a data
folder opened read-only:

1. entries run 1, 2, 3... with no gap, each ``prev_hash`` is the previous ``entry_hash``
   and each ``entry_hash`` is SHA-256 of the entry's canonical bytes: an edited, deleted,
   reordered or inserted entry shows here, unless the whole chain after it was rewritten;
2. every checkpoint given (witness files, single notes, and in a data folder its own
   ``audit_checkpoints``) carries a valid Ed25519 signature of the expected key, and the
   entries extend it: the tree has at least its size and a consistency proof from its
   root to the tree's root verifies (RFC 9162). A rewritten and re-sealed chain, a
   truncated tail, or a database replaced by an older copy fail here;
3. in a data folder, ``ledger.head`` exists and names an entry present with that hash.

A missing checkpoint (or head, in a data folder) while entries exist is a problem, never
"ok": without one nothing vouches that entries were not removed. Entries after the last
checkpoint are counted as ``uncovered``: they are valid but no signature vouches for
them yet (whoever can write the database could have appended them). The HMAC seals are
not checked here: they need the operator's secret.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from faceledger.errors import InvalidArgument
from faceledger.ledger.entries import GENESIS, canonical
from faceledger.ledger.merkle import MerkleTree, leaf_hash, verify_consistency
from faceledger.ledger.notes import (
    Checkpoint,
    CheckpointError,
    PublicKey,
    read_checkpoint,
    verify_note,
)
from faceledger.ledger.witnesses import read_checkpoint_notes

MAX_PROBLEMS = 50


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason the ledger cannot be trusted; ``seq`` where it points at an entry."""

    problem: str
    seq: int | None = None


@dataclass
class Report:
    """The outcome of a verification; ``ok`` only with no problem at all."""

    entries: int = 0
    root_hash: str = ""
    checkpoints: int = 0
    """Signed checkpoints the entries were checked against."""
    latest_checkpoint: int = 0
    """Size of the largest valid checkpoint."""
    uncovered: int = 0
    """Entries after the largest checkpoint: valid, but no signature vouches for them yet."""
    other_keys: int = 0
    """Checkpoints of an earlier signing key, not checked (the operator's check only)."""
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str, seq: int | None = None) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(problem, seq))

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, **asdict(self)}


@dataclass(frozen=True, slots=True)
class Head:
    """What ``ledger.head`` says: the last entry's sequence number and hash."""

    seq: int
    entry_hash: str


def check_chain(entries: Iterable[Mapping[str, Any]], report: Report) -> MerkleTree:
    """Check sequence, links and hashes; the Merkle tree of the entries as they read now.

    Each leaf is made from the hash recomputed from the entry's contents (not the hash
    it carries), for every entry present in the order given, so that a checkpoint check
    afterwards compares what the entries say with what was signed.
    """
    tree = MerkleTree()
    prev, expected = GENESIS, 1
    for values in entries:
        seq = int(values["seq"])
        if seq != expected:
            report.add(f"expected entry {expected} here, found {seq} (gap or reordering)", seq)
        if values["prev_hash"] != prev:
            report.add("chain broken: previous hash does not match", seq)
        digest = hashlib.sha256(canonical(values)).digest()
        if digest.hex() != values["entry_hash"]:
            report.add("entry altered: hash does not match its contents", seq)
        tree.append(digest)  # the leaf is what the entry says, whatever hash it carries
        prev, expected = str(values["entry_hash"]), seq + 1
    report.entries = tree.size
    report.root_hash = tree.root().hex()
    return tree


def check_checkpoints(
    tree: MerkleTree,
    notes: Iterable[tuple[str, str]],
    keys: PublicKey | Sequence[PublicKey],
    report: Report,
    *,
    skip_other_keys: bool = False,
) -> None:
    """Check each ``(source, note)``: signed by one of ``keys``, and extended by ``tree``.

    A checkpoint of a log whose key is not given is a problem, or with ``skip_other_keys``
    (the operator's check after a key change) only counted in ``other_keys``.
    """
    by_origin = {k.origin: k for k in ([keys] if isinstance(keys, PublicKey) else keys)}
    seen: set[tuple[str, int, bytes]] = set()
    for source, note in notes:
        try:
            origin = read_checkpoint(note).origin
            key = by_origin.get(origin)
            if key is None and skip_other_keys:
                report.other_keys += 1
                continue
            if key is None:
                report.add(f"{source}: a checkpoint of log {origin!r}, whose key was not given")
                continue
            cp = verify_note(note, key)
        except CheckpointError as exc:
            report.add(f"{source}: {exc.message}")
            continue
        if (cp.origin, cp.size, cp.root) in seen:
            continue
        seen.add((cp.origin, cp.size, cp.root))
        report.checkpoints += 1
        report.latest_checkpoint = max(report.latest_checkpoint, cp.size)
        report.uncovered = max(0, tree.size - report.latest_checkpoint)
        _check_extends(tree, cp, source, report)
    if tree.size and not report.checkpoints:
        report.add("no signed checkpoint: nothing vouches that entries were not removed")
        report.uncovered = tree.size


def _check_extends(tree: MerkleTree, cp: Checkpoint, source: str, report: Report) -> None:
    when = cp.time.isoformat(timespec="seconds")
    if cp.size > tree.size:
        report.add(
            f"{source}: a checkpoint of {when} signed {cp.size} entries but only "
            f"{tree.size} remain: entries were removed or the database is an older copy",
            tree.size + 1,
        )
        return
    proof = tree.consistency_proof(cp.size, tree.size)
    if not verify_consistency(cp.size, tree.size, proof, cp.root, tree.root()):
        report.add(
            f"{source}: the ledger does not extend the checkpoint of {cp.size} entries "
            f"signed {when}: entries among the first {cp.size} were changed, inserted, "
            "removed or rewritten",
        )


def check_head(tree: MerkleTree, head: Head | None, report: Report) -> None:
    """``ledger.head`` must exist once there are entries, and match the entry it names."""
    if head is None:
        if tree.size:
            report.add("ledger.head is missing (or unreadable) while entries exist")
        return
    if head.seq > tree.size:
        report.add(f"ledger.head names entry {head.seq}: entries after the last were removed")
        return
    try:
        recorded = leaf_hash(bytes.fromhex(head.entry_hash))
    except ValueError:
        recorded = b""
    if head.seq < 1 or tree.leaf(head.seq - 1) != recorded:
        report.add("the entry named by ledger.head differs from the one recorded", head.seq)


# -- sources -------------------------------------------------------------------------------


def read_export(path: Path) -> Iterator[dict[str, Any]]:
    """The entries of a JSON Lines export.

    Raises:
        InvalidArgument: unreadable, or a line is not an entry.
    """
    try:
        with path.open() as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                except ValueError as exc:
                    raise InvalidArgument(f"{path}:{number}: not JSON: {exc}") from exc
                if not isinstance(entry, dict) or "seq" not in entry:
                    raise InvalidArgument(f"{path}:{number}: not a ledger entry")
                yield entry
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc}") from exc


def _connect_read_only(db: Path) -> sqlite3.Connection:
    if not db.is_file():
        raise InvalidArgument(f"no database at {db}")
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True)


def _database_entries(conn: sqlite3.Connection) -> Iterator[dict[str, Any]]:
    for row in conn.execute("SELECT * FROM audit_log ORDER BY seq"):
        values = dict(row)
        values["request"] = json.loads(values["request"])
        values["result"] = json.loads(values["result"])
        yield values


def _database_notes(conn: sqlite3.Connection) -> list[str]:
    try:
        return [r[0] for r in conn.execute("SELECT note FROM audit_checkpoints ORDER BY id")]
    except sqlite3.OperationalError:  # a database from before checkpoints
        return []


def read_head(path: Path) -> Head | None:
    """``ledger.head`` as written (its HMAC seal cannot be checked without the secret)."""
    try:
        data = json.loads(path.read_text())
        return Head(int(data["seq"]), str(data["entry_hash"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def witnessed_notes(files: Sequence[Path]) -> list[tuple[str, str]]:
    """``(source, note)`` for every checkpoint in the given witness or note files."""
    return [(str(f), note) for f in files for note in read_checkpoint_notes(f)]


def verify_export(
    export: Path, *, public: PublicKey | Sequence[PublicKey], checkpoints: Sequence[Path]
) -> Report:
    """Verify a JSON Lines export against witnessed checkpoints (no head file exists)."""
    report = Report()
    tree = check_chain(read_export(export), report)
    check_checkpoints(tree, witnessed_notes(checkpoints), public, report)
    return report


def verify_data_dir(
    data: Path, *, public: PublicKey | Sequence[PublicKey], checkpoints: Sequence[Path]
) -> Report:
    """Verify a data folder read-only: its entries, head, own and witnessed checkpoints.

    Entries are streamed from the database (memory: the Merkle tree, 64 bytes each).

    Raises:
        InvalidArgument: no database there, or its ledger cannot be read.
    """
    from faceledger.store.db import DB_FILE

    report = Report()
    conn = _connect_read_only(data / DB_FILE)
    conn.row_factory = sqlite3.Row
    try:
        stored = _database_notes(conn)
        tree = check_chain(_database_entries(conn), report)
    except sqlite3.Error as exc:
        raise InvalidArgument(f"cannot read the ledger in {data / DB_FILE}: {exc}") from exc
    finally:
        conn.close()
    notes = witnessed_notes(checkpoints) + [("database checkpoint", n) for n in stored]
    check_checkpoints(tree, notes, public, report)
    check_head(tree, read_head(data / "ledger.head"), report)
    return report
