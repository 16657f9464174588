"""Collections: create, list, get, choose a calibration, delete."""

from __future__ import annotations

from fastapi import APIRouter, status

from faceledger.api.deps import AdminKey, CurrentKey, ServiceDep, actor_of
from faceledger.api.schemas import CalibrationChoice, CollectionCreate, CollectionPublic

router = APIRouter(prefix="/v1/collections", tags=["collections"])


@router.post("", response_model=CollectionPublic, status_code=status.HTTP_201_CREATED)
def create_collection(
    body: CollectionCreate, service: ServiceDep, key: AdminKey
) -> CollectionPublic:
    col = service.create_collection(
        body.name,
        model=body.model,
        require_consent=body.require_consent,
        store_images=body.store_images,
        actor=actor_of(key),
    )
    return CollectionPublic.model_validate(col)


@router.get("", response_model=list[CollectionPublic])
def list_collections(service: ServiceDep, _: CurrentKey) -> list[CollectionPublic]:
    return [CollectionPublic.model_validate(c) for c in service.store.list_collections()]


@router.get("/{collection}", response_model=CollectionPublic)
def get_collection(collection: str, service: ServiceDep, _: CurrentKey) -> CollectionPublic:
    return CollectionPublic.model_validate(service.store.get_collection(collection))


@router.put("/{collection}/calibration", response_model=CollectionPublic)
def use_calibration(
    collection: str, body: CalibrationChoice, service: ServiceDep, key: AdminKey
) -> CollectionPublic:
    """Move the collection's searches to another calibration version (recorded in the ledger)."""
    col = service.use_calibration(collection, body.calibration_id, actor=actor_of(key))
    return CollectionPublic.model_validate(col)


@router.delete("/{collection}", status_code=status.HTTP_204_NO_CONTENT)
def delete_collection(collection: str, service: ServiceDep, key: AdminKey) -> None:
    service.delete_collection(collection, actor=actor_of(key))
