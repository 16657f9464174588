"""Settings from the environment (``FACELEDGER_`` prefix) with documented defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Runtime configuration; every field can be set as ``FACELEDGER_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="FACELEDGER_", extra="ignore")

    data: Path = Path("./var")
    """Data directory: database, vector indexes, keys."""
    fix_permissions: Literal["fix", "refuse", "warn"] = "fix"
    """At the start of ``serve`` and of CLI commands, a data folder (or anything in it)
    readable or writable by others is restricted to its owner (``fix``: folders 0700,
    files 0600), stops the start (``refuse``) or is only reported (``warn``)."""
    db_url: str | None = None
    """SQLAlchemy URL of the database (None: SQLite in ``DATA/faceledger.db``); a
    ``postgresql+psycopg://`` URL lets many replicas share one store and one ledger."""
    index: Literal["faiss", "pgvector"] = "faiss"
    """Vector index: ``faiss`` (exact, then HNSW, in each process's memory, caught up from
    the change log) or ``pgvector`` (HNSW inside PostgreSQL; needs a PostgreSQL store with
    the ``vector`` extension)."""
    model_pack: str = "default"
    max_image_bytes: int = 20 * 1024 * 1024
    max_image_pixels: int = 40_000_000
    max_faces_per_image: int = 100
    """Only the largest this many faces of an image are aligned and embedded (0: all)."""
    max_group_faces: int = 1000
    """Faces in all the images of one ``group`` request; beyond, 409 ``limit_exceeded``."""
    detector_input_cap: int = 640
    """Long side of the detector input; images are scaled down to it, never up."""
    min_face_size: float = 10.0
    """Faces whose box is smaller (pixels, shorter side) are ignored."""
    workers: int = 0
    """Images processed in parallel (0: one per CPU core)."""
    image_slots: int = 0
    """Images decoded and run through the models at once, process-wide (0: one per CPU
    core): what bounds the memory images hold, however many requests arrive."""
    image_queue: int = 16
    """HTTP requests waiting for an image slot beyond which a request is refused at once
    with 503 ``overloaded`` and ``Retry-After`` (a request waits at most 30 s for a slot)."""
    default_max_fmr: float = 1e-4
    cache_dir: Path = Path(".cache")
    # -- service ---------------------------------------------------------------------
    max_upload_bytes: int = 21 * 1024 * 1024
    """Request bodies above this are refused with 413 before being read."""
    max_video_bytes: int = 512 * 1024 * 1024
    """Video uploads (``POST /v1/videos``) have their own, larger cap."""
    max_queued_videos: int = 4
    """Video jobs one key may have queued or running; beyond, 429 ``rate_limited`` before
    the upload is stored (0: no cap)."""
    max_video_pixels: int = 3840 * 2160
    """Largest video frame (width x height, 4K UHD by default) accepted: a larger one is
    refused at upload with 413 ``video_too_large``, from its headers, before any frame is
    decoded (0: no cap)."""
    max_video_seconds: float = 4 * 3600.0
    """Longest video or audio file (the container's duration) accepted, 4 hours by
    default; a longer one is refused at upload with 413 ``video_too_large`` (0: no cap)."""
    max_upload_disk_bytes: int = 4 * 1024 * 1024 * 1024
    """Disk quota for the uploads the server holds (``DATA/tmp`` and ``DATA/jobs``): an
    upload that would exceed it is refused with 507 ``storage_full`` and ``Retry-After``
    while it is written, and nothing of it is kept (0: no quota)."""
    keep_videos: bool = False
    """Keep a video job's upload once it is indexed, so the review console can play it at
    the times of its timeline, until the job is deleted (``DELETE /v1/videos/{job}``). Off:
    the server keeps the index and never the video. Erasing a person redacts the index,
    not a kept video."""
    request_timeout: float = 120.0
    rate_limit: float = 50.0
    """Requests per second per API key (0: unlimited)."""
    rate_burst: int = 100
    retention_sweep_seconds: float = 60.0
    media_retention_days: float = 0.0
    """Stored media results (the searchable index of videos) are erased by the retention
    sweep this many days after the video was indexed (0: kept until deleted)."""
    require_purpose: bool = True
    """Identify, similar and verify-against-person over HTTP refuse a request without a purpose."""
    console_session_seconds: float = 8 * 3600.0
    """A review console session ends this long after sign-in (sign-out ends it sooner)."""
    # -- ledger checkpoints ---------------------------------------------------------------
    signing_key_file: Path | None = None
    """Ed25519 key that signs ledger checkpoints (None: ``DATA/ledger-signing.key``). Keep it
    on another volume or in a secret store: whoever holds it can vouch for a rewritten history."""
    checkpoint_every_entries: int = 100
    """Sign a checkpoint once this many entries are not covered by one (0: never by count)."""
    checkpoint_every_seconds: float = 60.0
    """...or once entries are uncovered and the last checkpoint is this old (0: never by time)."""
    witness_files: list[Path] = []
    """Append-only files receiving every checkpoint (JSON list in the environment)."""
    witness_urls: list[str] = []
    """HTTP endpoints receiving every checkpoint in a POST (JSON list in the environment)."""
