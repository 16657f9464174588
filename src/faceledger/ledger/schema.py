"""SQL tables of the ledger: audit entries and API keys (created by the same migrations)."""

from __future__ import annotations

from sqlalchemy import JSON, Column, DateTime, Integer, String, Table, Text

from faceledger.store.schema import metadata

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("ts", String(40), nullable=False),
    Column("key_id", String(64), nullable=True),
    Column("role", String(32), nullable=True),
    Column("actor", String(256), nullable=True),
    Column("operation", String(64), nullable=False),
    Column("collection", String(128), nullable=True),
    Column("purpose", Text, nullable=True),
    Column("case_ref", String(256), nullable=True),
    Column("image_sha256", String(64), nullable=True),
    Column("request", JSON, nullable=False),
    Column("result", JSON, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("entry_hash", String(64), nullable=False),
    Column("seal", String(64), nullable=False),
    sqlite_autoincrement=True,
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("role", String(32), nullable=False),
    Column("name", String(256), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)
