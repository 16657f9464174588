"""Human review of search results, and the console's sessions; every decision audited.

Identify, similar, verify and video indexing results that name a candidate person become
review items (per collection: ``always``, ``above`` a stated false match rate, or
``never``; default ``always``). An item keeps a JPEG crop of the probe face and its
embedding, never the submitted image (a video's item: the person's best face thumbnail,
operation ``video.identify``). A reviewer confirms, rejects ("not this person") or is
unsure; with ``reviewers=2`` an item counts only when a second, different key agrees, and
a disagreement is shown as ``disputed``. A rejected probe face is remembered for that person
and not offered as them again. Items go with the person (erasure), and a decided item's
crop is dropped after the collection's retention (:meth:`ReviewOps.purge_reviews`).

Console sessions: an API key is exchanged for a random session token (only its SHA-256 is
stored) with its own CSRF token; sign-out revokes it server-side; it expires after
``settings.console_session_seconds``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from faceledger.engine import ImageInput
from faceledger.errors import InvalidArgument, Unauthenticated
from faceledger.ledger.audit import Actor
from faceledger.ledger.keys import ApiKey
from faceledger.results import FaceResult, image_sha256
from faceledger.search import operations
from faceledger.search.ranking import Aggregate, Candidate
from faceledger.service.core import LOCAL_ACTOR
from faceledger.service.media import MediaOps
from faceledger.store.repository import now
from faceledger.store.review import DISPUTED, OPEN, ReviewItem, ReviewSettings, ReviewStore
from faceledger.types import Face

if TYPE_CHECKING:
    from faceledger.video import VideoIndex

DECISIONS = {"confirm": "confirmed", "reject": "rejected", "unsure": "unsure"}
MODES = ("always", "above", "never")
SAME_PROBE = 0.95
"""Cosine similarity at which two probe embeddings are the same face (a re-submitted
image gives about 1.0; another photo of the same person stays well below)."""
CROP_MARGIN = 0.25
CROP_SIDE = 160


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A signed-in console session: ``token`` goes into the cookie and is never stored."""

    token: str
    csrf: str
    key: ApiKey
    expires_at: datetime


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Probe:
    """A probe face (embedded, with quality) and the candidates offered for review."""

    face: Face
    candidates: Sequence[Candidate]
    crop: Callable[[], bytes]
    """The JPEG crop stored with its items (made only when one is stored)."""


def offered(rule: ReviewSettings, candidates: Sequence[Candidate]) -> list[Candidate]:
    """The candidates naming an enrolled person that the collection's rule admits."""
    if rule.mode == "never":
        return []
    return [
        c
        for c in candidates
        if c.person_id is not None
        and c.person is not None
        and not (rule.mode == "above" and c.fmr > (rule.max_fmr or 0.0))
    ]


def face_crop(rgb: np.ndarray[Any, Any], box: Sequence[float]) -> bytes:
    """A JPEG of the box (with a margin) cut from an RGB image, at most CROP_SIDE wide."""
    h, w = rgb.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    mx, my = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
    left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
    right, bottom = min(w, int(x2 + mx)), min(h, int(y2 + my))
    img = Image.fromarray(np.ascontiguousarray(rgb[top:bottom, left:right]))
    img.thumbnail((CROP_SIDE, CROP_SIDE))
    out = io.BytesIO()
    img.convert("RGB").save(out, format="JPEG", quality=85)
    return out.getvalue()


