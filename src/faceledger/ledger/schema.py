"""The ledger's tables, re-exported from :mod:`faceledger.store.schema` (one owner of tables)."""

from faceledger.store.schema import api_keys, audit_checkpoints, audit_log, audit_witnesses

__all__ = ["api_keys", "audit_checkpoints", "audit_log", "audit_witnesses"]
