"""Replicas woken by PostgreSQL ``LISTEN/NOTIFY``: another replica's commit reaches our indexes.

Every commit that changes a collection's vectors also sends ``NOTIFY faceledger_changes,
'<collection id>'`` (:func:`~faceledger.store.db.notify_changes`, delivered by PostgreSQL
only once the transaction commits). A :class:`ChangeListener` holds one connection that
listens on the channel and replays the change log into the named collection's open index
as soon as it is woken, so this replica's next search has nothing left to catch up.

Correctness does not rest on it: every search replays the change log first and re-reads
the candidates' owners from the database (see :mod:`faceledger.store.vectors`), so a face
another replica added is found, and one it erased is never returned, from the moment that
replica's commit returned, woken or not. The listener takes the replay off the search
path; a lost connection is reopened, with a full catch-up, after ``RETRY_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from faceledger.store.db import CHANGES_CHANNEL

if TYPE_CHECKING:
    from faceledger.store.repository import Store

log = logging.getLogger(__name__)
RETRY_SECONDS = 2.0
"""How soon a lost listening connection is reopened."""
WAKE_SECONDS = 1.0
"""How often the waiting thread looks up to see whether it was asked to stop."""


class ChangeListener:
    """Keeps a store's open indexes caught up with other replicas' commits (PostgreSQL).

    On SQLite :meth:`start` does nothing: processes sharing a data folder catch up before
    each search, as they always have.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faceledger-listen", daemon=True)
        self.wakeups = 0
        """Notifications handled (for tests and the replica benchmark)."""

    @property
    def active(self) -> bool:
        return bool(self._store.engine.dialect.name == "postgresql")

    def start(self) -> None:
        if self.active:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * WAKE_SECONDS + 5)

    def _conninfo(self) -> str:
        url = self._store.engine.url.set(drivername="postgresql")
        return str(url.render_as_string(hide_password=False))

    def _run(self) -> None:
        import psycopg

        while not self._stop.is_set():
            try:
                with psycopg.connect(self._conninfo(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANGES_CHANNEL}")
                    self._store.catch_up()  # whatever was committed while we were not listening
                    while not self._stop.is_set():
                        touched = {
                            int(n.payload)
                            for n in conn.notifies(timeout=WAKE_SECONDS, stop_after=1)
                            if n.payload.isdigit()
                        }
                        if touched:
                            self._store.catch_up(touched)
                            self.wakeups += len(touched)
            except Exception:  # the database went away, or a replay failed: retry
                log.exception("change listener lost its connection; retrying")
                self._stop.wait(RETRY_SECONDS)