class ReviewOps(MediaOps):
    """The review queue over identify, similar, verify and video indexing; console sessions."""

    @property
    def reviews(self) -> ReviewStore:
        return ReviewStore(self.store.engine)

    # -- sessions -----------------------------------------------------------------------
    def sign_in(self, secret: str | None) -> ConsoleSession:
        """Exchange an API key for a console session (audited as ``console.sign_in``)."""
        key = self.keys.authenticate(secret)
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        actor = Actor(key_id=key.id, role=key.role.value, name=key.name)
        ttl = self.settings.console_session_seconds
        with self.audited(actor, "console.sign_in", request={"ttl_seconds": ttl}) as work:
            record = self.reviews.add_session(
                work.tx.conn, _token_hash(token), key.id, csrf, now(), ttl
            )
        return ConsoleSession(token, csrf, key, record.expires_at)

    def console_session(self, token: str | None) -> ConsoleSession:
        """The live session of a cookie's token and its key.

        Raises:
            Unauthenticated: no token, an unknown, signed-out or expired session, or its
                key revoked.
        """
        if not token:
            raise Unauthenticated("sign in first")
        record = self.reviews.session(_token_hash(token), now())
        if record is None:
            raise Unauthenticated("the session has ended: sign in again")
        key = next((k for k in self.keys.list() if k.id == record.key_id), None)
        if key is None or key.revoked_at is not None:
            raise Unauthenticated("the session's key was revoked")
        return ConsoleSession(token, record.csrf, key, record.expires_at)

    def sign_out(self, token: str, *, actor: Actor = LOCAL_ACTOR) -> None:
        """End a session now: its cookie no longer signs anyone in."""
        with self.audited(actor, "console.sign_out") as work:
            work.result["ended"] = self.reviews.revoke_session(
                work.tx.conn, _token_hash(token), now()
            )

    # -- settings -----------------------------------------------------------------------
    def review_settings(self, collection: str) -> ReviewSettings:
        return self.reviews.settings(self.store.get_collection(collection).id)

    def set_review_settings(
        self, collection: str, value: ReviewSettings, *, actor: Actor = LOCAL_ACTOR
    ) -> ReviewSettings:
        """Choose when results become review items and how many reviewers must agree."""
        if value.mode not in MODES:
            raise InvalidArgument(f"review mode must be one of {', '.join(MODES)}")
        if value.mode == "above" and not (value.max_fmr and 0.0 < value.max_fmr < 1.0):
            raise InvalidArgument("review mode 'above' needs max_fmr in (0, 1)")
        if value.reviewers not in (1, 2):
            raise InvalidArgument("reviewers must be 1 or 2")
        if not 0 <= value.retain_days <= 3650:
            raise InvalidArgument("retain_days must be in 0..3650")
        request = {
            "mode": value.mode,
            "max_fmr": value.max_fmr,
            "reviewers": value.reviewers,
            "retain_days": value.retain_days,
        }
        with self.audited(actor, "review.settings", collection=collection, request=request) as work:
            col = self.store.get_collection(collection)
            self.reviews.set_settings(work.tx.conn, col.id, value)
        return value

    # -- searches that queue their candidates ----------------------------------------------
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
        """:meth:`SearchOps.identify`, then its candidates queued for review."""
        results = super().identify(
            collection,
            image,
            top=top,
            max_fmr=max_fmr,
            purpose=purpose,
            case_ref=case_ref,
            aggregate=aggregate,
            aligned=aligned,
            max_fpir=max_fpir,
            actor=actor,
        )
        if not aligned:
            self._queue(collection, "identify", image, [(r.face, r.candidates) for r in results])
        return results

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
        """:meth:`SearchOps.similar`, then its candidate persons queued for review."""
        result = super().similar(
            collection,
            image,
            mode=mode,
            top=top,
            max_fmr=max_fmr,
            purpose=purpose,
            case_ref=case_ref,
            actor=actor,
        )
        self._queue(collection, "similar", image, [(result.face, result.candidates)])
        return result

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
        """:meth:`SearchOps.verify`; a match (same person) is queued for review."""
        match = super().verify(
            collection,
            image,
            person,
            max_fmr=max_fmr,
            purpose=purpose,
            case_ref=case_ref,
            actor=actor,
        )
        if match.same_person and self.review_settings(collection).mode != "never":
            rec = self.store.get_person(collection, person)
            face = self.collection_engine(collection)[1].embed_largest(image)
            cand = Candidate(person, rec.id, -1, match.similarity, match.fmr)
            self._queue(collection, "verify", image, [(face, [cand])])
        return match

    def store_video_index(
        self,
        collection: str,
        index: VideoIndex,
        *,
        file_name: str | Path,
        actor: Actor = LOCAL_ACTOR,
    ) -> int:
        """:meth:`MediaIndexOps.store_video_index`, then each identified person queued for
        review: every stored index (``index_video``, a video job, a Ray cluster's) goes
        through here once."""
        stored = super().store_video_index(collection, index, file_name=file_name, actor=actor)
        self.queue_video_review(collection, index)
        return stored

    def _queue(
        self,
        collection: str,
        operation: str,
        image: ImageInput,
        found: Sequence[tuple[Face, Sequence[Candidate]]],
    ) -> list[int]:
        """Store review items for the named candidates the collection's setting admits."""
        col = self.store.get_collection(collection)
        rule = self.reviews.settings(col.id)
        admitted = [(face, offered(rule, cs)) for face, cs in found]
        if not any(cs for _, cs in admitted):
            return []
        rgb = self.engine(col.model_pack).load(image)
        probes = [
            Probe(face, cs, partial(face_crop, rgb, face.box.as_list())) for face, cs in admitted
        ]
        return self._store_items(col.id, rule, operation, probes, image_sha256(image))

    def queue_video_review(self, collection: str, index: VideoIndex) -> list[int]:
        """Review items for the video's people with named candidates: the probe is the
        person's best face thumbnail, embedded again (no face found in it: no item).

        :meth:`store_video_index` calls it for every stored index.
        """
        col = self.store.get_collection(collection)
        rule = self.reviews.settings(col.id)
        engine = self.collection_engine(collection)[1]
        probes: list[Probe] = []
        for person in index.people:
            candidates = offered(rule, person.candidates)
            if not candidates or not person.thumbnail:
                continue
            crop = base64.b64decode(person.thumbnail)
            faces = engine.embed(crop)
            if faces:  # largest first
                probes.append(Probe(faces[0], candidates, partial(bytes, crop)))
        if not probes:
            return []
        return self._store_items(col.id, rule, "video.identify", probes, index.video_sha256)

    def _store_items(
        self,
        collection_id: int,
        rule: ReviewSettings,
        operation: str,
        probes: Sequence[Probe],
        source_sha256: str | None,
    ) -> list[int]:
        """Store an item per probe and admitted candidate, in one write transaction:
        persons erased since the search are not queued, faces erased since are not linked,
        and a pairing a reviewer rejected is not offered again."""
        added: list[int] = []
        # Not a ledger entry of its own: the search's entry already records these
        # candidates (by pseudonym); each decision on them is an entry.
        with self.store.transaction() as tx:
            at = now()
            # The write lock is held from this first statement: persons and faces found
            # alive here stay so until the commit.
            alive, kept = self.reviews.existing(
                tx.conn,
                {c.person_id for p in probes for c in p.candidates if c.person_id is not None},
                {c.face_id for p in probes for c in p.candidates if c.face_id >= 0},
            )
            for probe in probes:
                face = probe.face
                vector = face.require_embedding().astype(np.float32)
                crop: bytes | None = None
                for cand in probe.candidates:
                    if cand.person_id is None or cand.person_id not in alive:
                        continue
                    rejected = self.reviews.rejected(tx.conn, cand.person_id, vector.size)
                    if rejected.size and float(np.max(rejected @ vector)) >= SAME_PROBE:
                        continue  # "not this person": never offered as them again
                    crop = crop or probe.crop()
                    added.append(
                        self.reviews.add_item(
                            tx.conn,
                            collection_id=collection_id,
                            person_id=cand.person_id,
                            face_id=cand.face_id if cand.face_id in kept else None,
                            operation=operation,
                            similarity=float(cand.similarity),
                            fmr=float(cand.fmr),
                            quality={k: getattr(face.quality, k) for k in face.quality.__slots__},
                            probe_crop=crop,
                            probe_embedding=vector.tobytes(),
                            image_sha256=source_sha256,
                            created_at=at,
                        )
                    )
        return added

    # -- the queue ------------------------------------------------------------------------
    def review_queue(
        self, *, collection: str | None = None, statuses: Sequence[str] = (OPEN, DISPUTED)
    ) -> list[ReviewItem]:
        """Items waiting for a decision (open, or disputed by two reviewers), oldest first."""
        return self.reviews.items(statuses=statuses, collection=collection)

    def review_item(self, item_id: int) -> ReviewItem:
        return self.reviews.item(item_id)

    def review_crop(self, item_id: int) -> bytes | None:
        """The probe crop (JPEG) of an item, or None once erased."""
        return self.reviews.crop(item_id)

    def decide(
        self,
        item_id: int,
        decision: str,
        *,
        note: str | None = None,
        actor: Actor = LOCAL_ACTOR,
    ) -> ReviewItem:
        """Record a reviewer's decision on an item (audited as ``review.decide``).

        Raises:
            InvalidArgument: not confirm, reject or unsure.
            Conflict: this reviewer already decided the item.
            NotFound: no such item.
        """
        if decision not in DECISIONS:
            raise InvalidArgument(f"decision must be one of {', '.join(DECISIONS)}")
        note = (note or "").strip() or None
        if note is not None and len(note) > 2000:
            raise InvalidArgument("a note is at most 2000 characters")
        item = self.reviews.item(item_id)
        reviewer = actor.key_id or actor.name or "local"
        request = {"item": item_id, "decision": decision, "note": note}
        with self.audited(
            actor, "review.decide", collection=item.collection, request=request
        ) as work:
            conn = work.tx.conn
            item = self.reviews.item(item_id, conn)
            work.request["person"] = item.pseudonym
            at = now()
            self.reviews.add_decision(
                conn, item_id, key_id=reviewer, decision=decision, note=note, at=at
            )
            rule = self.reviews.settings(self.store.get_collection(item.collection).id, conn)
            said = {d.decision for d in item.decisions} | {decision}
            count = len(item.decisions) + 1
            if len(said) > 1:
                status = DISPUTED
            elif count >= rule.reviewers:
                status = DECISIONS[decision]
            else:
                status = OPEN  # waiting for the second, independent reviewer
            decided = status not in (OPEN, DISPUTED)
            self.reviews.set_status(
                conn,
                item_id,
                status,
                decided_at=at if decided else None,
                erase_after=at + timedelta(days=rule.retain_days) if decided else None,
            )
            if status == "rejected":
                _, embedding = self.reviews.probe(item_id, conn)
                self.reviews.add_rejection(conn, item.person_id, embedding, at)
            work.result.update(status=status, decisions=count)
            return self.reviews.item(item_id, conn)

    def purge_reviews(
        self,
        *,
        actor: Actor = LOCAL_ACTOR,
        only_if_due: bool = False,
        at: datetime | None = None,
    ) -> int:
        """Drop the probe crops of decided items whose retention has ended by ``at``
        (default now); audited.

        ``only_if_due`` (the retention sweep): when no crop is due, do nothing and record
        nothing, so a sweep every minute does not fill the ledger with empty purges.
        """
        at = at or now()
        if only_if_due and not self.reviews.purge_due(at):
            return 0
        with self.audited(actor, "review.purge") as work:
            work.result["crops_erased"] = erased = self.reviews.purge(work.tx.conn, at)
        return erased

    def face_crop(self, face_id: int) -> tuple[bytes | None, str, str | None]:
        """An enrolled face as a JPEG crop (None unless its collection stores images),
        its collection and its person."""
        data, box, collection, person = self.reviews.face_image(face_id)
        if data is None:
            return None, collection, person
        rgb = self.engine(self.store.get_collection(collection).model_pack).load(data)
        shape = rgb.shape
        return face_crop(rgb, box or [0, 0, shape[1], shape[0]]), collection, person
