"""Retention: erase persons whose retention date has passed, recording each erasure, then
the media results and the decided review items' probe crops past their retention."""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING

from faceledger.errors import NotFound
from faceledger.ledger.audit import Actor
from faceledger.store.db import RETENTION_LOCK, exclusive

if TYPE_CHECKING:
    from faceledger.service import FaceService

log = logging.getLogger(__name__)
SWEEPER = Actor(key_id=None, role="system", name="retention-sweeper")


def sweep(service: FaceService, *, at: datetime | None = None) -> list[tuple[str, str]]:
    """Erase every expired person (database, index, stored images), then the media results
    older than ``media_retention_days``, then the probe crops of review items decided
    longer ago than their collection's retention.

    Returns the ``(collection, person)`` pairs erased. On a database shared by replicas
    one sweep runs at a time (an advisory lock); the others return at once with nothing.
    """
    with exclusive(service.store.engine, RETENTION_LOCK) as mine:
        if not mine:
            return []
        erased = _sweep(service, at)
        for collection, video in service.expire_media(at=at, actor=SWEEPER):
            log.info(
                "retention: erased a video's media results",
                extra={"collection": collection, "video_sha256": video},
            )
        crops = service.purge_reviews(actor=SWEEPER, only_if_due=True, at=at)
        if crops:
            log.info("retention: dropped review probe crops", extra={"crops": crops})
        return erased


def _sweep(service: FaceService, at: datetime | None) -> list[tuple[str, str]]:
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

    def __init__(self, service: FaceService, *, interval: float) -> None:
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
