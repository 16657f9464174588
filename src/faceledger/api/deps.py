"""Dependencies: the service, the calling key, role checks and rate limits, as named aliases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from faceledger.errors import Forbidden, Unauthenticated
from faceledger.ledger.audit import Actor
from faceledger.ledger.keys import ApiKey, Role
from faceledger.service import FaceService
from faceledger.service.ratelimit import RateLimiter

api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key issued by an admin."
)


def get_service(request: Request) -> FaceService:
    service: FaceService = request.app.state.service
    return service


ServiceDep = Annotated[FaceService, Depends(get_service)]


def get_key(
    request: Request, service: ServiceDep, secret: Annotated[str | None, Depends(api_key_header)]
) -> ApiKey:
    limiter: RateLimiter = request.app.state.limiter
    try:
        key = service.keys.authenticate(secret)
    except Unauthenticated:
        # requests without a valid key spend the bucket of their client address: a
        # flood of them (or a key-guessing run) gets 429, a keyed client is unaffected
        limiter.check(f"address:{request.client.host if request.client else '?'}")
        raise
    limiter.check(key.id)
    return key


CurrentKey = Annotated[ApiKey, Depends(get_key)]


def check_role(key: ApiKey, *roles: Role) -> ApiKey:
    """``key`` if its role is one of ``roles`` (admin always); the one role check of the
    API and the console.

    Raises:
        Forbidden: another role.
    """
    allowed = {Role.ADMIN, *roles}
    if key.role not in allowed:
        needs = ", ".join(sorted(r.value for r in allowed))
        raise Forbidden(f"role {key.role.value!r} may not do this; needs one of: {needs}")
    return key


def require(*roles: Role) -> Callable[[ApiKey], ApiKey]:
    """A dependency admitting keys of ``roles`` (admin always)."""

    def check(key: CurrentKey) -> ApiKey:
        return check_role(key, *roles)

    return check


def actor_of(key: ApiKey) -> Actor:
    return Actor(key_id=key.id, role=key.role.value, name=key.name)


AdminKey = Annotated[ApiKey, Depends(require(Role.ADMIN))]
EnrollerKey = Annotated[ApiKey, Depends(require(Role.ENROLLER))]
SearcherKey = Annotated[ApiKey, Depends(require(Role.SEARCHER))]
AuditorKey = Annotated[ApiKey, Depends(require(Role.AUDITOR))]
