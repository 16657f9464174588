"""Rate limits: per process on SQLite, one bucket per key for every replica on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faceledger.api.app import ADMIN_KEY_FILE, create_app
from faceledger.config import Settings
from faceledger.errors import RateLimited
from faceledger.service import FaceService
from faceledger.service.ratelimit import RateLimiter
from tests.pg import PostgresServer


def _taken(limiter: RateLimiter, key: str, tries: int) -> int:
    taken = 0
    for _ in range(tries):
        try:
            limiter.check(key)
            taken += 1
        except RateLimited as exc:
            assert int(exc.detail["retry_after"]) >= 1
    return taken


def test_replicas_of_one_postgresql_share_each_keys_bucket(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    # #13: with N replicas a key was allowed N times its rate (buckets were per process)
    url = postgres.new_database()
    FaceService(Settings(data=tmp_path / "d", db_url=url)).close()  # migrates
    import sqlalchemy

    engines = [sqlalchemy.create_engine(url) for _ in range(2)]
    a, b = (RateLimiter(rate=0.01, burst=10, shared=e) for e in engines)
    assert _taken(a, "key-1", 6) == 6
    assert _taken(b, "key-1", 6) == 4  # replica B sees what A took
    assert _taken(a, "key-1", 1) == 0
    assert _taken(b, "key-2", 3) == 3  # other keys have their own buckets
    # many threads of both replicas at once never take more than the bucket holds
    c = RateLimiter(rate=0.01, burst=20, shared=engines[0])
    d = RateLimiter(rate=0.01, burst=20, shared=engines[1])
    counts: list[int] = []
    threads = [
        threading.Thread(target=lambda lim=lim: counts.append(_taken(lim, "key-3", 10)))
        for lim in (c, d, c, d)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 20
    for e in engines:
        e.dispose()


def test_sqlite_keeps_buckets_in_its_one_process() -> None:
    a, b = RateLimiter(rate=0.01, burst=3), RateLimiter(rate=0.01, burst=3)
    assert _taken(a, "k", 5) == 3 and _taken(b, "k", 5) == 3
    assert RateLimiter(rate=0, burst=0).check("k") is None  # 0 turns limiting off


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_the_app_shares_buckets_exactly_on_postgresql(
    store: str, postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.new_database() if store == "postgres" else None
    settings = Settings(data=tmp_path / "d", db_url=url, rate_limit=0.01, rate_burst=2)
    with TestClient(create_app(settings)) as client:
        key = (tmp_path / "d" / ADMIN_KEY_FILE).read_text().strip()
        limiter: RateLimiter = client.app.state.limiter  # type: ignore[attr-defined]
        assert (limiter.shared is not None) == (store == "postgres")
        answers = [client.get("/v1/collections", headers={"X-API-Key": key}) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
