"""The ledger's tables: entries and keys live in :mod:`faceledger.store.schema`; checkpoints here.

The checkpoint tables join the same metadata; migration 0003 creates them.
"""

from sqlalchemy import Column, Integer, String, Table, Text

from faceledger.store.schema import api_keys, audit_log, metadata

__all__ = ["api_keys", "audit_checkpoints", "audit_log", "audit_witnesses"]

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tree_size", Integer, nullable=False),
    Column("root_hash", String(64), nullable=False),
    Column("ts", String(40), nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("note", Text, nullable=False),
    # The complete subtree hashes covering the first tree_size entries, largest first,
    # concatenated hex: the next checkpoint's root is computed from them and the new
    # entries alone (see merkle.extend_frontier).
    Column("frontier", Text, nullable=False),
    sqlite_autoincrement=True,
)

audit_witnesses = Table(
    "audit_witnesses",
    metadata,
    Column("witness", String(1024), primary_key=True),
    Column("delivered_id", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
    Column("last_attempt", String(40), nullable=True),
)
