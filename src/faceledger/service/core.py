"""What every part of the service shares: settings, store, ledger, keys, engines, auditing."""

from __future__ import annotations

import getpass
import threading
from collections.abc import Callable
from pathlib import Path

from faceledger.budget import Gate
from faceledger.config import Settings
from faceledger.engine import Engine
from faceledger.errors import Conflict, PurposeRequired
from faceledger.imaging import ImageLimits
from faceledger.ledger.audit import Actor, Ledger
from faceledger.ledger.keys import KeyStore
from faceledger.models.calibration import Calibration
from faceledger.models.calibration_store import find_calibration
from faceledger.service.ratelimit import RateLimiter
from faceledger.service.work import Auditor
from faceledger.store import Store
from faceledger.store.listen import ChangeListener
from faceledger.store.repository import INDEX_BACKENDS, CollectionRecord

Progress = Callable[[int, int], None]
LOCAL_ACTOR = Actor(key_id=None, role="local", name=None)


def local_actor() -> Actor:
    """The local user running the CLI or library, as recorded in the ledger."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(key_id=None, role="local", name=f"local:{user}")


class ServiceCore:
    """One data directory's store, ledger and keys, the loaded engines and the auditor."""

    def __init__(self, settings: Settings | None = None, *, require_purpose: bool = False) -> None:
        self.settings = settings or Settings()
        self.store = Store(
            self.settings.data,
            database_url=self.settings.db_url,
            index_kind=INDEX_BACKENDS[self.settings.index],
        )
        self.ledger = Ledger(self.store.engine, self.settings.data, settings=self.settings)
        self.keys = KeyStore(self.store.engine)
        self.auditor = Auditor(self.store, self.ledger)
        self.audited = self.auditor.audited
        self.require_purpose = require_purpose
        """Searches must state a purpose (the HTTP app sets it from ``settings``)."""
        self._engines: dict[str, Engine] = {}
        self.gate = Gate(self.settings.image_slots, queue=self.settings.image_queue)
        """One budget of image slots shared by every engine of the process."""
        self._lock = threading.Lock()

    def close(self) -> None:
        self.ledger.close()
        for engine in self._engines.values():
            engine.close()
        self.store.close()

    # -- engines -------------------------------------------------------------------------
    def rate_limiter(self) -> RateLimiter:
        """The settings' per-key token buckets: in memory, or in a PostgreSQL store's
        database so that every replica of it takes from the same bucket."""
        engine = self.store.engine
        return RateLimiter(
            rate=self.settings.rate_limit,
            burst=self.settings.rate_burst,
            shared=engine if engine.dialect.name == "postgresql" else None,
        )

    def change_listener(self) -> ChangeListener:
        """A listener that wakes this process's index when another replica commits
        (PostgreSQL ``LISTEN``; nothing to listen to on SQLite). Not yet started."""
        return ChangeListener(self.store)

    def engine(self, pack: str | None = None) -> Engine:
        """The engine of a model pack, loaded once per service."""
        name = pack or self.settings.model_pack
        with self._lock:
            if name not in self._engines:
                self._engines[name] = Engine(
                    name,
                    workers=self.settings.workers,
                    min_face_size=self.settings.min_face_size,
                    detector_input_cap=self.settings.detector_input_cap,
                    limits=ImageLimits(
                        self.settings.max_image_bytes, self.settings.max_image_pixels
                    ),
                    gate=self.gate,
                    max_faces=self.settings.max_faces_per_image,
                )
            return self._engines[name]

    def collection_engine(self, collection: str) -> tuple[CollectionRecord, Engine]:
        """A collection and the engine of its model pack (refusing a pack whose weights changed).

        Raises:
            NotFound: no such collection.
            Conflict: the pack's model is no longer the one the collection's embeddings
                came from (embeddings of different models are never compared).
        """
        col = self.store.get_collection(collection)
        engine = self.engine(col.model_pack)
        if engine.model_id != col.model_id:
            raise Conflict(
                f"collection {collection!r} holds embeddings of {col.model_id}, but pack "
                f"{col.model_pack!r} is now {engine.model_id}: "
                "embeddings of different models are never compared"
            )
        return col, engine

    @property
    def calibration_roots(self) -> list[Path]:
        """Where calibration versions written by ``eval calibrate --write`` are found."""
        return [self.settings.data / "calibrations"]

    def calibration_of(self, col: CollectionRecord, engine: Engine) -> Calibration:
        """The calibration a collection's searches use: the pack's shipped one, or the
        version the collection was moved to (:meth:`AdminOps.use_calibration`).

        Raises:
            NotFound: the collection's calibration file is gone from the store.
        """
        shipped = engine.pack.require_calibration()
        if col.calibration_id is None:
            return shipped
        return find_calibration(col.calibration_id, shipped=shipped, roots=self.calibration_roots)

    def calibration(self, collection: str) -> Calibration:
        """The calibration that turns a collection's similarities into false match rates."""
        col, engine = self.collection_engine(collection)
        return self.calibration_of(col, engine)

    def threshold(self, collection: str, max_fmr: float | None = None) -> float:
        """The similarity threshold of a collection's pack for a stated false match rate."""
        return self.calibration(collection).threshold_for(self.max_fmr(max_fmr))

    def max_fmr(self, given: float | None) -> float:
        """The false match rate asked for, or the configured default (``default_max_fmr``)."""
        return self.settings.default_max_fmr if given is None else given

    def check_purpose(self, purpose: str | None) -> None:
        if self.require_purpose and not (purpose and purpose.strip()):
            raise PurposeRequired(
                "searches must state their purpose: pass purpose=... "
                "(HTTP: ?purpose=...; CLI: --purpose) and a case reference if any"
            )
