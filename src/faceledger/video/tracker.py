"""Face tracking across sampled frames: box overlap plus embedding similarity.

An online tracker in the style of SORT and ByteTrack (with BoT-SORT's appearance cue):
each track predicts its box with a constant-velocity model; confident detections are
matched to tracks by the Hungarian algorithm on a cost mixing box IoU and embedding
similarity; less confident detections then extend the remaining tracks by IoU alone; a
detection whose embedding is very close to a recently lost track re-attaches to it even
without overlap. A track ends when it has been lost for ``max_lost`` seconds (time, not
frame counts, so the behaviour does not change with the sampling rate). Pure maths: boxes
and embeddings in, track ids out. :func:`link_tracks` then joins tracks of the same
person across the whole video, and :class:`TrackSummary` keeps what each track needs for
that: its sighting times, best embeddings and best face crop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from faceledger.errors import InvalidArgument
from faceledger.types import Box, Face, FloatArray, UInt8Image

INFEASIBLE = 1e6
VELOCITY_SMOOTHING = 0.6
EMBEDDING_MOMENTUM = 0.8
THUMBNAIL_SIDE = 160
MAX_PREDICTION = 0.5
"""Seconds of motion extrapolated at most (a lost track's box stops moving after this)."""


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Intersection over union ``(n, m)`` of boxes ``a (n, 4)`` and ``b (m, 4)`` (x1 y1 x2 y2)."""
    if a.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros((a.shape[0], b.shape[0]), dtype=np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.asarray(np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0), np.float32)


def center_distance(a: FloatArray, b: FloatArray) -> FloatArray:
    """Centre distances ``(n, m)`` in units of the larger of the two box sizes."""
    ca = (a[:, None, 0:2] + a[:, None, 2:4]) / 2
    cb = (b[None, :, 0:2] + b[None, :, 2:4]) / 2
    size_a = np.maximum(a[:, 2] - a[:, 0], a[:, 3] - a[:, 1])
    size_b = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    scale = np.maximum(size_a[:, None], size_b[None, :])
    return np.asarray(np.linalg.norm(ca - cb, axis=-1) / np.maximum(scale, 1e-6), np.float32)


def match(cost: FloatArray, *, max_cost: float) -> list[tuple[int, int]]:
    """Minimum-cost pairs ``(row, col)`` whose cost is at most ``max_cost``."""
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] <= max_cost]


@dataclass(frozen=True, slots=True)
class TrackerOptions:
    """Association thresholds; similarities are cosine similarities of the pack's embeddings."""

    same_face: float
    """Similarity above which two faces are taken to be one person (a low false match rate)."""
    different_face: float
    """Similarity below which two faces are taken to be different people."""
    high_score: float = 0.6
    """Detections at least this confident start tracks; weaker ones only extend them."""
    min_iou: float = 0.2
    max_speed: float = 12.0
    """Fastest face motion (face sizes per second) an appearance-only re-attachment allows."""
    min_jump: float = 1.5
    """Centre displacement (face sizes) an appearance-only re-attachment always allows."""
    max_lost: float = 1.5
    """Seconds a track may go unseen before it ends."""

    def __post_init__(self) -> None:
        if not self.different_face < self.same_face:
            raise InvalidArgument("different_face must be below same_face")
        if self.max_lost <= 0:
            raise InvalidArgument("max_lost must be positive")


@dataclass(slots=True)
class _Track:
    id: int
    box: FloatArray
    time: float
    embedding: FloatArray | None
    velocity: FloatArray = field(default_factory=lambda: np.zeros(4, np.float32))

    def predict(self, t: float) -> FloatArray:
        """The box expected at ``t`` under constant velocity."""
        dt = min(max(t - self.time, 0.0), MAX_PREDICTION)
        return np.asarray(self.box + self.velocity * dt, np.float32)

    def update(self, t: float, box: FloatArray, embedding: FloatArray | None) -> None:
        """Move to a matched detection; smooth the velocity and the embedding."""
        dt = t - self.time
        missed = center_distance(self.predict(t)[None], box[None])[0, 0] > 1.0
        if missed and self.velocity.any():  # re-attached by appearance (a cut, a turn)
            self.velocity = np.zeros(4, np.float32)
        elif dt > 0:
            velocity = (box - self.box) / dt
            self.velocity = np.asarray(
                VELOCITY_SMOOTHING * self.velocity + (1 - VELOCITY_SMOOTHING) * velocity,
                np.float32,
            )
        self.box, self.time = box, t
        if embedding is not None:
            if self.embedding is None:
                self.embedding = embedding
            else:
                mixed = EMBEDDING_MOMENTUM * self.embedding + (1 - EMBEDDING_MOMENTUM) * embedding
                self.embedding = np.asarray(mixed / max(np.linalg.norm(mixed), 1e-9), np.float32)


class FaceTracker:
    """Links the faces of successive sampled frames into tracks with stable integer ids."""

    def __init__(self, options: TrackerOptions) -> None:
        self.options = options
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._last_time = -np.inf

    @property
    def active(self) -> list[int]:
        """Ids of the tracks still alive (seen within ``max_lost``)."""
        return [t.id for t in self._tracks]

    def update(
        self,
        time: float,
        boxes: FloatArray,
        scores: FloatArray,
        embeddings: FloatArray | None = None,
    ) -> list[int]:
        """Assign each detection of the frame at ``time`` a track id (-1: not tracked).

        Args:
            time: seconds; must not decrease between calls.
            boxes: ``(n, 4)`` float32, x1 y1 x2 y2 in one frame's pixel coordinates.
            scores: ``(n,)`` detector confidences.
            embeddings: ``(n, d)`` float32, L2-normalised, or None (box overlap only).
        """
        n = boxes.shape[0]
        if boxes.shape != (n, 4) or scores.shape != (n,):
            raise InvalidArgument("boxes must be (n, 4) and scores (n,)")
        if embeddings is not None and embeddings.shape[0] != n:
            raise InvalidArgument("embeddings must have one row per box")
        if time < self._last_time:
            raise InvalidArgument("frame times must not decrease")
        previous, self._last_time = self._last_time, time
        opts = self.options
        self._tracks = [t for t in self._tracks if time - t.time <= opts.max_lost]
        ids = [-1] * n
        strong = [i for i in range(n) if scores[i] >= opts.high_score]
        weak = [i for i in range(n) if scores[i] < opts.high_score]
        free = list(range(len(self._tracks)))
        # Stage 1: confident detections against every live track, motion plus appearance.
        pairs = self._associate(time, free, strong, boxes, embeddings, appearance=True)
        for ti, di in pairs:
            self._assign(ti, di, time, boxes, embeddings, ids)
        matched = {ti for ti, _ in pairs}
        free = [ti for ti in free if ti not in matched]
        # Stage 2 (ByteTrack): weak detections extend the tracks seen in the previous frame
        # that are still unmatched, by overlap (appearance only vetoes).
        free = [ti for ti in free if self._tracks[ti].time == previous]
        pairs = self._associate(time, free, weak, boxes, embeddings, appearance=False)
        for ti, di in pairs:
            self._assign(ti, di, time, boxes, embeddings, ids)
        for di in strong:
            if ids[di] == -1:
                emb = None if embeddings is None else embeddings[di]
                track = _Track(self._next_id, boxes[di].astype(np.float32), time, emb)
                self._next_id += 1
                self._tracks.append(track)
                ids[di] = track.id
        return ids

    def _associate(
        self,
        time: float,
        tracks: list[int],
        dets: list[int],
        boxes: FloatArray,
        embeddings: FloatArray | None,
        *,
        appearance: bool,
    ) -> list[tuple[int, int]]:
        if not tracks or not dets:
            return []
        opts = self.options
        predicted = np.stack([self._tracks[t].predict(time) for t in tracks])
        det_boxes = boxes[dets].astype(np.float32)
        iou = iou_matrix(predicted, det_boxes)
        cost = np.where(iou >= opts.min_iou, 1.0 - iou, INFEASIBLE).astype(np.float32)
        if embeddings is None:
            return self._match(cost, tracks, dets)
        sims = np.full((len(tracks), len(dets)), np.nan, np.float32)
        for r, t in enumerate(tracks):
            emb = self._tracks[t].embedding
            if emb is not None:
                sims[r] = embeddings[dets] @ emb
        known, sim = ~np.isnan(sims), np.nan_to_num(sims)
        if appearance:
            span = opts.same_face - opts.different_face
            closeness = np.clip((sim - opts.different_face) / span, 0.0, 1.0)
            cost = np.where(known & (iou >= opts.min_iou), 1.0 - (iou + closeness) / 2.0, cost)
            # A near-certain appearance match re-attaches a track without overlap.
            elapsed = np.array([time - self._tracks[t].time for t in tracks], np.float32)
            reach = np.maximum(opts.min_jump, opts.max_speed * elapsed)[:, None]
            near = center_distance(predicted, det_boxes) <= reach
            rejoin = known & near & (sim >= opts.same_face) & (iou < opts.min_iou)
            cost = np.where(rejoin, 1.0 - closeness / 2.0, cost)
        # Faces that clearly belong to different people never share a track.
        cost = np.where(known & (sim < opts.different_face), INFEASIBLE, cost)
        return self._match(cost, tracks, dets)

    @staticmethod
    def _match(cost: FloatArray, tracks: list[int], dets: list[int]) -> list[tuple[int, int]]:
        pairs = match(cost, max_cost=INFEASIBLE / 2)
        return [(tracks[r], dets[c]) for r, c in pairs]

    def _assign(
        self,
        track_index: int,
        det: int,
        time: float,
        boxes: FloatArray,
        embeddings: FloatArray | None,
        ids: list[int],
    ) -> None:
        track = self._tracks[track_index]
        track.update(
            time, boxes[det].astype(np.float32), None if embeddings is None else embeddings[det]
        )
        ids[det] = track.id


def link_tracks(
    templates: FloatArray,
    frames: list[set[int]],
    identities: list[str | None],
    *,
    threshold: float,
) -> list[list[int]]:
    """Group tracks into people across the whole video (offline, after tracking).

    Tracks identified as the same enrolled person start as one group; groups then merge by
    average-linkage agglomeration while their mean pairwise similarity reaches
    ``threshold``. Two groups never merge when they share a frame (one person cannot be
    two faces at once) or carry different identities. Deterministic; O(n^3) in tracks.

    Args:
        templates: ``(n, d)`` float32, L2-normalised, one per track.
        frames: the sampled frame indices of each track.
        identities: each track's enrolled person, or None when unidentified.
        threshold: similarity needed to merge (from the pack's calibration).

    Returns:
        Groups of track indices, each sorted, ordered by their first track.
    """
    n = templates.shape[0]
    if len(frames) != n or len(identities) != n:
        raise InvalidArgument("templates, frames and identities must have one entry per track")
    if n == 0:
        return []
    groups: list[list[int]] = []
    by_name: dict[str, int] = {}
    for i, name in enumerate(identities):
        if name is not None and name in by_name:
            groups[by_name[name]].append(i)
            continue
        if name is not None:
            by_name[name] = len(groups)
        groups.append([i])
    k = len(groups)
    sims = (templates @ templates.T).astype(np.float64)
    member = np.zeros((k, n), np.float64)
    for g, tracks in enumerate(groups):
        member[g, tracks] = 1.0
    total = member @ sims @ member.T
    size = member.sum(axis=1)
    seen = [set().union(*(frames[t] for t in tracks)) for tracks in groups]
    names = [identities[tracks[0]] for tracks in groups]
    blocked = np.zeros((k, k), bool)
    for a in range(k):
        for b in range(a + 1, k):
            clash = bool(seen[a] & seen[b]) or (names[a] is not None and names[b] is not None)
            blocked[a, b] = blocked[b, a] = clash
    alive = np.ones(k, bool)
    np.fill_diagonal(blocked, True)
    while True:
        average = total / np.outer(size, size)
        mask = blocked | ~alive[:, None] | ~alive[None, :]
        average[mask] = -np.inf
        best = np.unravel_index(int(np.argmax(average)), average.shape)
        a, b = int(best[0]), int(best[1])
        if average[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        groups[a] = sorted(groups[a] + groups[b])
        total[a, :] += total[b, :]
        total[:, a] += total[:, b]
        size[a] += size[b]
        blocked[a, :] |= blocked[b, :]
        blocked[:, a] |= blocked[:, b]
        blocked[a, a] = True
        alive[b] = False
        if names[a] is None:
            names[a] = names[b]
    return sorted((groups[g] for g in range(k) if alive[g]), key=lambda g: g[0])


def face_quality(face: Face) -> float:
    """How useful a face is for recognition, 0..1: size, sharpness, exposure, frontal pose."""
    q = face.quality
    size = min(1.0, q.face_size / 96.0)
    yaw, pitch = np.radians(min(abs(q.yaw), 90.0)), np.radians(min(abs(q.pitch), 90.0))
    pose = float(np.cos(yaw) * np.cos(pitch))
    return size * (0.3 + 0.7 * q.sharpness) * (0.3 + 0.7 * q.exposure) * pose * face.score


def face_crop(image: UInt8Image, box: Box, *, side: int = THUMBNAIL_SIDE) -> UInt8Image:
    """The face with a quarter of its size as margin, scaled to at most ``side`` pixels."""
    h, w = image.shape[:2]
    pad = 0.25 * max(box.width, box.height)
    x1, y1 = max(0, int(box.x1 - pad)), max(0, int(box.y1 - pad))
    x2, y2 = min(w, int(box.x2 + pad)), min(h, int(box.y2 + pad))
    crop = image[y1:y2, x1:x2] if x2 > x1 and y2 > y1 else image
    longest = max(crop.shape[:2])
    if longest > side:
        f = side / longest
        size = (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
        crop = np.asarray(cv2.resize(crop, size, interpolation=cv2.INTER_AREA), np.uint8)
    return np.ascontiguousarray(crop, dtype=np.uint8)


@dataclass(slots=True)
class TrackSummary:
    """What is kept of a track while the video plays: its sightings and its best faces."""

    keep: int = 5
    frames: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    best: list[tuple[float, FloatArray]] = field(default_factory=list)
    sizes: list[float] = field(default_factory=list)
    """Shorter box side of each face seen (pixels of the analysed frames)."""
    crop: UInt8Image | None = None
    """The best face with some margin, at most 160 pixels (RGB)."""
    crop_quality: float = -1.0
    crop_time: float = 0.0
    crop_box: list[float] = field(default_factory=list)
    """The best face's box in source pixels."""

    def add(self, index: int, time: float, face: Face, image: UInt8Image, scale: float) -> None:
        """Record a sighting in sampled frame ``index`` (``scale``: image px per source px)."""
        if face.embedding is None:
            raise InvalidArgument("tracked faces need embeddings")
        q = face_quality(face)
        self.frames.append(index)
        self.times.append(time)
        self.sizes.append(min(face.box.width, face.box.height))
        self.best.append((q, face.embedding))
        self.best.sort(key=lambda item: -item[0])
        del self.best[self.keep :]
        if q > self.crop_quality:
            self.crop, self.crop_quality, self.crop_time = face_crop(image, face.box), q, time
            self.crop_box = [round(v / scale, 1) for v in face.box.as_list()]

    @property
    def size(self) -> float:
        """The track's typical face size: the 75th percentile (robust to the sampling rate)."""
        return float(np.percentile(self.sizes, 75)) if self.sizes else 0.0

    def template(self) -> FloatArray:
        """The mean embedding ``(d,)`` of the best faces, L2-normalised."""
        mean = np.mean([e for _, e in self.best], axis=0)
        return np.asarray(mean / max(float(np.linalg.norm(mean)), 1e-9), np.float32)
