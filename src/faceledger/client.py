"""``faceledger.Client``: the HTTP API from Python, mirroring the service's methods.

Problem responses become the same typed errors the library raises (matched by their
machine ``code``), so callers handle one exception tree whether local or remote.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from faceledger.errors import FaceledgerError

ImageArg = bytes | str | os.PathLike[str]


def _error_classes() -> dict[str, type[FaceledgerError]]:
    table: dict[str, type[FaceledgerError]] = {}
    stack: list[type[FaceledgerError]] = [FaceledgerError]
    while stack:
        cls = stack.pop()
        table[cls.code] = cls  # breadth-first: a subclass sharing a code wins
        stack.extend(cls.__subclasses__())
    return table


_ERRORS = _error_classes()


def _seg(value: object) -> str:
    """One URL path segment, percent-encoded whole: ``..``, ``?`` or ``/`` in a name stay
    inside the segment (dots are encoded too, or the HTTP library would collapse them)."""
    text = quote(str(value), safe="")
    return text.replace(".", "%2E") if text in {".", ".."} else text


def _bytes(image: ImageArg) -> bytes:
    return image if isinstance(image, bytes) else Path(image).read_bytes()


class Client:
    """A client of a faceledger server: ``Client("http://127.0.0.1:8000", api_key)``."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 120.0) -> None:
        self._http = httpx.Client(
            base_url=url.rstrip("/"), headers={"X-API-Key": api_key}, timeout=timeout
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object | TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise FaceledgerError(f"cannot reach the faceledger server: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"code": "error", "detail": response.text}
            cls = _ERRORS.get(str(body.get("code")), FaceledgerError)
            error = cls(
                str(body.get("detail", response.reason_phrase)), status=response.status_code
            )
            raise error
        if response.status_code == 204 or not response.content:
            return None
        if response.headers.get("content-type", "").startswith("application/x-ndjson"):
            return response.text
        return response.json()

    # -- service -------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "/healthz"))

    def create_key(self, role: str, *, name: str | None = None) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/keys", json={"role": role, "name": name}))

    def revoke_key(self, key_id: str) -> None:
        self._call("DELETE", f"/v1/keys/{_seg(key_id)}")

    # -- collections and persons ---------------------------------------------------------
    def create_collection(
        self, name: str, *, model: str = "default", require_consent: bool = True
    ) -> dict[str, Any]:
        body = {"name": name, "model": model, "require_consent": require_consent}
        return dict(self._call("POST", "/v1/collections", json=body))

    def list_collections(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "/v1/collections"))

    def get_collection(self, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/collections/{_seg(name)}"))

    def use_calibration(self, name: str, calibration_id: str | None) -> dict[str, Any]:
        """Move a collection's searches to a calibration version (None: the shipped one)."""
        body = {"calibration_id": calibration_id}
        return dict(self._call("PUT", f"/v1/collections/{_seg(name)}/calibration", json=body))

    def delete_collection(self, name: str) -> None:
        self._call("DELETE", f"/v1/collections/{_seg(name)}")

    def create_person(
        self,
        collection: str,
        name: str,
        *,
        consent: str | None = None,
        metadata: dict[str, Any] | None = None,
        retain_until: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "name": name,
            "consent": consent,
            "metadata": metadata or {},
            "retain_until": retain_until,
        }
        return dict(self._call("POST", f"/v1/collections/{_seg(collection)}/persons", json=body))

    def list_persons(
        self, collection: str, *, offset: int = 0, limit: int = 100
    ) -> list[dict[str, Any]]:
        page = self._call(
            "GET",
            f"/v1/collections/{_seg(collection)}/persons",
            params={"offset": offset, "limit": limit},
        )
        return list(page["persons"])

    def get_person(self, collection: str, name: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/v1/collections/{_seg(collection)}/persons/{_seg(name)}"))

    def delete_person(self, collection: str, name: str) -> None:
        self._call("DELETE", f"/v1/collections/{_seg(collection)}/persons/{_seg(name)}")

    def update_person(
        self,
        collection: str,
        name: str,
        *,
        new_name: str | None = None,
        consent: str | None = None,
        metadata: dict[str, Any] | None = None,
        retain_until: str | None = None,
    ) -> dict[str, Any]:
        """Rename a person (``new_name``) or change their consent, metadata or retention."""
        given = {
            "name": new_name,
            "consent": consent,
            "metadata": metadata,
            "retain_until": retain_until,
        }
        body = {k: v for k, v in given.items() if v is not None}
        return dict(
            self._call(
                "PATCH", f"/v1/collections/{_seg(collection)}/persons/{_seg(name)}", json=body
            )
        )

    def rename_person(self, collection: str, name: str, new_name: str) -> dict[str, Any]:
        return self.update_person(collection, name, new_name=new_name)

    def merge_persons(self, collection: str, source: str, into: str) -> dict[str, Any]:
        """Move every face of ``source`` to ``into`` and remove ``source``; returns ``into``."""
        return dict(
            self._call(
                "POST",
                f"/v1/collections/{_seg(collection)}/persons/{_seg(source)}/merge",
                json={"into": into},
            )
        )

    def move_faces(self, collection: str, face_ids: list[int], to: str) -> dict[str, Any]:
        """Move faces to another person; returns that person."""
        return dict(
            self._call(
                "POST",
                f"/v1/collections/{_seg(collection)}/faces/move",
                json={"face_ids": list(face_ids), "to": to},
            )
        )

    def export_person(self, collection: str, name: str) -> dict[str, Any]:
        return dict(
            self._call("GET", f"/v1/collections/{_seg(collection)}/persons/{_seg(name)}/export")
        )

    def enroll(
        self,
        collection: str,
        person: str,
        image: ImageArg,
        *,
        face_index: int | None = None,
        largest: bool = False,
        allow_low_quality: bool = False,
        allow_duplicates: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "largest": largest,
            "allow_low_quality": allow_low_quality,
            "allow_duplicates": allow_duplicates,
        }
        if face_index is not None:
            params["face_index"] = face_index
        return dict(
            self._call(
                "POST",
                f"/v1/collections/{_seg(collection)}/persons/{_seg(person)}/faces",
                params=params,
                files={"image": ("image", _bytes(image))},
            )
        )

    def delete_face(self, collection: str, face_id: int) -> None:
        self._call("DELETE", f"/v1/collections/{_seg(collection)}/faces/{_seg(face_id)}")

    # -- search --------------------------------------------------------------------------
    def detect(self, image: ImageArg) -> dict[str, Any]:
        return dict(self._call("POST", "/v1/detect", content=_bytes(image)))

    def identify(
        self,
        collection: str,
        image: ImageArg,
        *,
        purpose: str,
        case: str | None = None,
        top: int = 5,
        max_fmr: float | None = None,
        max_fpir: float | None = None,
    ) -> dict[str, Any]:
        """Candidates per face; ``max_fpir`` sets the per-person rate from a gallery target."""
        params = {
            "purpose": purpose,
            "top": top,
            **({"max_fmr": max_fmr} if max_fmr is not None else {}),
            **({"max_fpir": max_fpir} if max_fpir is not None else {}),
            **({"case": case} if case else {}),
        }
        return dict(
            self._call(
                "POST",
                f"/v1/collections/{_seg(collection)}/identify",
                params=params,
                content=_bytes(image),
            )
        )

    def submit_video(
        self,
        collection: str,
        video: ImageArg,
        *,
        purpose: str,
        case: str | None = None,
        fps: float = 4.0,
        ocr: bool = True,
        speech: bool = True,
        webhook: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Queue a video or audio file for indexing: ``{"job": id}``, and with ``webhook``
        the ``webhook_secret`` its announcement is signed with (shown once). The media
        index keeps the file under ``name`` (default: the path's file name)."""
        if name is None and not isinstance(video, bytes):
            name = Path(video).name
        params: dict[str, Any] = {
            "collection": collection,
            "purpose": purpose,
            "fps": fps,
            "ocr": ocr,
            "speech": speech,
            **({"case": case} if case else {}),
            **({"webhook": webhook} if webhook else {}),
            **({"name": name} if name else {}),
        }
        return dict(self._call("POST", "/v1/videos", params=params, content=_bytes(video)))

    def video_job(self, job: str) -> dict[str, Any]:
        """A video job: status, progress, the index or the error, the webhook's delivery."""
        return dict(self._call("GET", f"/v1/videos/{_seg(job)}"))

    def similar(
        self,
        collection: str,
        image: ImageArg,
        *,
        purpose: str,
        mode: str = "matchPerson",
        top: int = 20,
        max_fmr: float = 1e-4,
    ) -> dict[str, Any]:
        params = {"purpose": purpose, "mode": mode, "top": top, "max_fmr": max_fmr}
        return dict(
            self._call(
                "POST",
                f"/v1/collections/{_seg(collection)}/similar",
                params=params,
                content=_bytes(image),
            )
        )

    def verify(
        self, collection: str, image: ImageArg, person: str, *, purpose: str, max_fmr: float = 1e-4
    ) -> dict[str, Any]:
        params = {
            "collection": collection,
            "person": person,
            "purpose": purpose,
            "max_fmr": max_fmr,
        }
        return dict(
            self._call(
                "POST", "/v1/verify", params=params, files={"image": ("image", _bytes(image))}
            )
        )

    def compare(self, a: ImageArg, b: ImageArg, *, max_fmr: float = 1e-4) -> dict[str, Any]:
        files = {"image": ("a", _bytes(a)), "other": ("b", _bytes(b))}
        return dict(self._call("POST", "/v1/verify", params={"max_fmr": max_fmr}, files=files))

    def group(
        self,
        images: list[ImageArg] | None = None,
        *,
        collection: str | None = None,
        max_fmr: float = 1e-3,
        purpose: str | None = None,
        case: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "max_fmr": max_fmr,
            **({"collection": collection} if collection else {}),
            **({"purpose": purpose} if purpose else {}),
            **({"case": case} if case else {}),
        }
        files = [("images", (f"image-{i}", _bytes(im))) for i, im in enumerate(images or [])]
        return dict(self._call("POST", "/v1/group", params=params, files=files or None))

    # -- media index ---------------------------------------------------------------------
    def search_media(
        self,
        collection: str,
        *,
        person: str | None = None,
        said: str | None = None,
        shown: str | None = None,
        start: float | None = None,
        end: float | None = None,
        video: str | None = None,
        offset: int = 0,
        limit: int = 50,
        purpose: str | None = None,
        case: str | None = None,
    ) -> dict[str, Any]:
        """Where in the collection's indexed videos the person appears while the words are
        said and shown (``GET /v1/media/search``): ``{"hits": [...], "total": n, ...}``."""
        given = {
            "person": person,
            "said": said,
            "shown": shown,
            "start": start,
            "end": end,
            "video": video,
            "purpose": purpose,
            "case": case,
        }
        params: dict[str, Any] = {"collection": collection, "offset": offset, "limit": limit}
        params.update({k: v for k, v in given.items() if v is not None})
        return dict(self._call("GET", "/v1/media/search", params=params))

    # -- audit ---------------------------------------------------------------------------
    def audit(
        self, *, after: int = 0, limit: int = 100, operation: str | None = None
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "after": after,
            "limit": limit,
            **({"operation": operation} if operation else {}),
        }
        return dict(self._call("GET", "/v1/audit", params=params))

    def audit_verify(self) -> dict[str, Any]:
        return dict(self._call("GET", "/v1/audit/verify"))
