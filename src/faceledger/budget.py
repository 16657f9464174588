"""A process-wide budget for decoding and inference: so many images at once, a bounded queue.

Every image an :class:`~faceledger.engine.Engine` decodes is decoded, located and embedded
inside one *slot* of its :class:`Gate`. A decoded image of the largest accepted size
(``MAX_IMAGE_PIXELS`` x 3 bytes, plus the detector's and aligner's working copies) is
the unit of memory a slot stands for, so the slots bound the memory that images can hold
at once however many requests arrive. A request finding every slot taken waits in a
queue of bounded length; when the queue is full too it is refused at once with
:class:`~faceledger.errors.Overloaded` (HTTP 503 with ``Retry-After``) rather than piling
up threads and memory. Only work started under :func:`bounded` (the HTTP app's requests)
is refused so; the library, the CLI and video jobs wait for their turn. A slot is held by
the thread that does the work, so it is freed only when the work ends, even if the HTTP
request that asked for it has timed out.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from faceledger.errors import Overloaded

RETRY_AFTER_SECONDS = 1
_bounded: ContextVar[bool] = ContextVar("faceledger_bounded_queue", default=False)


@contextmanager
def bounded() -> Iterator[None]:
    """Work started in this context is refused when the gate's queue is full."""
    token = _bounded.set(True)
    try:
        yield
    finally:
        _bounded.reset(token)


class Gate:
    """At most ``slots`` holders at once and at most ``queue`` waiting; reentrant per thread.

    ``slots=0`` means one per CPU core; ``queue`` < 0 means an unbounded queue. The queue
    bound and ``wait_seconds`` apply only to work started under :func:`bounded`.
    """

    def __init__(self, slots: int = 0, *, queue: int = -1, wait_seconds: float = 30.0) -> None:
        self.slots = slots if slots > 0 else (os.cpu_count() or 1)
        self.queue = queue
        self.wait_seconds = wait_seconds
        self._sem = threading.Semaphore(self.slots)
        self._lock = threading.Lock()
        self._waiting = 0
        self._held = 0
        self._local = threading.local()

    @property
    def waiting(self) -> int:
        """Requests waiting for a slot now."""
        return self._waiting

    @property
    def busy(self) -> int:
        """Slots held now."""
        return self._held

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one slot for the block (a nested call on the same thread reuses it).

        Raises:
            Overloaded: every slot is taken and the queue is full, or no slot came free
                within ``wait_seconds``.
        """
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield
            finally:
                self._local.depth = depth
            return
        limited = _bounded.get()
        if not self._sem.acquire(blocking=False):
            with self._lock:
                if limited and 0 <= self.queue <= self._waiting:
                    raise Overloaded(
                        f"the server is busy: {self.slots} images in work and "
                        f"{self._waiting} waiting; try again shortly",
                        retry_after=RETRY_AFTER_SECONDS,
                    )
                self._waiting += 1
            try:
                acquired = self._sem.acquire(timeout=self.wait_seconds if limited else None)
            finally:
                with self._lock:
                    self._waiting -= 1
            if not acquired:
                raise Overloaded(
                    f"the server is busy: no image slot came free in {self.wait_seconds:g} s",
                    retry_after=RETRY_AFTER_SECONDS,
                )
        with self._lock:
            self._held += 1
        self._local.depth = 1
        try:
            yield
        finally:
            self._local.depth = 0
            with self._lock:
                self._held -= 1
            self._sem.release()
