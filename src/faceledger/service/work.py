"""The audited unit of work: a change and its ledger entry commit together, or neither does.

Every operation of the service, a write or a search, runs as::

    with core.audited(actor, "person.create", collection=c, request={...}) as work:
        store.create_person(..., tx=work.tx)     # joins the one write transaction
        work.result["faces"] = 3                 # what the ledger records as the outcome

On leaving the block without an error the ledger entry is appended inside the same
transaction, the transaction commits, the vector indexes take the committed change,
and the ledger's head and checkpoints are brought up to date. An error anywhere rolls
everything back: there is no change without its entry and no entry without its change.
A search opens the transaction only at the end, to append its entry, so searches do not
hold the database's write lock while they run.

If the request that started the work has been abandoned (its client disconnected or its
deadline passed, see :func:`abandon_on`), the work is rolled back instead of committed
and :class:`~faceledger.errors.RequestAbandoned` is raised: a caller that was told "timed
out" can rely on nothing having changed.

This module is the only place that constructs ledger :class:`~faceledger.ledger.audit.Entry`
values (a test checks it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from faceledger.errors import RequestAbandoned
from faceledger.ledger.audit import Actor, Entry, Ledger
from faceledger.store import Store
from faceledger.store.repository import Tx

_abandoned: ContextVar[threading.Event | None] = ContextVar("faceledger_abandoned", default=None)


@contextmanager
def abandon_on(event: threading.Event) -> Iterator[None]:
    """Work started in this context is rolled back if ``event`` is set before it commits."""
    token = _abandoned.set(event)
    try:
        yield
    finally:
        _abandoned.reset(token)


def current_abandon_event() -> threading.Event | None:
    """The abandon event of the current request, if any (to hand on to worker threads)."""
    return _abandoned.get()


@dataclass
class Work:
    """One audited operation in progress: its transaction (opened on first use) and record."""

    _store: Store
    _stack: ExitStack
    request: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    image_sha256: str | None = None
    _tx: Tx | None = None

    @property
    def tx(self) -> Tx:
        """The write transaction every store change of this operation joins."""
        if self._tx is None:
            self._tx = self._stack.enter_context(self._store.transaction())
        return self._tx


@dataclass(frozen=True, slots=True)
class Auditor:
    """Runs operations as audited units of work on one store and ledger."""

    store: Store
    ledger: Ledger

    @contextmanager
    def audited(
        self,
        actor: Actor,
        operation: str,
        *,
        collection: str | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        image_sha256: str | None = None,
        request: dict[str, Any] | None = None,
    ) -> Iterator[Work]:
        """Run the block as one audited unit of work (see the module docstring)."""
        abandoned = _abandoned.get()
        with ExitStack() as stack:
            work = Work(self.store, stack, dict(request or {}), image_sha256=image_sha256)
            yield work
            entry = Entry(
                operation,
                collection=collection,
                purpose=purpose,
                case_ref=case_ref,
                image_sha256=work.image_sha256,
                request=work.request,
                result=work.result,
            )
            self.ledger.append(work.tx.conn, actor, entry)
            if abandoned is not None and abandoned.is_set():
                raise RequestAbandoned(
                    f"{operation} was abandoned by its caller before it committed: nothing changed"
                )
        self.ledger.write_head()
