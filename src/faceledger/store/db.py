"""Database connections: SQLite in WAL mode with immediate write locks, or PostgreSQL; migrations.

SQLite (``DIR/faceledger.db``) is the embedded default. A ``postgresql+psycopg://`` URL
puts the store on PostgreSQL, shared by many service replicas. The two behave alike for
the code above: a write transaction holds the one database-wide write lock from its first
statement (SQLite's ``BEGIN IMMEDIATE``; on PostgreSQL a transaction-scoped advisory lock,
:data:`WRITE_LOCK`), so writes of all processes and replicas are serialised, the change
log's and the ledger's sequence numbers follow commit order, and a read transaction is a
snapshot (PostgreSQL: ``REPEATABLE READ``).
"""

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
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import GenericFunction

from faceledger.errors import StoreError

DB_FILE = "faceledger.db"
BUSY_TIMEOUT_MS = 60_000
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
WRITE_LOCK = 0x66616365  # "face": the advisory lock every PostgreSQL write transaction takes
RETENTION_LOCK = 0x72657465  # "rete": held by the one retention sweep running at a time
CHANGES_CHANNEL = "faceledger_changes"
"""PostgreSQL NOTIFY channel: a commit that changed vectors wakes the other replicas."""


class greatest(GenericFunction[Any]):
    """The larger of two values: ``max(a, b)`` on SQLite, ``greatest(a, b)`` elsewhere."""

    name = "greatest"
    inherit_cache = True


@compiles(greatest, "sqlite")
def _greatest_sqlite(element: greatest, compiler: SQLCompiler, **kw: Any) -> str:
    return f"max({compiler.process(element.clauses, **kw)})"


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


def _configure_postgres(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # A writer waiting for the write lock gives up as SQLite's busy timeout does.
    cur.execute(f"SET lock_timeout = {BUSY_TIMEOUT_MS}")
    cur.close()
    dbapi_conn.commit()


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
            engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16)
            if engine.dialect.name == "postgresql":
                event.listen(engine, "connect", _configure_postgres)
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
        lock_for_writing(conn)  # replicas starting together migrate one after the other
        if set(MigrationContext.configure(conn).get_current_heads()) == heads:
            return
        cfg.attributes["connection"] = conn
        # "heads": features developed side by side may each add a migration after the same
        # revision; every branch is applied (their tables are independent by rule).
        command.upgrade(cfg, "heads")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction holding the database's write lock from its first statement.

    SQLite: ``BEGIN IMMEDIATE``. PostgreSQL: :data:`WRITE_LOCK`, an advisory lock released
    at commit or rollback, so writers of every replica are serialised as on SQLite.
    """
    try:
        with engine.connect().execution_options(sqlite_begin="IMMEDIATE") as conn, conn.begin():
            lock_for_writing(conn)
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


def lock_for_writing(conn: Connection) -> None:
    """Take the database-wide write lock for the rest of ``conn``'s transaction.

    A no-op on SQLite, whose write transactions begin holding it. On PostgreSQL taking it
    again in the same transaction is harmless (callers such as the ledger's append take it
    themselves, so their correctness does not rest on how the transaction was opened).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK})


@contextmanager
def exclusive(engine: Engine, key: int) -> Iterator[bool]:
    """Hold advisory lock ``key`` for the block if no other session holds it.

    Yields whether this process got it (work that must run once at a time across replicas,
    such as the retention sweep, skips its round otherwise). On SQLite always True: one
    data folder's processes share no such lock, and erasing twice is harmless there.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    with engine.connect() as conn:
        got = bool(conn.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}))
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()


def try_lock(conn: Connection, key: int) -> bool:
    """Take advisory lock ``key`` for ``conn``'s transaction unless a session holds it
    (PostgreSQL); always True on SQLite."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": key}))


def notify_changes(conn: Connection, collection_id: int) -> None:
    """Wake the replicas listening on :data:`CHANGES_CHANNEL` once ``conn`` commits.

    PostgreSQL delivers the notification only if and when the transaction commits; a no-op
    on SQLite (its processes catch up before each search).
    """
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_notify(:c, :p)"), {"c": CHANGES_CHANNEL, "p": str(collection_id)}
        )


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only snapshot transaction."""
    try:
        conn_cm = engine.connect()
        if engine.dialect.name == "postgresql":
            conn_cm = conn_cm.execution_options(isolation_level="REPEATABLE READ")
        with conn_cm as conn, conn.begin():
            yield conn
    except OperationalError as exc:
        raise StoreError(f"database read failed: {exc.orig}") from exc
