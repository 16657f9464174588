"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from faceledger import __version__
from faceledger.api.deps import ServiceDep, require
from faceledger.api.schemas import Health
from faceledger.ledger.keys import Role

router = APIRouter(tags=["health"])
INDEX_SIZE = Gauge("faceledger_index_faces", "Faces in the vector index", ["collection"])


@router.get("/healthz", response_model=Health)
def healthz() -> Health:
    """Liveness: no key needed."""
    return Health(status="ok", version=__version__)


@router.get("/metrics", dependencies=[Depends(require(Role.AUDITOR))])
def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics: request counts and latencies, faces enrolled, index sizes."""
    for col in service.store.list_collections():
        INDEX_SIZE.labels(col.name).set(len(service.store.index(col)))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
