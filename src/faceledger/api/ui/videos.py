"""Videos: the video jobs a key may see, and a job's timeline with a player.

Same rule as ``/v1/videos``: a searcher (or admin) key, and a key sees the jobs it
submitted (an admin every job). The player streams the upload (Range requests, so the
browser can seek) only while the server keeps it (``KEEP_VIDEOS``); a link on an interval
reloads the page with ``?t=start&end=end``, which becomes the media fragment
``#t=start,end`` of the player's source: no script runs on console pages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse

from faceledger.api.ui.console import ConsoleRoute, SearcherPage, page
from faceledger.api.ui.timeline import read_timeline
from faceledger.errors import NotFound
from faceledger.ledger.keys import Role
from faceledger.service.jobs import JobRecord, VideoJobs
from faceledger.service.review import ConsoleSession

router = APIRouter(prefix="/ui/videos", route_class=ConsoleRoute, include_in_schema=False)
LISTED = 200
"""Newest jobs listed on the videos page."""
SECONDS = Query(ge=0.0, le=1e6)


def _jobs(request: Request) -> VideoJobs:
    jobs: VideoJobs = request.app.state.video_jobs
    return jobs


def _job(request: Request, job: str, session: ConsoleSession) -> JobRecord:
    """The job if this key may see it: its own, or any for an administrator (as the API)."""
    owner = None if session.key.role == Role.ADMIN else session.key.id
    return _jobs(request).get(job, key_id=owner)


def media_type(head: bytes) -> str:
    """The container of an upload (kept as ``<id>.video``) from its first 12 bytes."""
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return {b"qt  ": "video/quicktime", b"M4A ": "audio/mp4"}.get(brand, "video/mp4")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"  # Matroska; browsers play WebM and try the rest
    if head[:4] == b"RIFF":
        return "audio/wav" if head[8:12] == b"WAVE" else "video/x-msvideo"
    if head[:4] == b"fLaC":
        return "audio/flac"
    if head[:3] == b"ID3" or (head[:1] == b"\xff" and head[1:2] >= b"\xe0"):
        return "audio/mpeg"
    if head[:4] == b"OggS":
        return "audio/ogg"
    return "application/octet-stream"


@router.get("")
def videos(request: Request, session: SearcherPage) -> Response:
    owner = None if session.key.role == Role.ADMIN else session.key.id
    jobs = _jobs(request).list(key_id=owner, limit=LISTED)
    return page(request, "videos.html", {"jobs": jobs, "listed": LISTED}, session=session)


@router.get("/{job}")
def timeline(
    request: Request,
    job: str,
    session: SearcherPage,
    t: Annotated[float, SECONDS] = 0.0,
    end: Annotated[float | None, SECONDS] = None,
) -> Response:
    """A job's timeline; ``t`` (and ``end``) start the player there when the file is kept."""
    record = _job(request, job, session)
    fragment = f"{t:.2f}" + (f",{end:.2f}" if end is not None and end > t else "")
    return page(
        request,
        "video.html",
        {
            "job": record,
            "timeline": read_timeline(record.result) if record.result else None,
            "playable": Path(record.path).is_file(),
            "audio_only": bool(record.result) and not (record.result or {}).get("width"),
            "fragment": fragment,
            "at": t,
        },
        session=session,
    )


@router.get("/{job}/file")
def video_file(request: Request, job: str, session: SearcherPage) -> Response:
    """The video itself while the server keeps it, with Range support for seeking."""
    path = Path(_job(request, job, session).path)
    if not path.is_file():
        raise NotFound("the server does not keep this video (see KEEP_VIDEOS)")
    with path.open("rb") as fh:
        kind = media_type(fh.read(12))
    return FileResponse(path, media_type=kind)


@router.get("/{job}/captions.vtt")
def captions(request: Request, job: str, session: SearcherPage, english: bool = False) -> Response:
    """The job's transcript as WebVTT captions (``english``: its English text)."""
    record = _job(request, job, session)
    timeline = read_timeline(record.result) if record.result else None
    if timeline is None or not timeline.speech:
        raise NotFound("no speech was indexed for this video")
    return PlainTextResponse(timeline.captions(english=english), media_type="text/vtt")
