"""The ledger's tables, defined with every other table in :mod:`faceledger.store.schema`."""

from faceledger.store.schema import api_keys, audit_log

__all__ = ["api_keys", "audit_log"]
