"""Liveness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from faceledger import __version__
from faceledger.api.deps import ServiceDep, require
from faceledger.api.schemas import Health, LedgerHealth
from faceledger.ledger.keys import Role

router = APIRouter(tags=["health"])
INDEX_SIZE = Gauge("faceledger_index_faces", "Faces in the vector index", ["collection"])
LEDGER_ENTRIES = Gauge("faceledger_ledger_entries", "Entries in the audit ledger")
LEDGER_UNCOVERED = Gauge(
    "faceledger_ledger_uncovered_entries", "Ledger entries no signed checkpoint covers yet"
)
UNDELIVERED = Gauge(
    "faceledger_witness_undelivered_checkpoints",
    "Signed checkpoints a witness has not taken yet (retried, never dropped)",
    ["witness"],
)
WITNESS_FAILURES = Gauge(
    "faceledger_witness_failures", "Failed deliveries to a witness in a row", ["witness"]
)


@router.get("/healthz", response_model=Health)
def healthz(service: ServiceDep) -> Health:
    """Liveness (no key needed) and the ledger's checkpoint backlog.

    ``status`` is "degraded" while a witness does not take checkpoints: they are kept and
    retried, and the answer stays 200 so that a dead witness does not restart the server.
    """
    ledger = service.ledger.health()
    failing = sum(1 for w in ledger.witnesses if w.failures)
    return Health(
        status="degraded" if failing and ledger.undelivered else "ok",
        version=__version__,
        ledger=LedgerHealth(
            entries=ledger.entries,
            checkpoint_size=ledger.checkpoint_size,
            uncovered=ledger.uncovered,
            undelivered_checkpoints=ledger.undelivered,
            failing_witnesses=failing,
        ),
    )


@router.get("/metrics", dependencies=[Depends(require(Role.AUDITOR))])
def metrics(service: ServiceDep) -> Response:
    """Prometheus metrics: requests, index sizes, ledger entries and witness backlogs."""
    for col in service.store.list_collections():
        INDEX_SIZE.labels(col.name).set(len(service.store.index(col)))
    ledger = service.ledger.health()
    LEDGER_ENTRIES.set(ledger.entries)
    LEDGER_UNCOVERED.set(ledger.uncovered)
    for w in ledger.witnesses:
        UNDELIVERED.labels(w.witness).set(w.undelivered)
        WITNESS_FAILURES.labels(w.witness).set(w.failures)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
