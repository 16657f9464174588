"""The audit ledger: paged entries, verification, JSON Lines export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from faceledger.api.deps import AuditorKey, ServiceDep
from faceledger.api.schemas import MAX_ID, AuditPage, AuditVerify

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", response_model=AuditPage)
def list_entries(
    service: ServiceDep,
    _: AuditorKey,
    after: Annotated[
        int, Query(ge=0, le=MAX_ID, description="Return entries after this sequence number.")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    operation: str | None = None,
    collection: str | None = None,
    key_id: str | None = None,
) -> AuditPage:
    entries = service.ledger.entries(
        after=after, limit=limit, operation=operation, collection=collection, key_id=key_id
    )
    next_after = entries[-1]["seq"] if len(entries) == limit else None
    return AuditPage(
        entries=[json.loads(json.dumps(e, default=str)) for e in entries], next_after=next_after
    )


@router.get("/verify", response_model=AuditVerify)
def verify(service: ServiceDep, _: AuditorKey) -> AuditVerify:
    """Recompute the hash chain and seals; ``ok`` is false if anything was altered."""
    return AuditVerify(**service.ledger.verify())


@router.get("/export")
def export(service: ServiceDep, _: AuditorKey) -> StreamingResponse:
    """Every entry as JSON Lines."""

    def lines() -> Iterator[bytes]:
        for entry in service.ledger.iter_all():
            yield (json.dumps(dict(entry), default=str, sort_keys=True) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")
