"""What every console page shares: templates, the session and role guards, CSRF, errors.

A page runs with the key of its session cookie, checked by the same role check as the
API (:func:`faceledger.api.deps.check_role`): the console can do what the key may do over
HTTP and nothing more. Every form carries the session's CSRF token; a POST without it is
refused (403) before anything runs. Errors become HTML pages; no session means a
redirect to the sign-in page.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from faceledger.api.deps import ServiceDep, check_role
from faceledger.errors import FaceledgerError, Forbidden, Unauthenticated
from faceledger.ledger.keys import Role
from faceledger.service.ratelimit import RateLimiter
from faceledger.service.review import ConsoleSession

COOKIE = "fl_session"
SIGN_IN_COOKIE = "fl_sign_in"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")  # autoescapes every value

SECURITY_HEADERS = {
    # No script runs on console pages at all, inline or from elsewhere.
    "Content-Security-Policy": (
        "default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: ConsoleSession | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    """Render a template with the session (for the navigation and forms' CSRF token)."""
    return templates.TemplateResponse(
        request,
        name,
        {"session": session, "roles": _roles(session), **context},
        status_code=status_code,
    )


def _roles(session: ConsoleSession | None) -> set[str]:
    """What the navigation offers: the roles the session's key acts as."""
    if session is None:
        return set()
    if session.key.role == Role.ADMIN:
        return {r.value for r in Role}
    return {session.key.role.value}


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


class ConsoleRoute(APIRoute):
    """A console route: security headers, and errors as HTML (no session: sign in)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def run(request: Request) -> Response:
            try:
                response = await handler(request)
            except Unauthenticated:
                response = see_other("/ui/sign-in")
                response.delete_cookie(COOKIE, path="/ui")
            except FaceledgerError as exc:
                response = page(
                    request,
                    "error.html",
                    {"code": exc.code, "message": exc.message, "status": exc.http_status},
                    status_code=exc.http_status,
                )
            response.headers.update(SECURITY_HEADERS)
            return response

        return run


def get_session(request: Request, service: ServiceDep) -> ConsoleSession:
    session = service.console_session(request.cookies.get(COOKIE))
    limiter: RateLimiter = request.app.state.limiter
    limiter.check(session.key.id)
    return session


SessionDep = Annotated[ConsoleSession, Depends(get_session)]


async def checked_form(request: Request, session: SessionDep) -> ConsoleSession:
    """The session, if the posted form carries its CSRF token."""
    given = (await request.form()).get("csrf")
    if not isinstance(given, str) or not hmac.compare_digest(given, session.csrf):
        raise Forbidden("the form's CSRF token is missing or wrong: reload the page and retry")
    return session


def viewer(*roles: Role) -> Callable[[ConsoleSession], ConsoleSession]:
    """A page for keys of ``roles`` (admin always)."""

    def check(session: SessionDep) -> ConsoleSession:
        check_role(session.key, *roles)
        return session

    return check


def poster(*roles: Role) -> Callable[[ConsoleSession], Awaitable[ConsoleSession]]:
    """A form post for keys of ``roles`` (admin always), refused without its CSRF token."""

    async def check(session: Annotated[ConsoleSession, Depends(checked_form)]) -> ConsoleSession:
        check_role(session.key, *roles)
        return session

    return check


AnyKeyPage = SessionDep
SearcherPage = Annotated[ConsoleSession, Depends(viewer(Role.SEARCHER))]
ReviewerImages = Annotated[ConsoleSession, Depends(viewer(Role.SEARCHER, Role.ENROLLER))]
EnrollerPage = Annotated[ConsoleSession, Depends(viewer(Role.ENROLLER))]
AuditorPage = Annotated[ConsoleSession, Depends(viewer(Role.AUDITOR))]
AnyKeyPost = Annotated[ConsoleSession, Depends(checked_form)]
SearcherPost = Annotated[ConsoleSession, Depends(poster(Role.SEARCHER))]
EnrollerPost = Annotated[ConsoleSession, Depends(poster(Role.ENROLLER))]
AdminPost = Annotated[ConsoleSession, Depends(poster(Role.ADMIN))]
