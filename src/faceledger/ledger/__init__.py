"""Accountability: the hash-chained audit ledger, API keys and roles, retention sweeps."""
