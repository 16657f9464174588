"""Sign-in (an API key exchanged for a session cookie) and sign-out."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from faceledger.api.deps import ServiceDep, actor_of
from faceledger.api.ui.console import (
    COOKIE,
    SIGN_IN_COOKIE,
    AnyKeyPost,
    ConsoleRoute,
    page,
    see_other,
)
from faceledger.errors import Unauthenticated

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _sign_in_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    """The sign-in form with a fresh double-submit CSRF token (cookie and hidden field)."""
    token = secrets.token_urlsafe(24)
    response = page(request, "sign_in.html", {"csrf": token, "error": error}, status_code=status)
    response.set_cookie(
        SIGN_IN_COOKIE,
        token,
        max_age=600,
        path="/ui",
        httponly=True,
        secure=_secure(request),
        samesite="strict",
    )
    return response


@router.get("")
def home() -> Response:
    return see_other("/ui/review")


@router.get("/sign-in")
def sign_in_form(request: Request) -> Response:
    return _sign_in_page(request)


@router.post("/sign-in")
def sign_in(
    request: Request,
    service: ServiceDep,
    key: Annotated[str, Form(max_length=512)] = "",
    csrf: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf, expected):
        return _sign_in_page(request, error="The form expired: sign in again.", status=403)
    try:
        session = service.sign_in(key.strip())
    except Unauthenticated:
        return _sign_in_page(request, error="Unknown or revoked API key.", status=401)
    response = see_other("/ui/review")
    response.set_cookie(
        COOKIE,
        session.token,
        max_age=int(service.settings.console_session_seconds),
        path="/ui",
        httponly=True,
        secure=_secure(request),
        samesite="strict",
    )
    response.delete_cookie(SIGN_IN_COOKIE, path="/ui")
    return response


@router.post("/sign-out")
def sign_out(service: ServiceDep, session: AnyKeyPost) -> Response:
    service.sign_out(session.token, actor=actor_of(session.key))
    response = see_other("/ui/sign-in")
    response.delete_cookie(COOKIE, path="/ui")
    return response
