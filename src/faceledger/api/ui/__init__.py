"""The review console at ``/ui``: server-rendered pages over the service (no JavaScript).

See :mod:`faceledger.api.ui.console` for sessions, roles and CSRF.
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from faceledger.api.ui import audit, auth, people, review, unknown, videos
from faceledger.api.ui.console import HERE


def install(app: FastAPI) -> None:
    """Mount the console's pages and stylesheet on ``app``."""
    for module in (auth, review, people, unknown, videos, audit):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")


__all__ = ["install"]
