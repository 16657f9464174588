"""Retention: erase persons whose retention date has passed, recording each erasure."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from faceledger.errors import NotFound
from faceledger.ledger.audit import Actor
from faceledger.service.persons import PersonOps
from faceledger.store.db import RETENTION_LOCK, exclusive

log = logging.getLogger(__name__)
SWEEPER = Actor(key_id=None, role="system", name="retention-sweeper")


def sweep(service: PersonOps, *, at: datetime | None = None) -> list[tuple[str, str]]:
    """Erase every expired person (database, index, stored images).

    Returns the ``(collection, person)`` pairs erased. On a database shared by replicas
    one sweep runs at a time (an advisory lock); the others return at once with nothing.
    """
    with exclusive(service.store.engine, RETENTION_LOCK) as mine:
        return _sweep(service, at) if mine else []


def _sweep(service: PersonOps, at: datetime | None) -> list[tuple[str, str]]:
    erased = []
    for person in service.store.expired_persons(at):
        try:
            service.delete_person(
                person.collection, person.name, reason="retention expired", actor=SWEEPER
            )
        except NotFound:  # erased meanwhile by someone else
            continue
        erased.append((person.collection, person.name))
        log.info(
            "retention: erased a person",
            extra={"collection": person.collection, "person_id": person.id},
        )
    return erased


class Sweeper:
    """Runs :func:`sweep` every ``interval`` seconds on a daemon thread."""

    def __init__(self, service: PersonOps, *, interval: float) -> None:
        self._service = service
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="faceledger-retention", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                sweep(self._service)
            except Exception:  # keep sweeping; the failure is logged
                log.exception("retention sweep failed")
