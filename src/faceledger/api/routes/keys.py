"""API keys: issue (shown once), list, revoke. Admins only."""

from __future__ import annotations

from fastapi import APIRouter, status

from faceledger.api.deps import AdminKey, ServiceDep, actor_of
from faceledger.api.schemas import KeyCreate, KeyIssued, KeyPublic

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.post("", response_model=KeyIssued, status_code=status.HTTP_201_CREATED)
def create_key(body: KeyCreate, service: ServiceDep, key: AdminKey) -> KeyIssued:
    issued = service.create_key(body.role, name=body.name, actor=actor_of(key))
    return KeyIssued(**KeyPublic.model_validate(issued.key).model_dump(), key=issued.secret)


@router.get("", response_model=list[KeyPublic])
def list_keys(service: ServiceDep, _: AdminKey) -> list[KeyPublic]:
    return [KeyPublic.model_validate(k) for k in service.keys.list()]


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_key(key_id: str, service: ServiceDep, key: AdminKey) -> None:
    service.revoke_key(key_id, actor=actor_of(key))
