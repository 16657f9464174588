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

If the request that started the work has been abandoned (its deadline passed, see
:class:`RequestGuard`), the work is rolled back instead of committed and
:class:`~faceledger.errors.RequestAbandoned` is raised: a caller that was told "timed
out" can rely on nothing having changed, and a request that began to commit is answered.

This module is the only place that constructs ledger :class:`~faceledger.ledger.audit.Entry`
values (a test checks it).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from faceledger.errors import RequestAbandoned
from faceledger.ledger.audit import Actor, Entry, Ledger
from faceledger.store import Store
from faceledger.store.repository import Tx


class RequestGuard:
    """Decides, once, between a request's timeout and its commit.

    The front that may give up on a request (a timeout) calls :meth:`try_abandon`; the
    unit of work calls :meth:`begin_commit` just before committing. Whichever comes first
    wins: an abandoned request commits nothing, and a request that has begun to commit
    is not abandoned (its answer is awaited and sent), so "timed out" always means
    "nothing changed".
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._abandoned = False
        self._committing = False

    def try_abandon(self) -> bool:
        """Give up on the request; False if it has already begun to commit."""
        with self._lock:
            if self._committing:
                return False
            self._abandoned = True
            return True

    def begin_commit(self) -> bool:
        """Claim the right to commit; False if the request was abandoned."""
        with self._lock:
            if self._abandoned:
                return False
            self._committing = True
            return True


_guard: ContextVar[RequestGuard | None] = ContextVar("faceledger_request_guard", default=None)


@contextmanager
def abandon_on(guard: RequestGuard) -> Iterator[None]:
    """Work started in this context commits only if ``guard`` was not abandoned first."""
    token = _guard.set(guard)
    try:
        yield
    finally:
        _guard.reset(token)


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

    def pseudonyms(self, collection: str, names: Iterable[str]) -> dict[str, str]:
        """How the ledger names these persons (looked up in this work's transaction).

        The ledger never records a person's name, only this random id, which erasing the
        person unlinks from them.
        """
        return self._store.pseudonyms(collection, list(names), tx=self.tx)

    def pseudonym(self, collection: str, name: str) -> str:
        return self.pseudonyms(collection, [name]).get(name, "p_unknown")


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
        guard = _guard.get()
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
            if guard is not None and not guard.begin_commit():
                raise RequestAbandoned(
                    f"{operation} was abandoned by its caller before it committed: nothing changed"
                )
        self.ledger.write_head()
