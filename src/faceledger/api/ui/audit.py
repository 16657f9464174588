"""Audit: the ledger as a filterable table, an entry's detail, verification, accuracy."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from faceledger.api.deps import ServiceDep
from faceledger.api.ui.console import AnyKeyPage, AuditorPage, ConsoleRoute, page
from faceledger.errors import NotFound

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
ACCURACY_FMRS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@router.get("/audit")
def ledger(
    request: Request,
    service: ServiceDep,
    session: AuditorPage,
    operation: str = "",
    collection: str = "",
    key_id: str = "",
    purpose: str = "",
    case_ref: str = "",
    after: int = 0,
) -> Response:
    entries = service.ledger.entries(
        after=after,
        limit=200,
        operation=operation or None,
        collection=collection or None,
        key_id=key_id or None,
    )
    rows = [
        e
        for e in entries
        if purpose.lower() in (e["purpose"] or "").lower()
        and case_ref.lower() in (e["case_ref"] or "").lower()
    ]
    try:
        latest = service.ledger.latest_checkpoint().checkpoint
    except NotFound:
        latest = None
    filters = {
        "operation": operation,
        "collection": collection,
        "key_id": key_id,
        "purpose": purpose,
        "case_ref": case_ref,
    }
    return page(
        request,
        "audit.html",
        {
            "rows": rows,
            "filters": filters,
            "verified": service.ledger.verify(),
            "latest": latest,
            "next_after": entries[-1]["seq"] if len(entries) == 200 else None,
        },
        session=session,
    )


@router.get("/audit/export")
def export(service: ServiceDep, _: AuditorPage) -> StreamingResponse:
    """Every entry as JSON Lines (what ``faceledger audit verify --export`` reads)."""

    def lines() -> Iterator[bytes]:
        for entry in service.ledger.iter_all():
            yield (json.dumps(dict(entry), default=str, sort_keys=True) + "\n").encode()

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={"Content-Disposition": 'attachment; filename="ledger.jsonl"'},
    )


@router.get("/audit/{seq}")
def entry(request: Request, seq: int, service: ServiceDep, session: AuditorPage) -> Response:
    found = service.ledger.entries(after=seq - 1, limit=1) if seq > 0 else []
    if not found or found[0]["seq"] != seq:
        raise NotFound(f"ledger entry {seq} not found")
    values: dict[str, Any] = dict(found[0])
    pretty = {k: json.dumps(values[k], indent=2, default=str) for k in ("request", "result")}
    return page(request, "entry.html", {"e": values, "pretty": pretty}, session=session)


@router.get("/accuracy")
def accuracy(
    request: Request, service: ServiceDep, session: AnyKeyPage, collection: str = ""
) -> Response:
    """How reliable a similarity is: the collection's calibration, rate by rate."""
    names = [c.name for c in service.store.list_collections()]
    chosen = collection or (names[0] if names else "")
    context: dict[str, Any] = {"names": names, "chosen": chosen, "cal": None, "rows": []}
    if chosen:
        col, engine = service.collection_engine(chosen)
        cal = service.calibration_of(col, engine)
        context.update(
            col=col,
            cal=cal,
            pack=engine.pack,
            rows=[(f, cal.threshold_for(f)) for f in ACCURACY_FMRS],
        )
    return page(request, "accuracy.html", context, session=session)
