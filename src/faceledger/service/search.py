"""Searches: detect, identify, find similar, verify, compare and group; each one audited."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faceledger.engine import ImageInput
from faceledger.errors import InvalidArgument, LimitExceeded
from faceledger.ledger.audit import Actor
from faceledger.results import (
    FaceResult,
    GroupedFace,
    GroupResult,
    candidate_names,
    candidates_json,
    check_search_args,
    image_sha256,
    source_name,
)
from faceledger.search import operations
from faceledger.search.ranking import Aggregate, Candidate
from faceledger.service.core import LOCAL_ACTOR, Progress, ServiceCore
from faceledger.types import Comparison, Face, FloatArray


class SearchOps(ServiceCore):
    """1:1 and 1:N searches over a collection, and grouping of unknown faces."""

    def detect(self, image: ImageInput, *, actor: Actor = LOCAL_ACTOR) -> list[Face]:
        """Faces of an image (no embeddings kept); audited without the image."""
        with self.audited(actor, "detect", image_sha256=image_sha256(image)) as work:
            faces = self.engine().detect(image)[: self.settings.max_faces_per_image]
            work.result["faces"] = len(faces)
            return faces

    def identify(
        self,
        collection: str,
        image: ImageInput,
        *,
        top: int = 5,
        max_fmr: float | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        aggregate: Aggregate = "max",
        aligned: bool = False,
        max_fpir: float | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> list[FaceResult]:
        """Every face of the image with its candidate persons, best first.

        Each person is judged at the per-person rate ``max_fmr`` for their number of
        faces; with ``max_fpir`` the rate is derived from that gallery-level target instead
        (the stricter of the two when both are given). Every result carries the gallery's
        rates (persons searched, rate applied, expected FPIR), and the ledger entry records
        them with the model, calibration and threshold. With ``aligned`` the image is an
        already aligned face crop (no detection).
        """
        self.check_purpose(purpose)
        fmr: float | None = None  # only a gallery target: the rate comes from it
        if max_fmr is not None or max_fpir is None:
            fmr = self.max_fmr(max_fmr)
            check_search_args(top, fmr)
        if max_fpir is not None:
            check_search_args(top, 0.5)
            if not 0.0 < max_fpir < 1.0:
                raise InvalidArgument("max_fpir must be in (0, 1)")
        col, engine = self.collection_engine(collection)
        request = {"top": top, "max_fmr": fmr, "max_fpir": max_fpir, "aggregate": aggregate}
        with self.audited(
            actor,
            "identify",
            collection=collection,
            purpose=purpose,
            case_ref=case_ref,
            image_sha256=image_sha256(image),
            request=request,
        ) as work:
            faces = [engine.embed_aligned_face(image)] if aligned else engine.embed(image)
            faces = faces[: self.settings.max_faces_per_image]
            cal = self.calibration_of(col, engine)
            found = operations.identify_gallery(
                self.store,
                col,
                _stack(faces, col.embedding_dim),
                cal,
                top=top,
                max_fmr=fmr,
                max_fpir=max_fpir,
                aggregate=aggregate,
            )
            work.request.update(
                operations.decision_fields(
                    cal, model_id=col.model_id, max_fmr=found.gallery.max_fmr, gallery=found.gallery
                )
            )
            ranked = found.candidates
            results = [FaceResult(f, c, found.gallery) for f, c in zip(faces, ranked, strict=True)]
            ids = work.pseudonyms(collection, candidate_names(ranked))
            work.result["faces"] = [candidates_json(r.candidates, ids) for r in results]
            return results

    def identify_embeddings(
        self,
        collection: str,
        embeddings: FloatArray,
        *,
        top: int = 5,
        max_fmr: float | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        operation: str = "identify.embeddings",
        request: dict[str, Any] | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> list[list[Candidate]]:
        """Identify embeddings ``(q, d)`` of the collection's pack (e.g. one per video track).

        Recorded in the ledger as one entry (``operation``) like any identify.
        """
        self.check_purpose(purpose)
        fmr = self.max_fmr(max_fmr)
        check_search_args(top, fmr)
        col, engine = self.collection_engine(collection)
        queries = np.ascontiguousarray(embeddings, dtype=np.float32).reshape(-1, col.embedding_dim)
        asked = {"queries": int(queries.shape[0]), "top": top, "max_fmr": fmr, **(request or {})}
        with self.audited(
            actor,
            operation,
            collection=collection,
            purpose=purpose,
            case_ref=case_ref,
            request=asked,
        ) as work:
            cal = self.calibration_of(col, engine)
            found = operations.identify_gallery(self.store, col, queries, cal, top=top, max_fmr=fmr)
            work.request.update(
                operations.decision_fields(
                    cal, model_id=col.model_id, max_fmr=fmr, gallery=found.gallery
                )
            )
            ranked = found.candidates
            ids = work.pseudonyms(collection, candidate_names(ranked))
            work.result["queries"] = [candidates_json(c, ids) for c in ranked]
            return ranked

    def similar(
        self,
        collection: str,
        image: ImageInput,
        *,
        mode: operations.SimilarMode = "matchPerson",
        top: int = 20,
        max_fmr: float | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> FaceResult:
        """Faces most like the image's largest face (Azure's Find Similar)."""
        if mode not in ("matchPerson", "matchFace"):
            raise InvalidArgument("mode must be matchPerson or matchFace")
        self.check_purpose(purpose)
        fmr = self.max_fmr(max_fmr)
        check_search_args(top, fmr)
        col, engine = self.collection_engine(collection)
        with self.audited(
            actor,
            "similar",
            collection=collection,
            purpose=purpose,
            case_ref=case_ref,
            image_sha256=image_sha256(image),
            request={"mode": mode, "top": top, "max_fmr": fmr},
        ) as work:
            face = engine.embed_largest(image)
            cal = self.calibration_of(col, engine)
            work.request.update(operations.decision_fields(cal, model_id=col.model_id, max_fmr=fmr))
            found = operations.similar(
                self.store,
                col,
                face.require_embedding(),
                cal,
                mode=mode,
                top=top,
                max_fmr=fmr,
            )
            ids = work.pseudonyms(collection, candidate_names([found]))
            work.result["faces"] = candidates_json(found, ids)
            return FaceResult(face, found)

    def verify(
        self,
        collection: str,
        image: ImageInput,
        person: str,
        *,
        max_fmr: float | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> operations.PersonMatch:
        """Is the image's largest face this enrolled person? Compared with all their faces."""
        self.check_purpose(purpose)
        fmr = self.max_fmr(max_fmr)
        check_search_args(1, fmr)
        col, engine = self.collection_engine(collection)
        with self.audited(
            actor,
            "verify",
            collection=collection,
            purpose=purpose,
            case_ref=case_ref,
            image_sha256=image_sha256(image),
            request={"max_fmr": fmr},
        ) as work:
            work.request["person"] = work.pseudonym(collection, person)
            face = engine.embed_largest(image)
            _, gallery = self.store.face_embeddings(collection, person)
            cal = self.calibration_of(col, engine)
            match = operations.verify_person(
                face.require_embedding(), person, gallery, cal, max_fmr=fmr
            )
            work.request.update(
                operations.decision_fields(
                    cal, model_id=col.model_id, max_fmr=fmr, threshold=match.threshold
                ),
                faces_compared=match.faces_compared,
                aggregate=match.aggregate,
            )
            work.result.update(
                similarity=match.similarity,
                fmr=match.fmr,
                fmr_per_comparison=match.fmr_per_comparison,
                same_person=match.same_person,
            )
            return match

    def compare(
        self,
        a: ImageInput,
        b: ImageInput,
        *,
        max_fmr: float | None = None,
        model: str | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> Comparison:
        """Face-to-face verification of the largest faces of two images."""
        fmr = self.max_fmr(max_fmr)
        request = {"max_fmr": fmr, "other_image_sha256": image_sha256(b)}
        with self.audited(actor, "compare", image_sha256=image_sha256(a), request=request) as work:
            engine = self.engine(model)
            result = engine.compare(a, b, max_fmr=fmr)
            work.request.update(
                operations.decision_fields(
                    engine.pack.require_calibration(),
                    model_id=engine.pack.model_id,
                    max_fmr=fmr,
                    threshold=result.threshold,
                )
            )
            work.result.update(similarity=result.similarity, same_person=result.same_person)
            return result

    def group(
        self,
        images: Sequence[ImageInput] = (),
        *,
        collection: str | None = None,
        max_fmr: float = 1e-3,
        model: str | None = None,
        sources: Sequence[str] | None = None,
        purpose: str | None = None,
        case_ref: str | None = None,
        actor: Actor = LOCAL_ACTOR,
        progress: Progress | None = None,
    ) -> GroupResult:
        """Cluster unknown faces into people plus a messy group of singletons.

        Either every face of ``images`` (two faces of one photo never share a group) or
        every face stored in ``collection``. Grouping a collection discloses its persons'
        names, so it needs a purpose like identify, and the names shown are recorded.
        """
        if collection is not None:
            self.check_purpose(purpose)
        names = (
            list(sources)
            if sources is not None
            else [source_name(im, i) for i, im in enumerate(images)]
        )
        request = {"images": len(images), "max_fmr": max_fmr}
        with self.audited(
            actor,
            "group",
            collection=collection,
            purpose=purpose,
            case_ref=case_ref,
            request=request,
        ) as work:
            refs: list[GroupedFace] = []
            if collection is not None:
                col, engine = self.collection_engine(collection)
                cal = self.calibration_of(col, engine)
                ids, vectors, owners = self.store.collection_embeddings(collection)
                refs = [
                    GroupedFace(image="", face_index=0, box=[], person=p, face_id=int(i))
                    for i, p in zip(ids, owners, strict=True)
                ]
                photo_ids = list(range(len(refs)))
            else:
                engine = self.engine(model)
                cal = engine.pack.require_calibration()
                rows: list[FloatArray] = []
                photo_ids = []
                cap = self.settings.max_group_faces
                for n, faces in enumerate(engine.embed_many(images)):
                    if cap and len(rows) + len(faces) > cap:  # stop before embedding more
                        raise LimitExceeded(
                            f"the images hold more than {cap} faces in all (MAX_GROUP_FACES): "
                            "group fewer images at once",
                            limit=cap,
                        )
                    for k, f in enumerate(faces):
                        rows.append(f.require_embedding())
                        photo_ids.append(n)
                        refs.append(GroupedFace(image=names[n], face_index=k, box=f.box.as_list()))
                    if progress:
                        progress(n + 1, len(images))
                vectors = (
                    np.stack(rows) if rows else np.zeros((0, engine.pack.embedding_dim), np.float32)
                )
            grouping = operations.group(vectors, photo_ids, cal, max_fmr=max_fmr)
            work.request.update(
                model_id=engine.pack.model_id,
                calibration_id=cal.calibration_id,
                threshold=round(grouping.threshold, 5),
                edge_fmr=grouping.edge_fmr,
            )
            result = GroupResult(
                groups=[[refs[i] for i in g] for g in grouping.groups],
                messy_group=[refs[i] for i in grouping.messy_group],
                threshold=round(grouping.threshold, 5),
                max_fmr=max_fmr,
            )
            work.result["groups"] = [len(g) for g in result.groups]
            work.result["messy"] = len(result.messy_group)
            disclosed = sorted(
                {r.person for g in result.groups for r in g if r.person}
                | {r.person for r in result.messy_group if r.person}
            )
            if disclosed and collection is not None:  # only a collection's faces have names
                known = work.pseudonyms(collection, disclosed)
                work.result["persons_disclosed"] = [known[p] for p in disclosed]
            return result


def _stack(faces: Sequence[Face], dim: int) -> FloatArray:
    """The embeddings of embedded faces as ``(n, dim)`` float32."""
    if not faces:
        return np.zeros((0, dim), np.float32)
    return np.stack([f.require_embedding() for f in faces])
