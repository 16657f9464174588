"""Persons and enrolment: create, rename, merge, enrol faces, erase; each change audited."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from faceledger.batch.types import (
    EmbeddedImage,
    Embedder,
    EngineSpec,
    ImageJob,
    enrolment_faces,
)
from faceledger.engine import ImageInput
from faceledger.errors import (
    Conflict,
    FaceledgerError,
    InvalidArgument,
    MultipleFaces,
    NoFace,
    QualityTooLow,
)
from faceledger.imaging.folders import person_folders
from faceledger.ledger.audit import Actor
from faceledger.results import EnrolledImage, EnrollSummary, image_sha256, source_name
from faceledger.service.core import LOCAL_ACTOR, Progress, ServiceCore
from faceledger.store import NewFace
from faceledger.store.jobs import PersonRef, move_person
from faceledger.store.media import MediaStore
from faceledger.store.repository import PersonRecord
from faceledger.types import Face

BACKGROUND_FACE_AREA = 0.1
"""Faces smaller than this fraction of the largest face's area are treated as background
when deciding whether an enrolment image holds several faces."""


class PersonOps(ServiceCore):
    """Persons of a collection and their enrolled faces."""

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
        request = {"consent": consent}
        with self.audited(actor, "person.create", collection=collection, request=request) as work:
            person = self.store.create_person(
                collection,
                name,
                consent=consent,
                metadata=metadata,
                retain_until=retain_until,
                tx=work.tx,
            )
            work.request["person"] = person.pseudonym
            return person

    def update_person(
        self,
        collection: str,
        name: str,
        *,
        new_name: str | None = None,
        metadata: dict[str, Any] | None = None,
        consent: str | None = None,
        retain_until: datetime | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> PersonRecord:
        """Rename a person or change their metadata, consent reference or retention date."""
        changed = [
            k
            for k, v in (
                ("name", new_name),
                ("metadata", metadata),
                ("consent", consent),
                ("retain_until", retain_until),
            )
            if v is not None
        ]
        request: dict[str, Any] = {"changed": changed}
        with self.audited(actor, "person.update", collection=collection, request=request) as work:
            work.request["person"] = work.pseudonym(collection, name)
            return self.store.update_person(
                collection,
                name,
                new_name=new_name,
                metadata=metadata,
                consent=consent,
                retain_until=retain_until,
                tx=work.tx,
            )

    def merge_persons(
        self, collection: str, source: str, into: str, *, actor: Actor = LOCAL_ACTOR
    ) -> PersonRecord:
        """Move every face of ``source`` to ``into``, and their intervals in the media index,
        and remove ``source`` (one audited change)."""
        if source == into:
            raise InvalidArgument("a person cannot be merged into themselves")
        with self.audited(actor, "person.merge", collection=collection) as work:
            ids = work.pseudonyms(collection, [source, into])
            work.request.update(person=ids.get(source), into=ids.get(into))
            moved = self.store.move_faces(collection, into, person=source, tx=work.tx)
            # Before the delete: its foreign key would turn them into "erased person".
            intervals = MediaStore(self.store.engine).move_person(
                work.tx.conn, collection, source, into
            )
            survivor = self.store.get_person(collection, into, tx=work.tx)
            jobs = move_person(
                work.tx.conn, collection, source, PersonRef(survivor.id, survivor.name)
            )
            self.store.delete_person(collection, source, tx=work.tx)
            work.result["faces_moved"] = moved
            work.result["media_intervals_moved"] = intervals
            work.result["video_jobs_changed"] = jobs
            return self.store.get_person(collection, into, tx=work.tx)

    def move_faces(
        self, collection: str, face_ids: Sequence[int], to: str, *, actor: Actor = LOCAL_ACTOR
    ) -> PersonRecord:
        """Move faces to another person (splitting a wrongly merged person); audited."""
        ids = [int(i) for i in face_ids]
        if not ids:
            raise InvalidArgument("no faces to move")
        request = {"face_ids": ids}
        with self.audited(actor, "face.move", collection=collection, request=request) as work:
            work.request["to"] = work.pseudonym(collection, to)
            self.store.move_faces(collection, to, face_ids=ids, tx=work.tx)
            return self.store.get_person(collection, to, tx=work.tx)

    def delete_person(
        self, collection: str, name: str, *, reason: str = "request", actor: Actor = LOCAL_ACTOR
    ) -> int:
        """Erase a person now: rows, embeddings and index entries. Returns faces erased."""
        request = {"reason": reason}
        with self.audited(actor, "person.delete", collection=collection, request=request) as work:
            work.request["person"] = work.pseudonym(collection, name)
            erased = self.store.delete_person(collection, name, tx=work.tx)
            work.result["faces"] = erased
            return erased

    def delete_face(self, collection: str, face_id: int, *, actor: Actor = LOCAL_ACTOR) -> None:
        request = {"face_id": face_id}
        with self.audited(actor, "face.delete", collection=collection, request=request) as work:
            self.store.delete_face(collection, face_id, tx=work.tx)

    # -- enrolment -----------------------------------------------------------------------
    def enroll(
        self,
        collection: str,
        person: str,
        images: Sequence[ImageInput],
        *,
        consent: str | None = None,
        create_person: bool = True,
        face_index: int | None = None,
        largest: bool = False,
        allow_low_quality: bool = False,
        allow_duplicates: bool = False,
        aligned: bool = False,
        sources: Sequence[str] | None = None,
        strict: bool = False,
        actor: Actor = LOCAL_ACTOR,
    ) -> list[EnrolledImage]:
        """Detect, check and store one face per image for ``person`` in one transaction.

        Images that are refused (no face, several faces, low quality, unreadable, or
        already enrolled for this person unless ``allow_duplicates``) are reported with a
        machine code and store nothing; the accepted ones are stored together. The person
        is resolved inside the write transaction that stores the faces, so an enrolment
        racing an erasure either lands first (and is erased with the person) or fails with
        NotFound; with ``create_person`` a missing person is created in that transaction.
        With ``aligned`` the images are already aligned face crops (no detection). With
        ``strict`` the first refusal is raised instead (and nothing is stored).
        """
        col, engine = self.collection_engine(collection)
        names = (
            list(sources)
            if sources is not None
            else [source_name(im, i) for i, im in enumerate(images)]
        )

        def embed(item: tuple[str, ImageInput]) -> EmbeddedImage:
            name, image = item
            found = enrolment_faces(engine, name, image, sha256=None, aligned=aligned)
            kept = image if col.store_images and isinstance(image, bytes) else None
            return replace(found, image_sha256=image_sha256(image), image=kept)

        return self.enroll_embedded(
            collection,
            person,
            list(engine.map(embed, zip(names, images, strict=True))),
            consent=consent,
            create_person=create_person,
            face_index=face_index,
            largest=largest,
            allow_low_quality=allow_low_quality,
            allow_duplicates=allow_duplicates,
            strict=strict,
            actor=actor,
        )

    def enroll_embedded(
        self,
        collection: str,
        person: str,
        images: Sequence[EmbeddedImage],
        *,
        consent: str | None = None,
        create_person: bool = True,
        face_index: int | None = None,
        largest: bool = False,
        allow_low_quality: bool = False,
        allow_duplicates: bool = False,
        strict: bool = False,
        actor: Actor = LOCAL_ACTOR,
    ) -> list[EnrolledImage]:
        """Check and store images already embedded (by :meth:`enroll` or a batch worker).

        The same checks, duplicate rule and single audited transaction as :meth:`enroll`.

        Raises:
            Conflict: a face was embedded by another model than the collection's.
        """
        _, engine = self.collection_engine(collection)
        outcomes: list[EnrolledImage | None] = []
        accepted: list[tuple[int, NewFace, str]] = []
        for i, found in enumerate(images):
            try:
                if found.error is not None:
                    raise found.error
                face = choose_face(
                    found.faces,
                    face_index=face_index,
                    largest=largest,
                    allow_low_quality=allow_low_quality,
                )
            except FaceledgerError as exc:
                if strict:
                    raise
                outcomes.append(
                    EnrolledImage(
                        found.source,
                        refused=exc.code,
                        reason=exc.message,
                        faces_in_image=len(found.faces),
                    )
                )
                continue
            if face.model != engine.model_id:
                raise Conflict(
                    f"{found.source} was embedded by {face.model}, collection {collection!r} "
                    f"holds {engine.model_id}: embeddings of different models are never compared"
                )
            new = NewFace(
                embedding=face.require_embedding(),
                box=face.box.as_list(),
                quality={k: getattr(face.quality, k) for k in face.quality.__slots__},
                source=found.source,
                image_sha256=found.image_sha256,
                image=found.image,
            )
            accepted.append((i, new, face.quality.grade))
            outcomes.append(None)
        if not accepted:
            return [o for o in outcomes if o is not None]
        request = {"images": len(images), "consent": consent}
        with self.audited(actor, "face.enroll", collection=collection, request=request) as work:
            if not allow_duplicates:
                known = self.store.enrolled_hashes(collection, person, tx=work.tx)
                fresh = []
                for i, new, grade in accepted:
                    if new.image_sha256 in known:
                        if strict:
                            raise Conflict(DUPLICATE_REASON)
                        outcomes[i] = duplicate_of(images[i].source)
                    else:
                        known.add(new.image_sha256 or "")
                        fresh.append((i, new, grade))
                accepted = fresh
            ids: list[int] = []
            if accepted:
                ids = self.store.add_faces(
                    collection,
                    person,
                    [f for _, f, _ in accepted],
                    create_person=create_person,
                    consent=consent,
                    tx=work.tx,
                )
            # File names can carry a person's name: the ledger keeps image hashes instead.
            work.result["images_sha256"] = [new.image_sha256 for _, new, _ in accepted]
            work.result["face_ids"] = ids
            work.request["person"] = work.pseudonym(collection, person)
        for (i, _, grade), fid in zip(accepted, ids, strict=True):
            outcomes[i] = EnrolledImage(
                images[i].source, face_id=fid, quality=grade, faces_in_image=1
            )
        return [o for o in outcomes if o is not None]

    def enroll_folder(
        self,
        collection: str,
        tree: Path,
        *,
        consent: str | None = None,
        largest: bool = False,
        allow_low_quality: bool = False,
        allow_duplicates: bool = False,
        aligned: bool = False,
        embedder: Embedder | None = None,
        chunk: int = 32,
        progress: Progress | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> EnrollSummary:
        """Enrol ``tree/<person>/<images>``; a summary of refusals.

        Locally each person is one transaction. With an ``embedder`` (a Ray cluster,
        :mod:`faceledger.batch`) images already enrolled for their person are skipped by
        SHA-256 before any work is sent, the rest is embedded there in ``chunk``-image
        batches and each finished batch is stored as one transaction here, so a rerun after
        a crash adds exactly what is missing.
        """
        by_person = person_folders(tree)
        if embedder is not None:
            return self._enroll_folder_remote(
                collection,
                by_person,
                embedder,
                chunk=chunk,
                aligned=aligned,
                allow_duplicates=allow_duplicates,
                progress=progress,
                store=partial(
                    self.enroll_embedded,
                    consent=consent,
                    largest=largest,
                    allow_low_quality=allow_low_quality,
                    allow_duplicates=allow_duplicates,
                    actor=actor,
                ),
            )
        total = sum(len(paths) for paths in by_person.values())
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
                    allow_duplicates=allow_duplicates,
                    aligned=aligned,
                    actor=actor,
                )
            except (Conflict, InvalidArgument) as exc:
                results = [
                    EnrolledImage(str(p), refused=exc.code, reason=exc.message) for p in paths
                ]
            tally(summary, results)
            done += len(paths)
            if progress:
                progress(done, total)
        return summary

    def _enroll_folder_remote(
        self,
        collection: str,
        by_person: dict[str, list[Path]],
        embedder: Embedder,
        *,
        chunk: int,
        aligned: bool,
        allow_duplicates: bool,
        progress: Progress | None,
        store: Callable[[str, str, Sequence[EmbeddedImage]], list[EnrolledImage]],
    ) -> EnrollSummary:
        col, engine = self.collection_engine(collection)
        spec = EngineSpec.of(engine, pack=col.model_pack)
        total = sum(len(paths) for paths in by_person.values())
        summary = EnrollSummary()
        done = 0

        def chunks() -> Iterator[list[ImageJob]]:
            nonlocal done
            for person, paths in by_person.items():
                try:
                    known = (
                        set()
                        if allow_duplicates
                        else self.store.enrolled_hashes(collection, person)
                    )
                except InvalidArgument as exc:  # a folder name that is no person name
                    refused = [
                        EnrolledImage(str(p), refused=exc.code, reason=exc.message) for p in paths
                    ]
                    tally(summary, refused)
                    done += len(paths)
                    continue
                jobs: list[ImageJob] = []
                for path in paths:
                    job = read_job(person, path)
                    if isinstance(job, EnrolledImage) or job.image_sha256 in known:
                        skipped = job if isinstance(job, EnrolledImage) else None
                        tally(summary, [skipped or duplicate_of(str(path))])
                        done += 1
                        continue
                    jobs.append(job)
                    if len(jobs) == chunk:
                        yield jobs
                        jobs = []
                if jobs:
                    yield jobs
                if progress:
                    progress(done, total)

        for jobs, embedded in embedder.embed(spec, chunks(), aligned=aligned):
            person = jobs[0].person
            try:
                results = store(collection, person, embedded)
            except (Conflict, InvalidArgument) as exc:
                results = [
                    EnrolledImage(j.source, refused=exc.code, reason=exc.message) for j in jobs
                ]
            tally(summary, results)
            done += len(jobs)
            if progress:
                progress(done, total)
        return summary


DUPLICATE_REASON = (
    "this image is already enrolled for this person "
    "(use --allow-duplicates / allow_duplicates=true to add it again)"
)


def tally(summary: EnrollSummary, results: Sequence[EnrolledImage]) -> None:
    """Add enrolment outcomes to a summary (stored faces, or refused and skipped images)."""
    for r in results:
        (summary.enrolled if r.face_id is not None else summary.refused).append(r)


def duplicate_of(source: str) -> EnrolledImage:
    """The outcome of an image already enrolled for its person: skipped, stores nothing."""
    return EnrolledImage(source, refused="duplicate", reason=DUPLICATE_REASON, faces_in_image=1)


def read_job(person: str, path: Path) -> ImageJob | EnrolledImage:
    """An image file as a batch job (bytes and SHA-256), or its refusal if unreadable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return EnrolledImage(str(path), refused="not_found", reason=f"cannot read {path}: {exc}")
    return ImageJob(person, str(path), hashlib.sha256(data).hexdigest(), data)


def choose_face(
    faces: list[Face], *, face_index: int | None, largest: bool, allow_low_quality: bool
) -> Face:
    """The face of an enrolment image to store, or the reason none can be."""
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
        foreground = [f for f in faces if f.box.width * f.box.height >= BACKGROUND_FACE_AREA * area]
        if len(foreground) > 1 and not largest:
            raise MultipleFaces(
                f"{len(foreground)} faces in the image: choose one with a face index "
                "(--face-index N / face_index=N) or the largest (--largest / largest=true)",
                faces=len(foreground),
            )
        chosen = faces[0]
    if chosen.quality.grade == "low" and not allow_low_quality:
        raise QualityTooLow(
            "face quality is too low for enrolment (--allow-low-quality / "
            "allow_low_quality=true to enrol it anyway)",
            quality=chosen.quality.grade,
        )
    return chosen
