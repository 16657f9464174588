"""The FastAPI application: wiring only (routers, guards, handlers, lifespan)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool

from faceledger import __version__
from faceledger.api import openapi, problems
from faceledger.api.limits import BodyLimit, Metrics, Timeout
from faceledger.api.routes import (
    audit,
    collections,
    health,
    keys,
    media,
    persons,
    search,
    videos,
)
from faceledger.api.ui import install as install_console
from faceledger.config import Settings
from faceledger.ledger.audit import Actor
from faceledger.ledger.keys import Role
from faceledger.service import FaceService
from faceledger.service.jobs import VideoJobs
from faceledger.service.retention import Sweeper

ADMIN_KEY_FILE = "admin.key"


def ensure_admin_key(service: FaceService) -> Path | None:
    """On first start, issue an admin key into ``DATA/admin.key`` (mode 0600); its path, or None."""
    if service.keys.list():
        return None
    issued = service.create_key(
        Role.ADMIN, name="bootstrap admin", actor=Actor(None, "system", "first start")
    )
    path = service.settings.data / ADMIN_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(issued.secret + "\n")
    os.chmod(path, 0o600)
    return path


def create_app(settings: Settings | None = None) -> FastAPI:
    """The HTTP service on ``settings.data``."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = FaceService(settings, require_purpose=settings.require_purpose)
        ensure_admin_key(service)
        service.engine()  # load the default models before the first request
        sweeper = Sweeper(service, interval=settings.retention_sweep_seconds)
        sweeper.start()
        listener = service.change_listener()  # PostgreSQL: other replicas' commits
        listener.start()
        jobs = VideoJobs(service)
        app.state.service = service
        app.state.video_jobs = jobs
        app.state.limiter = service.rate_limiter()  # PostgreSQL: shared by all replicas
        try:
            yield
        finally:
            await run_in_threadpool(jobs.close)
            sweeper.stop()
            listener.stop()
            service.close()

    # /docs and /redoc from Swagger UI and ReDoc files installed with fastapi-offline,
    # served by this server under /static-offline-docs: no CDN, so they work offline.
    app = FastAPIOffline(
        title="faceledger",
        version=__version__,
        description=(
            "Self-hosted, accountable face recognition. Every search is written to a "
            "tamper-evident audit ledger; results are ranked candidates for human review "
            "with calibrated false match rates."
        ),
        lifespan=lifespan,
    )
    problems.install(app)
    openapi.install(app)
    for router in (
        health.router,
        collections.router,
        persons.router,
        search.router,
        audit.router,
        keys.router,
        videos.router,
        media.router,
    ):
        app.include_router(router)
    install_console(app)  # the review console at /ui (server-rendered pages)
    app.add_middleware(Timeout, seconds=settings.request_timeout)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_upload_bytes,
        overrides={"/v1/videos": settings.max_video_bytes},
    )
    app.add_middleware(Metrics)
    return app
