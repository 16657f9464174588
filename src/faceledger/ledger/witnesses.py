"""Witnesses: places outside the data folder that keep a copy of every signed checkpoint.

A witness holds what the ledger once committed to, so a rolled-back or rewritten
database can be shown not to extend it. Two kinds, chosen by the operator:

- a **file** (``FACELEDGER_WITNESS_FILES``), on another volume or a host mount: one
  checkpoint per line, JSON with the signed note, appended and fsynced;
- an **HTTP endpoint** (``FACELEDGER_WITNESS_URLS``) that receives each signed note as
  ``text/plain`` in a POST and answers 2xx.

Delivery state lives in the ``audit_witnesses`` table: for each witness the id of the
last checkpoint it took. Undelivered checkpoints are retried in order until they are
taken; nothing is dropped. Delivery is at least once: after a partial failure, or two
processes delivering at the same moment, a witness may receive a checkpoint twice
(verification ignores repeats).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import httpx

from faceledger.errors import InvalidArgument
from faceledger.ledger.notes import Checkpoint

HTTP_TIMEOUT = 5.0
"""Seconds an HTTP witness may take per checkpoint before the attempt counts as failed."""


class DeliveryFailed(Exception):
    """A witness did not take a checkpoint (the reason is the message)."""


class Witness(Protocol):
    """Somewhere checkpoints are delivered; ``name`` keys its delivery state."""

    @property
    def name(self) -> str: ...

    def deliver(self, checkpoints: Sequence[Checkpoint]) -> None:
        """Deliver ``checkpoints`` in order; raises :class:`DeliveryFailed` if not all were."""


def witness_line(cp: Checkpoint) -> str:
    """One line of a witness file: the checkpoint's fields and its signed note."""
    return json.dumps(
        {
            "origin": cp.origin,
            "size": cp.size,
            "root_hash": cp.root_hex,
            "timestamp_ns": cp.timestamp_ns,
            "key_id": cp.key_id,
            "note": cp.note,
        },
        sort_keys=True,
    )


@dataclass(frozen=True, slots=True)
class FileWitness:
    """An append-only file of checkpoints, one JSON line each, fsynced after each batch."""

    path: Path

    @property
    def name(self) -> str:
        return f"file:{self.path}"

    def deliver(self, checkpoints: Sequence[Checkpoint]) -> None:
        data = "".join(witness_line(cp) + "\n" for cp in checkpoints).encode()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:  # a missing volume or a full disk: retried later
            raise DeliveryFailed(f"cannot append to {self.path}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class HttpWitness:
    """An HTTP endpoint taking each signed note in a POST (``text/plain``)."""

    url: str
    timeout: float = HTTP_TIMEOUT

    @property
    def name(self) -> str:
        return f"url:{self.url}"

    def deliver(self, checkpoints: Sequence[Checkpoint]) -> None:
        try:
            with httpx.Client(timeout=self.timeout) as client:
                for cp in checkpoints:
                    response = client.post(
                        self.url,
                        content=cp.note.encode(),
                        headers={"Content-Type": "text/plain; charset=utf-8"},
                    )
                    if not response.is_success:
                        raise DeliveryFailed(
                            f"{self.url} answered {response.status_code} to checkpoint {cp.size}"
                        )
        except httpx.HTTPError as exc:  # unreachable, timed out: retried later
            raise DeliveryFailed(f"{self.url}: {exc}") from exc


def configured_witnesses(files: Sequence[Path], urls: Sequence[str]) -> list[Witness]:
    """The witnesses named by the settings ``witness_files`` and ``witness_urls``."""
    witnesses: list[Witness] = [FileWitness(Path(p)) for p in files]
    witnesses += [HttpWitness(u) for u in urls]
    return witnesses


def read_checkpoint_notes(path: Path) -> list[str]:
    """The signed notes in a witness file (JSON lines) or in a file holding one note.

    Raises:
        InvalidArgument: the file cannot be read or holds neither form.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise InvalidArgument(f"cannot read checkpoint file {path}: {exc}") from exc
    if not text.lstrip().startswith("{"):
        return [text]
    notes = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            notes.append(str(json.loads(line)["note"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidArgument(f"{path}:{number}: not a witness line: {exc}") from exc
    return notes
