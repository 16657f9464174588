"""The one facade the CLI, the HTTP API and Python callers use.

It turns images into embeddings with the collection's model pack, stores and searches
them, and writes every enrolment, search and erasure to the audit ledger in the same
transaction as the change it records.
"""

from __future__ import annotations

import getpass
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Connection

from faceledger.config import Settings
from faceledger.engine import Engine, ImageInput
from faceledger.errors import (
    Conflict,
    FaceledgerError,
    InvalidArgument,
    LimitExceeded,
    ModelError,
    MultipleFaces,
    NoFace,
    PurposeRequired,
    QualityTooLow,
)
from faceledger.imaging import ImageLimits
from faceledger.ledger.audit import Actor, Entry, Ledger
from faceledger.ledger.keys import IssuedKey, KeyStore, Role
from faceledger.results import (
    EnrolledImage,
    EnrollSummary,
    FaceResult,
    GroupedFace,
    GroupResult,
    candidates_json,
    check_search_args,
    image_sha256,
    source_name,
)
from faceledger.search import operations
from faceledger.search.ranking import Aggregate, Candidate
from faceledger.store import NewFace, Store
from faceledger.store.db import write_transaction
from faceledger.store.repository import CollectionRecord, PersonRecord
from faceledger.types import Comparison, Face

Progress = Callable[[int, int], None]
BACKGROUND_FACE_AREA = 0.1
"""Faces smaller than this fraction of the largest face's area are treated as background
when deciding whether an enrolment image holds several faces."""
LOCAL_ACTOR = Actor(key_id=None, role="local", name=None)


