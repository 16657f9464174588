"""Database connections: SQLite in WAL mode with immediate write locks, and migrations."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.pool import QueuePool

from faceledger.errors import StoreError

DB_FILE = "faceledger.db"
BUSY_TIMEOUT_MS = 60_000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def _configure_sqlite(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (the driver's implicit BEGIN is
    # DEFERRED, which turns concurrent read-then-write transactions into lock errors).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")  # a commit that returned survives power loss
    cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    # Deleted rows (embeddings, stored images, names) are overwritten with zeros in the
    # database file, not just unlinked: erasure must leave nothing on the disk.
    cur.execute("PRAGMA secure_delete=ON")
    cur.close()


def _begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def open_database(url_or_dir: str | Path) -> Engine:
    """An engine on ``DIR/faceledger.db`` (or a SQLAlchemy URL), migrated to the latest schema."""
    url = str(url_or_dir)
    if "://" not in url:
        directory = Path(url_or_dir)
        directory.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{directory / DB_FILE}"
    try:
        if url.startswith("sqlite"):
            engine = create_engine(
                url, poolclass=QueuePool, pool_size=8, max_overflow=16, connect_args={"timeout": 60}
            )
            event.listen(engine, "connect", _configure_sqlite)
            event.listen(engine, "begin", _begin)
        else:
            engine = create_engine(url, pool_pre_ping=True)
        migrate(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot open the database: {exc}") from exc
    return engine


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (no-op when it is current)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    heads = set(ScriptDirectory.from_config(cfg).get_heads())
    with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
        if set(MigrationContext.configure(conn).get_current_heads()) == heads:
            return
        cfg.attributes["connection"] = conn
        # "heads": features developed side by side may each add a migration after the same
        # revision; every branch is applied (their tables are independent by rule).
        command.upgrade(cfg, "heads")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding SQLite's write lock from its first statement (BEGIN IMMEDIATE)."""
    try:
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            yield conn
    except OperationalError as exc:
        raise StoreError(f"database write failed: {exc.orig}") from exc


def flush_log(engine: Engine, *, attempts: int = 20) -> bool:
    """Move SQLite's write-ahead log into the database file and truncate it to zero bytes.

    After an erasure the WAL still holds older copies of the pages that held the erased
    rows; the checkpoint writes the (zeroed) latest pages into the database and empties
    the log. A reader holding an old snapshot can delay it: retried ``attempts`` times.
    Returns whether the log is empty (always true for other databases).
    """
    if engine.dialect.name != "sqlite":
        return True
    for attempt in range(attempts):
        with engine.connect() as conn:
            busy, _, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        if not busy:
            return True
        time.sleep(0.05 * (attempt + 1))
    return False


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only snapshot transaction."""
    try:
        with engine.connect() as conn, conn.begin():
            yield conn
    except OperationalError as exc:
        raise StoreError(f"database read failed: {exc.orig}") from exc
