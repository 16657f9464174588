"""The faceledger exception tree: every error a caller can see.

FaceledgerError
 ├── InputError                 the caller sent something unusable (HTTP 4xx)
 │    ├── ImageError
 │    │    ├── UnsupportedFormat    bytes are not an image format we decode
 │    │    ├── ImageTooLarge        byte cap or pixel cap exceeded (decompression bomb)
 │    │    └── CorruptImage         truncated or malformed image data
 │    ├── NoFace                    no face found where one was required
 │    ├── MultipleFaces             several faces where one was required
 │    ├── QualityTooLow             the face is too poor to enrol
 │    ├── InvalidArgument           a parameter is out of range or malformed
 │    ├── PurposeRequired           a search was asked without a stated purpose
 │    ├── ConsentRequired           enrolment without a consent reference
 │    └── VideoError                a video could not be read (partly or at all)
 │         └── VideoTooLarge        frame size or duration over its cap (headers, 413)
 ├── NotFound                   collection, person, face, job or key does not exist
 ├── Conflict                   name already taken, or embeddings of different packs mixed
 │    └── LimitExceeded         a person already holds the most faces allowed
 ├── RateLimited                too many requests for this key or address (Retry-After)
 ├── Overloaded                 the server has no capacity right now (503, Retry-After)
 ├── StorageFull                uploads would exceed the disk quota (507, Retry-After)
 ├── RequestAbandoned           the caller gave up (timeout, disconnect): nothing was changed
 ├── AuthError
 │    ├── Unauthenticated       no key or an unknown key
 │    └── Forbidden             the key's role may not do this
 ├── ModelError                 a model file is missing, has the wrong hash or fails to run
 └── StoreError                 the database or index is unusable

Each class carries a stable machine ``code`` used by the CLI (exit 1, one red line) and
the HTTP API (RFC 9457 problem+json). Exceptions from libraries underneath (Pillow,
onnxruntime, SQLAlchemy, PyAV) are translated where they enter.
"""

from __future__ import annotations

from typing import Any, ClassVar


class FaceledgerError(Exception):
    """Base of every error faceledger raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail

    def to_dict(self) -> dict[str, Any]:
        """The error as a JSON-ready mapping (code, message and any detail)."""
        return {"code": self.code, "message": self.message, **self.detail}


class InputError(FaceledgerError):
    code = "invalid_input"
    http_status = 400


class ImageError(InputError):
    code = "bad_image"


class UnsupportedFormat(ImageError):
    code = "unsupported_format"
    http_status = 415


class ImageTooLarge(ImageError):
    code = "image_too_large"
    http_status = 413


class CorruptImage(ImageError):
    code = "corrupt_image"
    http_status = 422


class NoFace(InputError):
    code = "no_face"
    http_status = 422


class MultipleFaces(InputError):
    code = "multiple_faces"
    http_status = 422


class QualityTooLow(InputError):
    code = "quality_too_low"
    http_status = 422


class InvalidArgument(InputError):
    code = "invalid_argument"
    http_status = 422


class PurposeRequired(InputError):
    code = "purpose_required"
    http_status = 422


class ConsentRequired(InputError):
    code = "consent_required"
    http_status = 422


class VideoError(InputError):
    code = "bad_video"
    http_status = 422


class VideoTooLarge(VideoError):
    """A video's frames or duration exceed the server's caps (read from its headers)."""

    code = "video_too_large"
    http_status = 413


class NotFound(FaceledgerError):
    code = "not_found"
    http_status = 404


class Conflict(FaceledgerError):
    code = "conflict"
    http_status = 409


class LimitExceeded(Conflict):
    """A stored limit would be exceeded (e.g. faces per person): a conflict with the data."""

    code = "limit_exceeded"
    http_status = 409


class RateLimited(FaceledgerError):
    """Too many requests; ``retry_after`` seconds says when to try again."""

    code = "rate_limited"
    http_status = 429


class Overloaded(FaceledgerError):
    """No capacity for this request now; ``retry_after`` seconds says when to try again."""

    code = "overloaded"
    http_status = 503


class StorageFull(FaceledgerError):
    """Kept uploads would exceed the disk quota; ``retry_after`` seconds says when to retry.

    HTTP 507 Insufficient Storage: the request itself is fine and may succeed once queued
    jobs finish and their uploads are removed; nothing of the refused upload is kept.
    """

    code = "storage_full"
    http_status = 507


class RequestAbandoned(FaceledgerError):
    """The request timed out or its client went away before it committed; nothing changed."""

    code = "timeout"
    http_status = 504


class AuthError(FaceledgerError):
    code = "unauthenticated"
    http_status = 401


class Unauthenticated(AuthError):
    code = "unauthenticated"
    http_status = 401


class Forbidden(AuthError):
    code = "forbidden"
    http_status = 403


class ModelError(FaceledgerError):
    code = "model_error"
    http_status = 500


class StoreError(FaceledgerError):
    code = "store_error"
    http_status = 500