class FaceService:
    """Collections, enrolment and search over one data directory."""

    def __init__(self, settings: Settings | None = None, *, require_purpose: bool = False) -> None:
        self.settings = settings or Settings()
        self.store = Store(self.settings.data)
        self.ledger = Ledger(self.store.engine, self.settings.data)
        self.keys = KeyStore(self.store.engine)
        self.require_purpose = require_purpose
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        for engine in self._engines.values():
            engine.close()
        self.store.close()

    # -- engines ---------------------------------------------------------------------
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
                )
            return self._engines[name]

    def collection_engine(self, collection: str) -> tuple[CollectionRecord, Engine]:
        """A collection and the engine of its model pack (refusing a pack whose weights changed)."""
        col = self.store.get_collection(collection)
        engine = self.engine(col.model_pack)
        if engine.model_id != col.model_id:
            raise ModelError(
                f"collection {collection!r} holds embeddings of {col.model_id}, but pack "
                f"{col.model_pack!r} is now {engine.model_id}: "
                "embeddings of different models are never compared"
            )
        return col, engine

    def threshold(self, collection: str, max_fmr: float) -> float:
        """The similarity threshold of a collection's pack for a stated false match rate."""
        _, engine = self.collection_engine(collection)
        return engine.pack.require_calibration().threshold_for(max_fmr)

    def _audit(self, actor: Actor, entry: Entry) -> Callable[[Connection], None]:
        """A hook that appends ``entry`` inside the store's write transaction."""

        def record(conn: Connection) -> None:
            self.ledger.append(conn, actor, entry)

        return record

    def _record(self, actor: Actor, entry: Entry) -> None:
        """Write a ledger entry for an operation that changes nothing else (a search)."""
        with write_transaction(self.store.engine) as conn:
            self.ledger.append(conn, actor, entry)
        self.ledger.write_head()

    def _check_purpose(self, purpose: str | None) -> None:
        if self.require_purpose and not (purpose and purpose.strip()):
            raise PurposeRequired("searches must state their purpose (and a case reference if any)")

    # -- collections -----------------------------------------------------------------
    def create_collection(
        self,
        name: str,
        *,
        model: str | None = None,
        require_consent: bool = True,
        store_images: bool = False,
        actor: Actor = LOCAL_ACTOR,
    ) -> CollectionRecord:
        engine = self.engine(model)
        entry = Entry(
            "collection.create",
            collection=name,
            request={"model": engine.pack.name, "require_consent": require_consent},
        )
        col = self.store.create_collection(
            name,
            model_pack=engine.pack.name if model is None or not model.startswith("dir:") else model,
            model_id=engine.model_id,
            embedding_dim=engine.pack.embedding_dim,
            require_consent=require_consent,
            store_images=store_images,
            record=self._audit(actor, entry),
        )
        self.ledger.write_head()
        return col

    def delete_collection(self, name: str, *, actor: Actor = LOCAL_ACTOR) -> None:
        self.store.delete_collection(
            name, record=self._audit(actor, Entry("collection.delete", collection=name))
        )
        self.ledger.write_head()

    # -- persons ---------------------------------------------------------------------
    def create_person(
        self,
        collection: str,
        name: str,
        *,
        consent: str | None = None,
        metadata: dict[str, Any] | None = None,
        retain_until: datetime | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> PersonRecord:
        entry = Entry(
            "person.create", collection=collection, request={"person": name, "consent": consent}
        )
        person = self.store.create_person(
            collection,
            name,
            consent=consent,
            metadata=metadata,
            retain_until=retain_until,
            record=self._audit(actor, entry),
        )
        self.ledger.write_head()
        return person

    def update_person(
        self,
        collection: str,
        name: str,
        *,
        metadata: dict[str, Any] | None = None,
        consent: str | None = None,
        retain_until: datetime | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> PersonRecord:
        """Change a person's metadata, consent reference or retention date (audited)."""
        changed = [
            k
            for k, v in (
                ("metadata", metadata),
                ("consent", consent),
                ("retain_until", retain_until),
            )
            if v is not None
        ]
        entry = Entry(
            "person.update", collection=collection, request={"person": name, "changed": changed}
        )
        person = self.store.update_person(
            collection,
            name,
            metadata=metadata,
            consent=consent,
            retain_until=retain_until,
            record=self._audit(actor, entry),
        )
        self.ledger.write_head()
        return person

    def delete_person(
        self, collection: str, name: str, *, reason: str = "request", actor: Actor = LOCAL_ACTOR
    ) -> int:
        """Erase a person now: rows, embeddings and index entries."""
        request = {"person": name, "reason": reason}
        entry = Entry("person.delete", collection=collection, request=request)
        erased = self.store.delete_person(collection, name, record=self._audit(actor, entry))
        self.ledger.write_head()
        return erased

    def delete_face(self, collection: str, face_id: int, *, actor: Actor = LOCAL_ACTOR) -> None:
        entry = Entry("face.delete", collection=collection, request={"face_id": face_id})
        self.store.delete_face(collection, face_id, record=self._audit(actor, entry))
        self.ledger.write_head()

    def export_person(
        self, collection: str, name: str, *, actor: Actor = LOCAL_ACTOR
    ) -> dict[str, Any]:
        """Everything stored about a person (subject access request); the export is audited."""
        person = self.store.get_person(collection, name)
        faces = self.store.list_faces(collection, name)
        self._record(actor, Entry("person.export", collection=collection, request={"person": name}))
        return {"person": person, "faces": faces}

    # -- keys ------------------------------------------------------------------------
    def create_key(
        self, role: Role, *, name: str | None = None, actor: Actor = LOCAL_ACTOR
    ) -> IssuedKey:
        """Issue an API key (its secret is returned once); the issue is audited."""
        with write_transaction(self.store.engine) as conn:
            issued = self.keys.create(role, name=name, conn=conn)
            entry = Entry(
                "key.create", request={"key_id": issued.key.id, "role": role.value, "name": name}
            )
            self.ledger.append(conn, actor, entry)
        self.ledger.write_head()
        return issued

    def revoke_key(self, key_id: str, *, actor: Actor = LOCAL_ACTOR) -> None:
        with write_transaction(self.store.engine) as conn:
            self.keys.revoke(key_id, conn=conn)
            self.ledger.append(conn, actor, Entry("key.revoke", request={"key_id": key_id}))
        self.ledger.write_head()

    def detect(self, image: ImageInput, *, actor: Actor = LOCAL_ACTOR) -> list[Face]:
        """Faces of an image (no embeddings kept); audited without the image."""
        faces = self.engine().detect(image)[: self.settings.max_faces_per_image]
        self._record(
            actor, Entry("detect", image_sha256=image_sha256(image), result={"faces": len(faces)})
        )
        return faces

    # -- enrolment -------------------------------------------------------------------
    def _choose_face(
        self, faces: list[Face], *, face_index: int | None, largest: bool, allow_low_quality: bool
    ) -> Face:
        if not faces:
            raise NoFace("no face found in the image")
        if face_index is not None:
            if not 0 <= face_index < len(faces):
                raise InvalidArgument(
                    f"face index {face_index} out of range: {len(faces)} face(s) found"
                )
            chosen = faces[face_index]
        else:
            area = faces[0].box.width * faces[0].box.height
            foreground = [
                f for f in faces if f.box.width * f.box.height >= BACKGROUND_FACE_AREA * area
            ]
            if len(foreground) > 1 and not largest:
                raise MultipleFaces(
                    f"{len(foreground)} faces in the image: "
                    "choose one with a face index or 'largest'",
                    faces=len(foreground),
                )
            chosen = faces[0]
        if chosen.quality.grade == "low" and not allow_low_quality:
            raise QualityTooLow(
                "face quality is too low for enrolment", quality=chosen.quality.grade
            )
        return chosen

    def enroll(
        self,
        collection: str,
        person: str,
        images: Sequence[ImageInput],
        *,
        consent: str | None = None,
        face_index: int | None = None,
        largest: bool = False,
        allow_low_quality: bool = False,
        aligned: bool = False,
        sources: Sequence[str] | None = None,
        strict: bool = False,
        actor: Actor = LOCAL_ACTOR,
    ) -> list[EnrolledImage]:
        """Detect, check and store one face per image for ``person`` in one transaction.

        Images that are refused (no face, several faces, low quality, unreadable) are
        reported with a machine code and store nothing; the accepted ones are stored
        together, creating the person if needed. With ``aligned`` the images are
        already aligned face crops (no detection). With ``strict`` the first refusal is
        raised instead (and nothing is stored).
        """
        col, engine = self.collection_engine(collection)
        names = (
            list(sources)
            if sources is not None
            else [source_name(im, i) for i, im in enumerate(images)]
        )
        outcomes: list[EnrolledImage | None] = []
        accepted: list[tuple[int, NewFace, str]] = []

        def embed(image: ImageInput) -> list[Face] | FaceledgerError:
            try:
                return [engine.embed_aligned_face(image)] if aligned else engine.embed(image)
            except FaceledgerError as exc:
                return exc

        for i, (image, found) in enumerate(zip(images, engine.map(embed, images), strict=True)):
            try:
                if isinstance(found, FaceledgerError):
                    raise found
                face = self._choose_face(
                    found,
                    face_index=face_index,
                    largest=largest,
                    allow_low_quality=allow_low_quality,
                )
            except FaceledgerError as exc:
                if strict:
                    raise
                outcomes.append(
                    EnrolledImage(
                        names[i],
                        refused=exc.code,
                        reason=exc.message,
                        faces_in_image=0 if isinstance(found, FaceledgerError) else len(found),
                    )
                )
                continue
            assert face.embedding is not None
            digest = image_sha256(image)
            data = image if col.store_images and isinstance(image, bytes) else None
            accepted.append(
                (
                    i,
                    NewFace(
                        embedding=face.embedding,
                        box=face.box.as_list(),
                        quality={k: getattr(face.quality, k) for k in face.quality.__slots__},
                        source=names[i],
                        image_sha256=digest,
                        image=data,
                    ),
                    face.quality.grade,
                )
            )
            outcomes.append(None)
        if accepted:
            entry = Entry(
                "face.enroll",
                collection=collection,
                request={"person": person, "images": len(images), "consent": consent},
                result={"sources": [names[i] for i, _, _ in accepted]},
            )
            ids = self.store.add_faces(
                collection,
                person,
                [f for _, f, _ in accepted],
                create_person=True,
                consent=consent,
                record=self._audit(actor, entry),
            )
            self.ledger.write_head()
            for (i, _, grade), fid in zip(accepted, ids, strict=True):
                outcomes[i] = EnrolledImage(names[i], face_id=fid, quality=grade, faces_in_image=1)
        return [o for o in outcomes if o is not None]

    def enroll_folder(
        self,
        collection: str,
        tree: Path,
        *,
        consent: str | None = None,
        largest: bool = False,
        allow_low_quality: bool = False,
        progress: Progress | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> EnrollSummary:
        """Enrol ``tree/<person>/<images>``, one transaction per person; a summary of refusals."""
        from faceledger.eval.dataset import list_tree

        items = list_tree(tree)
        by_person: dict[str, list[Path]] = {}
        for person, path in items:
            by_person.setdefault(person, []).append(path)
        summary = EnrollSummary()
        done = 0
        for person, paths in by_person.items():
            try:
                results = self.enroll(
                    collection,
                    person,
                    paths,
                    consent=consent,
                    largest=largest,
                    allow_low_quality=allow_low_quality,
                    actor=actor,
                )
            except (LimitExceeded, Conflict, InvalidArgument) as exc:
                results = [
                    EnrolledImage(str(p), refused=exc.code, reason=exc.message) for p in paths
                ]
            for r in results:
                (summary.enrolled if r.face_id is not None else summary.refused).append(r)
            done += len(paths)
            if progress:
                progress(done, len(items))
        return summary

    # -- search ----------------------------------------------------------------------
    def identify(
        self,
        collection: str,
        image: ImageInput,
        *,
        top: int = 5,
        max_fmr: float = 1e-4,
        purpose: str | None = None,
        case_ref: str | None = None,
        aggregate: Aggregate = "max",
        aligned: bool = False,
        actor: Actor = LOCAL_ACTOR,
    ) -> list[FaceResult]:
        """Every face of the image with its candidate persons within ``max_fmr``, best first.

        With ``aligned`` the image is an already aligned face crop (no detection).
        """
        self._check_purpose(purpose)
        check_search_args(top, max_fmr)
        col, engine = self.collection_engine(collection)
        faces = [engine.embed_aligned_face(image)] if aligned else engine.embed(image)
        faces = faces[: self.settings.max_faces_per_image]
        cal = engine.pack.require_calibration()
        queries = (
            np.stack([f.embedding for f in faces if f.embedding is not None])
            if faces
            else np.zeros((0, col.embedding_dim), np.float32)
        )
        ranked = operations.identify(
            self.store, col, queries, cal, top=top, max_fmr=max_fmr, aggregate=aggregate
        )
        results = [FaceResult(f, c) for f, c in zip(faces, ranked, strict=True)]
        self._record(
            actor,
            Entry(
                "identify",
                collection=collection,
                purpose=purpose,
                case_ref=case_ref,
                image_sha256=image_sha256(image),
                request={"top": top, "max_fmr": max_fmr},
                result={"faces": [candidates_json(r.candidates) for r in results]},
            ),
        )
        return results

    def identify_embeddings(
        self,
        collection: str,
        embeddings: np.ndarray,
        *,
        top: int = 5,
        max_fmr: float = 1e-4,
        purpose: str | None = None,
        case_ref: str | None = None,
        operation: str = "identify.embeddings",
        request: dict[str, Any] | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> list[list[Candidate]]:
        """Identify embeddings ``(q, d)`` of the collection's pack (e.g. one per video track).

        Recorded in the ledger as one entry (``operation``) like any identify.
        """
        self._check_purpose(purpose)
        check_search_args(top, max_fmr)
        col, engine = self.collection_engine(collection)
        queries = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, col.embedding_dim)
        cal = engine.pack.require_calibration()
        ranked = operations.identify(self.store, col, queries, cal, top=top, max_fmr=max_fmr)
        self._record(
            actor,
            Entry(
                operation,
                collection=collection,
                purpose=purpose,
                case_ref=case_ref,
                request={
                    "queries": int(queries.shape[0]),
                    "top": top,
                    "max_fmr": max_fmr,
                    **(request or {}),
                },
                result={"queries": [candidates_json(c) for c in ranked]},
            ),
        )
        return ranked

    def similar(
        self,
        collection: str,
        image: ImageInput,
        *,
        mode: str = "matchPerson",
        top: int = 20,
        max_fmr: float = 1e-4,
        purpose: str | None = None,
        case_ref: str | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> FaceResult:
        """Faces most like the image's largest face (Azure's Find Similar)."""
        if mode not in ("matchPerson", "matchFace"):
            raise InvalidArgument("mode must be matchPerson or matchFace")
        self._check_purpose(purpose)
        check_search_args(top, max_fmr)
        col, engine = self.collection_engine(collection)
        face = engine.embed_largest(image)
        assert face.embedding is not None
        found = operations.similar(
            self.store,
            col,
            face.embedding,
            engine.pack.require_calibration(),
            mode=mode,
            top=top,
            max_fmr=max_fmr,
        )
        self._record(
            actor,
            Entry(
                "similar",
                collection=collection,
                purpose=purpose,
                case_ref=case_ref,
                image_sha256=image_sha256(image),
                request={"mode": mode, "top": top, "max_fmr": max_fmr},
                result={"faces": candidates_json(found)},
            ),
        )
        return FaceResult(face, found)

    def verify(
        self,
        collection: str,
        image: ImageInput,
        person: str,
        *,
        max_fmr: float = 1e-4,
        purpose: str | None = None,
        case_ref: str | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> operations.PersonMatch:
        """Is the image's largest face this enrolled person? Compared with all their faces."""
        self._check_purpose(purpose)
        check_search_args(1, max_fmr)
        _, engine = self.collection_engine(collection)
        face = engine.embed_largest(image)
        assert face.embedding is not None
        _, gallery = self.store.face_embeddings(collection, person)
        match = operations.verify_person(
            face.embedding, person, gallery, engine.pack.require_calibration(), max_fmr=max_fmr
        )
        self._record(
            actor,
            Entry(
                "verify",
                collection=collection,
                purpose=purpose,
                case_ref=case_ref,
                image_sha256=image_sha256(image),
                request={"person": person, "max_fmr": max_fmr},
                result={
                    "similarity": match.similarity,
                    "fmr": match.fmr,
                    "same_person": match.same_person,
                },
            ),
        )
        return match

    def compare(
        self,
        a: ImageInput,
        b: ImageInput,
        *,
        max_fmr: float = 1e-4,
        model: str | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> Comparison:
        """Face-to-face verification of the largest faces of two images."""
        result = self.engine(model).compare(a, b, max_fmr=max_fmr)
        self._record(
            actor,
            Entry(
                "compare",
                image_sha256=image_sha256(a),
                request={"max_fmr": max_fmr, "other_image_sha256": image_sha256(b)},
                result={"similarity": result.similarity, "same_person": result.same_person},
            ),
        )
        return result

    def group(
        self,
        images: Sequence[ImageInput] = (),
        *,
        collection: str | None = None,
        max_fmr: float = 1e-3,
        model: str | None = None,
        sources: Sequence[str] | None = None,
        actor: Actor = LOCAL_ACTOR,
        progress: Progress | None = None,
    ) -> GroupResult:
        """Cluster unknown faces into people plus a messy group of singletons.

        Either every face of ``images`` (two faces of one photo never share a group) or
        every face stored in ``collection``.
        """
        names = (
            list(sources)
            if sources is not None
            else [source_name(im, i) for i, im in enumerate(images)]
        )
        refs: list[GroupedFace] = []
        if collection is not None:
            _, engine = self.collection_engine(collection)
            ids, vectors, owners = self.store.collection_embeddings(collection)
            refs = [
                GroupedFace(image="", face_index=0, box=[], person=p, face_id=int(i))
                for i, p in zip(ids, owners, strict=True)
            ]
            photo_ids = list(range(len(refs)))
        else:
            engine = self.engine(model)
            rows, photo_ids = [], []
            for n, faces in enumerate(engine.embed_many(images)):
                for k, f in enumerate(faces):
                    assert f.embedding is not None
                    rows.append(f.embedding)
                    photo_ids.append(n)
                    refs.append(GroupedFace(image=names[n], face_index=k, box=f.box.as_list()))
                if progress:
                    progress(n + 1, len(images))
            vectors = (
                np.stack(rows) if rows else np.zeros((0, engine.pack.embedding_dim), np.float32)
            )
        cal = engine.pack.require_calibration()
        grouping = operations.group(vectors, photo_ids, cal, max_fmr=max_fmr)
        result = GroupResult(
            groups=[[refs[i] for i in g] for g in grouping.groups],
            messy_group=[refs[i] for i in grouping.messy_group],
            threshold=round(cal.threshold_for(max_fmr), 5),
            max_fmr=max_fmr,
        )
        self._record(
            actor,
            Entry(
                "group",
                collection=collection,
                request={"images": len(images), "max_fmr": max_fmr},
                result={
                    "groups": [len(g) for g in result.groups],
                    "messy": len(result.messy_group),
                },
            ),
        )
        return result


def local_actor() -> Actor:
    """The local user running the CLI or library, as recorded in the ledger."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return Actor(key_id=None, role="local", name=f"local:{user}")
