"""Errors as RFC 9457 problem+json with a stable machine ``code``: one handler table."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from faceledger.errors import FaceledgerError

log = logging.getLogger("faceledger.api")
PROBLEM = "application/problem+json"


def problem(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": f"/problems/{code}",  # relative to this server, which documents it
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "image_too_large",
    415: "unsupported_format",
    422: "invalid_argument",
    429: "rate_limited",
    503: "unavailable",
    504: "timeout",
}


def _describe_codes() -> dict[str, dict[str, Any]]:
    """Every domain error code with its HTTP status and what it means (first docstring line)."""
    out: dict[str, dict[str, Any]] = {}
    stack: list[type[FaceledgerError]] = [FaceledgerError]
    while stack:
        cls = stack.pop(0)
        doc = (cls.__doc__ or "").strip().splitlines()
        out.setdefault(cls.code, {"status": cls.http_status, "title": doc[0] if doc else ""})
        stack.extend(cls.__subclasses__())
    for status, code in _HTTP_CODES.items():
        out.setdefault(code, {"status": status, "title": code.replace("_", " ")})
    return out


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem response."""
    codes = _describe_codes()

    @app.get("/problems/{code}", include_in_schema=False)
    async def _problem_type(code: str) -> JSONResponse:
        """The page a problem's ``type`` URI points at: the code, its status and meaning."""
        if code not in codes:
            return problem(404, "not_found", f"no problem type {code!r}")
        return JSONResponse({"code": code, **codes[code]})

    @app.exception_handler(FaceledgerError)
    async def _domain(_: Request, exc: FaceledgerError) -> JSONResponse:
        detail = {
            k: v for k, v in exc.detail.items() if isinstance(v, str | int | float | bool | None)
        }
        headers = {"Retry-After": str(detail["retry_after"])} if "retry_after" in detail else None
        return problem(exc.http_status, exc.code, exc.message, headers=headers, **detail)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return problem(422, "invalid_argument", "the request is malformed", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return problem(
            exc.status_code, code, str(exc.detail), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error")
        return problem(500, "internal_error", "an unexpected error occurred; it has been logged")
