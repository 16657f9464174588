"""Token buckets in PostgreSQL, so that replicas share one rate limit per key.

One row per bucket (``rate_buckets``); taking a token is one ``INSERT ... ON CONFLICT
DO UPDATE`` in its own short transaction, outside the store's write lock, timed by the
database's clock (replicas' clocks may differ). The row lock orders concurrent takers of
one bucket; different buckets never wait for each other.
"""

from __future__ import annotations

from sqlalchemy import Engine, text

_TAKE = text(
    """
    INSERT INTO rate_buckets AS b (key, tokens, updated, allowed)
    VALUES (:key, :burst - 1, extract(epoch FROM clock_timestamp()), true)
    ON CONFLICT (key) DO UPDATE SET
        allowed = least(:burst, b.tokens + greatest(0, extract(epoch FROM clock_timestamp())
                  - b.updated) * :rate) >= 1,
        tokens = least(:burst, b.tokens + greatest(0, extract(epoch FROM clock_timestamp())
                 - b.updated) * :rate)
                 - CASE WHEN least(:burst, b.tokens + greatest(0, extract(epoch FROM
                   clock_timestamp()) - b.updated) * :rate) >= 1 THEN 1 ELSE 0 END,
        updated = extract(epoch FROM clock_timestamp())
    RETURNING allowed, tokens
    """
)


def take_token(engine: Engine, key: str, *, rate: float, burst: int) -> float:
    """Take one token of ``key``'s bucket: 0.0 if taken, else the seconds until one is due."""
    with engine.begin() as conn:
        row = conn.execute(_TAKE, {"key": key, "rate": rate, "burst": burst}).one()
    allowed, tokens = bool(row[0]), float(row[1])
    return 0.0 if allowed else (1.0 - tokens) / rate
