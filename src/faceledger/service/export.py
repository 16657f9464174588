"""Subject access: everything stored about a person, with proof of what the ledger says.

An export holds the person's record (name, metadata, consent reference, retention date),
their collection's model (pack, model id, dimension), every face with its float32
embedding as stored and its image if the collection keeps images, every interval of the
media index naming them (video SHA-256, file name, collection, start, end), and every ledger
entry that names the person's pseudonym, each with an RFC 9162 inclusion proof against
one signed checkpoint (signed on the spot when the last of those entries is not yet
covered). The export itself is an audited operation (``person.export``), so it is among
the entries of the next export.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from faceledger.errors import StoreError
from faceledger.ledger.audit import Actor
from faceledger.ledger.checkpoints import CheckpointRecord
from faceledger.ledger.proofs import InclusionProof
from faceledger.service.core import LOCAL_ACTOR, ServiceCore
from faceledger.store.media import MediaAppearance, MediaStore
from faceledger.store.repository import CollectionRecord, FaceRecord, PersonRecord
from faceledger.store.review import ReviewStore
from faceledger.types import FloatArray


@dataclass(frozen=True, slots=True)
class ExportedFace:
    """One enrolled face: its record, its embedding and its stored image."""

    record: FaceRecord
    embedding: FloatArray
    """``(d,)`` float32, L2-normalised, exactly as stored."""
    image: bytes | None
    """The enrolled image, if the collection stores images."""


@dataclass(frozen=True, slots=True)
class PersonExport:
    """Everything stored about a person (a subject access request)."""

    person: PersonRecord
    collection: CollectionRecord
    """Its model pack, model id and embedding dimension say what the embeddings are."""
    faces: list[ExportedFace]
    entries: list[InclusionProof]
    """The ledger entries naming the person's pseudonym, in order, each with its proof."""
    checkpoint: CheckpointRecord | None
    """The signed checkpoint every proof leads to (None when no entry names them)."""
    media: list[MediaAppearance]
    """Every interval of an indexed video in which the media index names the person."""

    def as_document(self) -> dict[str, Any]:
        """The export as JSON types: what the API answers and ``person export`` prints.

        Embeddings and images are base64 (embeddings of little-endian float32 values, as
        ``model`` says), times ISO 8601, hashes hex.
        """
        col = self.collection
        return {
            "person": _plain(asdict(self.person)),
            "model": {
                "model_pack": col.model_pack,
                "model_id": col.model_id,
                "dimension": col.embedding_dim,
                "dtype": "float32",
                "encoding": "base64, little-endian",
            },
            "faces": [
                {
                    **_plain(asdict(f.record)),
                    "embedding": _b64(np.asarray(f.embedding, dtype="<f4").tobytes()),
                    "image": None if f.image is None else _b64(f.image),
                }
                for f in self.faces
            ],
            "media": [asdict(m) for m in self.media],
            "ledger": [_proof(p) for p in self.entries],
            "checkpoint": None if self.checkpoint is None else _checkpoint(self.checkpoint),
        }


class ExportOps(ServiceCore):
    """The subject access export."""

    def export_person(
        self, collection: str, name: str, *, actor: Actor = LOCAL_ACTOR
    ) -> PersonExport:
        """Everything stored about a person; the export is audited (``person.export``).

        Raises:
            NotFound: no such collection or person.
            StoreError: the ledger no longer holds an entry a proof needs.
        """
        with self.audited(actor, "person.export", collection=collection) as work:
            work.request["person"] = work.pseudonym(collection, name)
            col = self.store.get_collection(collection)
            person = self.store.get_person(collection, name, tx=work.tx)
            faces = self._exported_faces(collection, name)
            media = MediaStore(self.store.engine).appearances(work.tx.conn, collection, name)
            work.result["faces"] = len(faces)
            work.result["media_intervals"] = len(media)
        entries = self.ledger.entries_mentioning(person.pseudonym)
        proofs, checkpoint = self._proofs(entries)
        return PersonExport(person, col, faces, proofs, checkpoint, media)

    def _exported_faces(self, collection: str, name: str) -> list[ExportedFace]:
        records = self.store.list_faces(collection, name)
        ids, vectors = self.store.face_embeddings(collection, name)
        by_id = {int(i): vectors[row] for row, i in enumerate(ids)}
        images = ReviewStore(self.store.engine)
        out = []
        for record in records:
            if record.id not in by_id:  # erased between the two reads
                continue
            image, _, _, _ = images.face_image(record.id)
            out.append(ExportedFace(record, by_id[record.id], image))
        return out

    def _proofs(
        self, entries: list[dict[str, Any]]
    ) -> tuple[list[InclusionProof], CheckpointRecord | None]:
        """An inclusion proof of each entry against one checkpoint covering them all."""
        if not entries:
            return [], None
        last = max(int(e["seq"]) for e in entries)
        checkpoint = self.ledger.checkpoints.latest()
        if checkpoint is None or checkpoint.size < last:
            checkpoint = self.ledger.checkpoint()
        proofs = [
            self.ledger.proofs.inclusion(int(e["seq"]), size=checkpoint.size) for e in entries
        ]
        for e, p in zip(entries, proofs, strict=True):
            if p.entry_hash != e["entry_hash"]:
                raise StoreError(f"ledger entry {e['seq']} changed while it was exported")
        return proofs, checkpoint


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON types only (datetimes become ISO 8601 strings)."""
    out: dict[str, Any] = json.loads(
        json.dumps(values, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v))
    )
    return out


def _checkpoint(record: CheckpointRecord) -> dict[str, Any]:
    cp = record.checkpoint
    return {
        "id": record.id,
        "size": cp.size,
        "root_hash": cp.root_hex,
        "timestamp": cp.time.isoformat(),
        "key_id": cp.key_id,
        "note": cp.note,
    }


def _proof(proof: InclusionProof) -> dict[str, Any]:
    """As ``GET /v1/audit/entries/{seq}/proof`` shows it."""
    return {
        "seq": proof.seq,
        "leaf_index": proof.seq - 1,
        "entry": json.loads(json.dumps(proof.entry, default=str)),
        "entry_hash": proof.entry_hash,
        "leaf_hash": proof.leaf_hash,
        "tree_size": proof.tree_size,
        "root_hash": proof.root_hash,
        "path": proof.path,
        "checkpoint": _checkpoint(proof.checkpoint),
    }
