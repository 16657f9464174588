"""A compact map from int64 keys (face ids) to int64 slots, shared by the index kinds."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from faceledger.errors import StoreError
from faceledger.index.base import IdArray


class IdMap:
    """int64 key -> int64 slot, about 16 bytes per key (a Python dict costs ~100).

    Keys live in a sorted array (looked up with ``searchsorted``, O(log n)) plus a small dict
    of recent inserts that is merged in, O(n log n), once it exceeds 1/8 of the array, so
    inserts cost O(log n) amortised. Removed keys keep a ``-1`` slot until the next merge.
    """

    def __init__(self) -> None:
        self._keys: IdArray = np.empty(0, dtype=np.int64)
        self._vals: IdArray = np.empty(0, dtype=np.int64)
        self._recent: dict[int, int] = {}
        self._dead = 0

    @classmethod
    def from_arrays(cls, keys: IdArray, vals: IdArray) -> IdMap:
        """A map from unique ``keys`` to ``vals``; O(n log n)."""
        m = cls()
        order = np.argsort(keys, kind="stable")
        m._keys = np.ascontiguousarray(keys[order], dtype=np.int64)
        m._vals = np.ascontiguousarray(vals[order], dtype=np.int64)
        if m._keys.shape[0] > 1 and bool(np.any(m._keys[1:] == m._keys[:-1])):
            raise StoreError("duplicate ids in index data")
        return m

    def __len__(self) -> int:
        return int(self._keys.shape[0]) - self._dead + len(self._recent)

    @property
    def nbytes(self) -> int:
        return self._keys.nbytes + self._vals.nbytes + 100 * len(self._recent)

    def _base_pos(self, keys: IdArray) -> tuple[IdArray, npt.NDArray[np.bool_]]:
        pos = np.searchsorted(self._keys, keys).astype(np.int64)
        hit = pos < self._keys.shape[0]
        hit[hit] = self._keys[pos[hit]] == keys[hit]
        return pos, hit

    def get(self, keys: IdArray) -> IdArray:
        """Slots of ``keys`` (``-1`` where absent)."""
        out = np.full(keys.shape[0], -1, dtype=np.int64)
        if self._keys.shape[0]:
            pos, hit = self._base_pos(keys)
            out[hit] = self._vals[pos[hit]]
        if self._recent:
            for i in np.flatnonzero(out < 0).tolist():
                out[i] = self._recent.get(int(keys[i]), -1)
        return out

    def get_one(self, key: int) -> int:
        return int(self.get(np.array([key], dtype=np.int64))[0])

    def set(self, keys: IdArray, slots: IdArray) -> None:
        """Map each of the unique ``keys`` to its slot (insert or overwrite)."""
        rest = keys
        if self._keys.shape[0]:
            pos, hit = self._base_pos(keys)
            self._dead -= int(np.count_nonzero(self._vals[pos[hit]] < 0))
            self._vals[pos[hit]] = slots[hit]
            rest, slots = keys[~hit], slots[~hit]
        self._recent.update(zip(rest.tolist(), slots.tolist(), strict=True))
        self._maybe_merge()

    def pop(self, keys: IdArray) -> IdArray:
        """Remove ``keys``; returns their former slots (``-1`` where absent)."""
        out = np.full(keys.shape[0], -1, dtype=np.int64)
        if self._keys.shape[0]:
            pos, hit = self._base_pos(keys)
            out[hit] = self._vals[pos[hit]]
            self._vals[pos[hit]] = -1
            self._dead += int(np.count_nonzero(out[hit] >= 0))
        if self._recent:
            for i in np.flatnonzero(out < 0).tolist():
                out[i] = self._recent.pop(int(keys[i]), -1)
        self._maybe_merge()
        return out

    def _maybe_merge(self) -> None:
        n = self._keys.shape[0]
        if len(self._recent) <= max(1024, n >> 3) and self._dead <= max(1024, n >> 1):
            return
        live = self._vals >= 0
        keys = np.concatenate([self._keys[live], np.fromiter(self._recent, np.int64)])
        vals = np.concatenate([self._vals[live], np.fromiter(self._recent.values(), np.int64)])
        merged = IdMap.from_arrays(keys, vals)
        self._keys, self._vals, self._recent, self._dead = merged._keys, merged._vals, {}, 0
