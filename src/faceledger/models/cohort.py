"""Cohort normalisation: a similarity corrected by how crowded each face's neighbourhood is.

A *cohort* is a fixed set of faces of calibration identities, none of whom any search
compares with. For a face ``x``, ``m(x)`` is the mean of its ``k`` highest similarities to
the cohort: how close it lies to other people. A comparison of ``a`` and ``b`` scores::

    s' = s - (m(a) + m(b)) / 2

so faces in a crowded region of the embedding space (for the default model, women's faces
more than men's) need a higher raw similarity to match, and one threshold table states
about the same false match rate in every region. It needs no demographic label, only the
cohort's faces, which a calibration carries (float16, hashed into its id).
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from faceledger.errors import InvalidArgument
from faceledger.types import FloatArray

COHORT_K = 200
"""Cohort faces averaged per face: measured on glint by cross-fitting (``eval calibrate
--fair``), 200 evened out false match rates across genders and kept TAR."""
BLOCK = 4096
"""Rows of ``x`` compared with the cohort at a time (bounds the similarity block)."""


@dataclass(frozen=True, eq=False)
class Cohort:
    """Cohort faces ``(n, d)`` (unit rows, float16 values held as float32) and ``k``.

    The values are rounded to float16 on construction, so a calibration fitted from a
    cohort and the same cohort read back from its file give identical scores.
    """

    embeddings: FloatArray
    k: int = COHORT_K
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        x = np.asarray(self.embeddings)
        if x.ndim != 2 or x.shape[0] == 0:
            raise InvalidArgument(f"a cohort needs faces (n, d), got shape {x.shape}")
        if self.k < 1:
            raise InvalidArgument(f"cohort size k must be at least 1, got {self.k}")
        half = np.ascontiguousarray(x, dtype=np.float16)
        faces = half.astype(np.float32)
        faces.flags.writeable = False  # shared by every search of a cached calibration
        object.__setattr__(self, "embeddings", faces)
        object.__setattr__(self, "digest", hashlib.sha256(half.tobytes()).hexdigest())

    @property
    def size(self) -> int:
        return int(self.embeddings.shape[0])

    def means(self, x: FloatArray) -> FloatArray:
        """``m (q,)``: the mean of each row's ``k`` highest similarities to the cohort.

        Costs O(q n d) in blocks of ``BLOCK`` rows. A cohort smaller than ``k`` averages
        all of it.
        """
        rows = np.asarray(x, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.embeddings.shape[1]:
            raise InvalidArgument(
                f"faces of dimension {self.embeddings.shape[1]} expected, got shape {rows.shape}"
            )
        k = min(self.k, self.size)
        out = np.empty(rows.shape[0], dtype=np.float32)
        for start in range(0, rows.shape[0], BLOCK):
            sims = rows[start : start + BLOCK] @ self.embeddings.T
            top = np.partition(sims, self.size - k, axis=1)[:, self.size - k :]
            out[start : start + BLOCK] = top.mean(axis=1)
        return out

    def offsets(self, x: FloatArray) -> FloatArray:
        """``m(x) / 2`` of each row: what normalising subtracts from any score it takes
        part in (``s - m(a)/2 - m(b)/2``)."""
        return np.asarray(self.means(x) / 2, dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        half = self.embeddings.astype(np.float16)
        return {
            "k": self.k,
            "shape": list(half.shape),
            "dtype": "float16",
            "sha256": self.digest,
            "data": base64.b64encode(half.tobytes()).decode("ascii"),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cohort:
        """Read a cohort back, checking its shape and SHA-256.

        Raises:
            InvalidArgument: malformed, or the faces do not match the stated hash.
        """
        try:
            shape = tuple(int(v) for v in data["shape"])
            raw = base64.b64decode(data["data"], validate=True)
            if data.get("dtype") != "float16" or len(shape) != 2:
                raise ValueError("float16 (n, d) expected")
            half = np.frombuffer(raw, dtype=np.float16).reshape(shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"malformed calibration cohort: {exc}") from exc
        cohort = cls(half.astype(np.float32), int(data["k"]))
        if cohort.digest != data.get("sha256"):
            raise InvalidArgument("calibration cohort does not match its SHA-256")
        return cohort


def shifted(embeddings: FloatArray, offsets: FloatArray) -> FloatArray:
    """Similarities ``(n, n)`` of every pair of rows, each less both rows' ``offsets``."""
    sims = embeddings @ embeddings.T
    return np.asarray(sims - offsets[:, None] - offsets[None, :], dtype=np.float32)
