"""One owner per data folder: ``serve`` holds it alone, CLI commands share it.

A server keeps state of its folder in memory (vector indexes, cached keys, rate limits),
so a second server or a CLI command changing the folder behind its back would disagree
with it. ``faceledger serve`` therefore takes an exclusive lock on ``DATA/.lock`` for its
whole life, and every CLI command that opens the folder's service takes a shared one: a
second server, or a CLI command on a served folder (or a server on a folder a command is
working on), is refused at once with :class:`~faceledger.errors.Conflict` (CLI exit 6)
naming the process that holds it. The lock is the kernel's (``flock``): it goes with the
process, so a crashed server leaves nothing to clean up.
"""

from __future__ import annotations

import fcntl
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from faceledger.errors import Conflict

LOCK_FILE = ".lock"


@contextmanager
def own(data: Path, *, exclusive: bool, what: str = "") -> Iterator[None]:
    """Hold ``data``'s lock for the block: alone (``serve``) or shared (CLI commands).

    Raises:
        Conflict: another process holds the lock in a mode that excludes this one.
    """
    data.mkdir(parents=True, exist_ok=True)
    path = data / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = "" if exclusive else _holder(path)  # a shared holder writes no name
            raise Conflict(
                f"the data folder {data} is in use by another faceledger process"
                f"{holder}: {'a server owns a folder alone' if exclusive else 'it is served'}."
                " Stop that process, or use the HTTP API of the server that owns the folder"
                " (or another --data)",
                data=str(data),
            ) from None
        if exclusive:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {what or ' '.join(sys.argv[:2])}\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    if not text:
        return " (a command)"
    pid, _, command = text.partition(" ")
    return f" (pid {pid}: {command})" if command else f" (pid {pid})"
