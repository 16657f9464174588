"""Per-key rate limiting: a token bucket per API key or client address (429 + Retry-After).

One process (SQLite) keeps its buckets in memory: a dict of two floats per key under a
lock, written here because the `limits` package's memory storage has no token bucket
(only fixed and moving windows, which would change the documented burst behaviour) and
none of its storages is PostgreSQL. Replicas of one PostgreSQL store share theirs in the
database (:mod:`faceledger.store.ratelimits`), so N replicas allow a key what one does,
not N times as much. The service builds it (:meth:`ServiceCore.rate_limiter`); the HTTP
front only asks it for a token.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from faceledger.errors import RateLimited
from faceledger.store.ratelimits import take_token


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """``rate`` requests per second per key, with bursts up to ``burst``; with ``shared``
    (a PostgreSQL engine) the buckets live in that database."""

    def __init__(self, *, rate: float, burst: int, shared: Engine | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self.shared = shared
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        """Take one token for ``key_id`` or raise RateLimited with ``retry_after`` seconds."""
        if self.rate <= 0:
            return
        wait = self._take_shared(key_id) if self.shared is not None else self._take(key_id)
        if wait > 0:
            raise RateLimited(
                "rate limit exceeded for this key", retry_after=max(1, math.ceil(wait))
            )

    def _take_shared(self, key_id: str) -> float:
        assert self.shared is not None
        return take_token(self.shared, key_id[:300], rate=self.rate, burst=self.burst)

    def _take(self, key_id: str) -> float:
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(key_id, _Bucket(float(self.burst), now))
            bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / self.rate
