"""Reading an uploaded image: multipart field ``image`` or the raw request body."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from faceledger.errors import InvalidArgument

IMAGE_BODY = {
    "requestBody": {
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"image": {"type": "string", "format": "binary"}},
                    "required": ["image"],
                }
            },
        },
        "required": True,
    }
}
"""OpenAPI description of an image upload (the body is read by :func:`read_image`)."""


async def read_image(request: Request) -> bytes:
    """The uploaded image bytes; the size cap is enforced by the BodyLimit middleware."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=10)
        upload = form.get("image")
        if not isinstance(upload, UploadFile):
            raise InvalidArgument("multipart upload needs a file field named 'image'")
        data = await upload.read()
        await form.close()
    else:
        data = await request.body()
    if not data:
        raise InvalidArgument("the request has no image")
    return data


ImageBytes = Annotated[bytes, Depends(read_image)]
