"""The face database: collections, persons, faces and consent in SQL; vectors in an index."""

from faceledger.store.repository import (
    CollectionRecord,
    FaceRecord,
    NewFace,
    PersonRecord,
    Store,
)

__all__ = ["CollectionRecord", "FaceRecord", "NewFace", "PersonRecord", "Store"]
