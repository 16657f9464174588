"""API keys bound to roles: random, shown once, stored as SHA-256 hashes.

Roles and what they may do:

- ``admin``: keys, collections, settings (and everything else);
- ``enroller``: persons and faces;
- ``searcher``: detect, compare/verify, identify, similar, group;
- ``auditor``: read and verify the audit ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import Connection, Engine, insert, select, update

from faceledger.errors import InvalidArgument, NotFound, Unauthenticated
from faceledger.ledger.schema import api_keys
from faceledger.store.db import read_transaction, write_transaction

KEY_PREFIX = "fl_"
AUTH_CACHE_SECONDS = 5.0
"""How long a process trusts a key it has checked (SQLite only): a key revoked by another
process stops working within this many seconds."""


class Role(StrEnum):
    ADMIN = "admin"
    ENROLLER = "enroller"
    SEARCHER = "searcher"
    AUDITOR = "auditor"


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A stored key (never its secret)."""

    id: str
    role: Role
    name: str | None
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A newly created key: ``secret`` is shown once and never stored."""

    key: ApiKey
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidArgument(
            f"unknown role {value!r}; roles: {', '.join(r.value for r in Role)}"
        ) from None


class KeyStore:
    """Creates, authenticates and revokes API keys in the shared database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        # On a database shared by replicas another replica may revoke a key at any time:
        # every request reads the key's row (one indexed lookup) instead of this cache.
        self._caching = engine.dialect.name == "sqlite"

    def create(
        self, role: Role, *, name: str | None = None, conn: Connection | None = None
    ) -> IssuedKey:
        """Issue a key; pass ``conn`` to create it inside a caller's transaction."""
        key_id = secrets.token_hex(8)
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        values = {
            "id": key_id,
            "key_hash": _hash(secret),
            "role": role.value,
            "name": name,
            "created_at": datetime.now(UTC),
            "revoked_at": None,
        }
        if conn is None:
            with write_transaction(self._engine) as own:
                own.execute(insert(api_keys).values(**values))
        else:
            conn.execute(insert(api_keys).values(**values))
        return IssuedKey(ApiKey(key_id, role, name, values["created_at"], None), secret)  # type: ignore[arg-type]

    def authenticate(self, secret: str | None) -> ApiKey:
        """The key a secret belongs to, if it exists and is not revoked."""
        if not secret:
            raise Unauthenticated("an API key is required (X-API-Key header)")
        digest = _hash(secret)
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        with read_transaction(self._engine) as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_hash == digest)).first()
        if (
            row is None
            or not hmac.compare_digest(row.key_hash, digest)
            or row.revoked_at is not None
        ):
            raise Unauthenticated("unknown or revoked API key")
        key = _key(row._mapping)
        if self._caching:  # a revocation elsewhere is seen within AUTH_CACHE_SECONDS
            self._cache[digest] = (key, time.monotonic() + AUTH_CACHE_SECONDS)
        return key

    def list(self) -> list[ApiKey]:
        with read_transaction(self._engine) as conn:
            return [
                _key(r._mapping)
                for r in conn.execute(select(api_keys).order_by(api_keys.c.created_at))
            ]

    def revoke(self, key_id: str, *, conn: Connection) -> None:
        result = conn.execute(
            update(api_keys)
            .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
            .values(revoked_at=datetime.now(UTC))
        )
        if result.rowcount == 0:
            raise NotFound(f"key {key_id!r} not found or already revoked")
        self._cache.clear()


def _key(m: object) -> ApiKey:
    row = dict(m)  # type: ignore[call-overload]
    created = row["created_at"]
    revoked = row["revoked_at"]
    return ApiKey(
        id=row["id"],
        role=Role(row["role"]),
        name=row["name"],
        created_at=created if created.tzinfo else created.replace(tzinfo=UTC),
        revoked_at=None
        if revoked is None
        else (revoked if revoked.tzinfo else revoked.replace(tzinfo=UTC)),
    )
