"""Administration: collections and API keys, each change audited."""

from __future__ import annotations

from faceledger.errors import Conflict
from faceledger.ledger.audit import Actor
from faceledger.ledger.keys import IssuedKey, Role
from faceledger.models.calibration_store import find_calibration, model_of
from faceledger.service.core import LOCAL_ACTOR, ServiceCore
from faceledger.store.repository import CollectionRecord


class AdminOps(ServiceCore):
    """Collections (bound for life to a model pack) and API keys."""

    def create_collection(
        self,
        name: str,
        *,
        model: str | None = None,
        require_consent: bool = True,
        store_images: bool = False,
        actor: Actor = LOCAL_ACTOR,
    ) -> CollectionRecord:
        engine = self.engine(model)
        request = {"model": engine.pack.name, "require_consent": require_consent}
        with self.audited(actor, "collection.create", collection=name, request=request) as work:
            return self.store.create_collection(
                name,
                model_pack=engine.pack.name
                if model is None or not model.startswith("dir:")
                else model,
                model_id=engine.model_id,
                embedding_dim=engine.pack.embedding_dim,
                require_consent=require_consent,
                store_images=store_images,
                tx=work.tx,
            )

    def use_calibration(
        self, name: str, calibration_id: str | None, *, actor: Actor = LOCAL_ACTOR
    ) -> CollectionRecord:
        """Move a collection's searches to another calibration version of its model (None:
        back to the pack's shipped one). Audited with the ids before and after.

        Raises:
            NotFound: no such collection or calibration (shipped or in DATA/calibrations).
            Conflict: the calibration was made for another model.
        """
        col, engine = self.collection_engine(name)
        shipped = engine.pack.require_calibration()
        target = (
            shipped
            if calibration_id is None
            else find_calibration(calibration_id, shipped=shipped, roots=self.calibration_roots)
        )
        made_for = model_of(target)
        if target is not shipped and made_for not in (col.model_id, "unknown"):
            raise Conflict(
                f"calibration {target.calibration_id} was made for {made_for}, but collection "
                f"{name!r} holds embeddings of {col.model_id}"
            )
        request = {
            "from": self.calibration_of(col, engine).calibration_id,
            "to": target.calibration_id,
        }
        with self.audited(actor, "collection.calibration", collection=name, request=request) as w:
            stored = None if target is shipped else target.calibration_id
            return self.store.set_calibration(name, stored, tx=w.tx)

    def delete_collection(self, name: str, *, actor: Actor = LOCAL_ACTOR) -> None:
        """Erase a collection: its persons, faces, vectors and index files."""
        with self.audited(actor, "collection.delete", collection=name) as work:
            self.store.delete_collection(name, tx=work.tx)

    def create_key(
        self, role: Role, *, name: str | None = None, actor: Actor = LOCAL_ACTOR
    ) -> IssuedKey:
        """Issue an API key (its secret is returned once); the issue is audited."""
        with self.audited(actor, "key.create", request={"role": role.value, "name": name}) as work:
            issued = self.keys.create(role, name=name, conn=work.tx.conn)
            work.request["key_id"] = issued.key.id
            return issued

    def revoke_key(self, key_id: str, *, actor: Actor = LOCAL_ACTOR) -> None:
        with self.audited(actor, "key.revoke", request={"key_id": key_id}) as work:
            self.keys.revoke(key_id, conn=work.tx.conn)
