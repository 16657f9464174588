"""The audit ledger: entries, verification, export, signed checkpoints and Merkle proofs.

An outside auditor needs only ``GET /v1/audit/public-key`` (no key required) and the
checkpoints its witness received; the proofs here let it check one entry (inclusion) or
that the log only grew between two checkpoints (consistency), RFC 9162 §2.1.3 and §2.1.4.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from faceledger.api.deps import AuditorKey, ServiceDep
from faceledger.api.schemas import MAX_ID, AuditPage, AuditVerify
from faceledger.ledger.checkpoints import CheckpointRecord

router = APIRouter(prefix="/v1/audit", tags=["audit"])


class PublicKeyOut(BaseModel):
    key_id: str
    origin: str = Field(description="The checkpoints' origin line and signature key name.")
    pem: str = Field(description="Ed25519 public key, SubjectPublicKeyInfo PEM.")
    vkey: str = Field(description="The same key as a signed-note verifier key.")


class CheckpointOut(BaseModel):
    id: int
    size: int = Field(description="Entries 1..size are the leaves of the signed tree.")
    root_hash: str = Field(description="RFC 9162 Merkle root, hex.")
    timestamp: str
    key_id: str
    note: str = Field(description="The signed checkpoint (C2SP signed-note format).")

    @classmethod
    def of(cls, record: CheckpointRecord) -> CheckpointOut:
        cp = record.checkpoint
        return cls(
            id=record.id,
            size=cp.size,
            root_hash=cp.root_hex,
            timestamp=cp.time.isoformat(),
            key_id=cp.key_id,
            note=cp.note,
        )


class CheckpointPage(BaseModel):
    checkpoints: list[CheckpointOut]
    next_after: int | None


class InclusionProofOut(BaseModel):
    seq: int
    leaf_index: int = Field(description="seq - 1.")
    entry: dict[str, Any] = Field(description="The entry as stored (its hash is recomputable).")
    entry_hash: str
    leaf_hash: str = Field(description="SHA-256(0x00 || entry_hash bytes), hex.")
    tree_size: int
    root_hash: str
    path: list[str] = Field(description="Audit path, hex, leaf to root (RFC 9162 §2.1.3).")
    checkpoint: CheckpointOut


class ConsistencyProofOut(BaseModel):
    from_size: int
    to_size: int
    from_root: str
    to_root: str
    path: list[str] = Field(description="Consistency proof, hex (RFC 9162 §2.1.4).")
    from_checkpoint: CheckpointOut
    to_checkpoint: CheckpointOut


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(json.dumps(values, default=str))
    return result


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
    return AuditPage(entries=[_jsonable(e) for e in entries], next_after=next_after)


@router.get("/verify", response_model=AuditVerify)
def verify(service: ServiceDep, _: AuditorKey) -> AuditVerify:
    """Recompute chain, seals, head and stored checkpoints; ``ok`` is false on any problem."""
    return AuditVerify(**service.ledger.verify())


@router.get("/export")
def export(service: ServiceDep, _: AuditorKey) -> StreamingResponse:
    """Every entry as JSON Lines (what ``faceledger audit verify --export`` reads)."""

    def lines() -> Iterator[bytes]:
        for entry in service.ledger.iter_all():
            yield (json.dumps(dict(entry), default=str, sort_keys=True) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.get("/public-key", response_model=PublicKeyOut)
def public_key(service: ServiceDep) -> PublicKeyOut:
    """The Ed25519 key that verifies checkpoints: public, no API key needed."""
    key = service.ledger.public_key
    return PublicKeyOut(key_id=key.key_id, origin=key.origin, pem=key.pem, vkey=key.vkey)


@router.get("/checkpoints", response_model=CheckpointPage)
def list_checkpoints(
    service: ServiceDep,
    _: AuditorKey,
    after: Annotated[int, Query(ge=0, le=MAX_ID, description="Checkpoints after this id.")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> CheckpointPage:
    """Signed checkpoints, oldest first."""
    records = service.ledger.checkpoints.since(after=after, limit=limit)
    return CheckpointPage(
        checkpoints=[CheckpointOut.of(r) for r in records],
        next_after=records[-1].id if len(records) == limit else None,
    )


@router.get("/checkpoints/latest", response_model=CheckpointOut)
def latest_checkpoint(service: ServiceDep, _: AuditorKey) -> CheckpointOut:
    """The most recent signed checkpoint."""
    return CheckpointOut.of(service.ledger.latest_checkpoint())


@router.post("/checkpoints", response_model=CheckpointOut, status_code=status.HTTP_201_CREATED)
def make_checkpoint(service: ServiceDep, _: AuditorKey) -> CheckpointOut:
    """Sign a checkpoint of every entry now and send it to the witnesses."""
    return CheckpointOut.of(service.ledger.checkpoint())


@router.get("/entries/{seq}/proof", response_model=InclusionProofOut)
def inclusion_proof(
    service: ServiceDep,
    _: AuditorKey,
    seq: int,
    size: Annotated[
        int | None,
        Query(ge=1, le=MAX_ID, description="Tree size of a checkpoint (default the latest)."),
    ] = None,
) -> InclusionProofOut:
    """Proof that entry ``seq`` is in the tree a checkpoint signed."""
    proof = service.ledger.proofs.inclusion(seq, size=size)
    return InclusionProofOut(
        seq=proof.seq,
        leaf_index=proof.seq - 1,
        entry=_jsonable(proof.entry),
        entry_hash=proof.entry_hash,
        leaf_hash=proof.leaf_hash,
        tree_size=proof.tree_size,
        root_hash=proof.root_hash,
        path=proof.path,
        checkpoint=CheckpointOut.of(proof.checkpoint),
    )


@router.get("/consistency", response_model=ConsistencyProofOut)
def consistency_proof(
    service: ServiceDep,
    _: AuditorKey,
    from_size: Annotated[
        int, Query(alias="from", ge=1, le=MAX_ID, description="Size of the older checkpoint.")
    ],
    to_size: Annotated[
        int | None,
        Query(alias="to", ge=1, le=MAX_ID, description="Size of the newer (default latest)."),
    ] = None,
) -> ConsistencyProofOut:
    """Proof that the tree signed at ``to`` extends the one signed at ``from``."""
    proof = service.ledger.proofs.consistency(from_size, to_size)
    return ConsistencyProofOut(
        from_size=proof.old_size,
        to_size=proof.new_size,
        from_root=proof.old_root,
        to_root=proof.new_root,
        path=proof.path,
        from_checkpoint=CheckpointOut.of(proof.old_checkpoint),
        to_checkpoint=CheckpointOut.of(proof.new_checkpoint),
    )
