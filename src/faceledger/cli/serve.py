"""``faceledger serve``: run the HTTP service with JSON logs."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from faceledger.cli.common import fail_cleanly
from faceledger.config import Settings
from faceledger.errors import InvalidArgument


class JsonFormatter(logging.Formatter):
    """One JSON object per line; messages never carry images or embeddings."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S%z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


@fail_cleanly
def serve(
    data: Annotated[
        Path | None, typer.Option(help="Data directory (default FACELEDGER_DATA or ./var).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    index: Annotated[
        str | None,
        typer.Option(
            help="Vector index: faiss (in memory, per replica) or pgvector (HNSW in "
            "PostgreSQL; needs --db postgresql+psycopg://...). Default FACELEDGER_INDEX or faiss."
        ),
    ] = None,
) -> None:
    """Run the REST API (OpenAPI at /openapi.json, docs at /docs).

    The server owns its data folder alone: a second server or a CLI command on it is
    refused (exit 6) while it runs."""
    from faceledger.cli.context import data_dir, database_url
    from faceledger.owner import own
    from faceledger.permissions import check_data_folder, private_umask

    settings = Settings()
    chosen = data or data_dir()
    if chosen is not None:
        settings = settings.model_copy(update={"data": chosen})
    if database_url() is not None:
        settings = settings.model_copy(update={"db_url": database_url()})
    if index is not None:
        if index not in ("faiss", "pgvector"):
            raise InvalidArgument("--index must be faiss or pgvector", index=index)
        settings = settings.model_copy(update={"index": index})
    configure_logging(log_level)
    with private_umask():  # everything the server writes is its owner's only
        check_data_folder(settings.data, policy=settings.fix_permissions)
        with own(settings.data, exclusive=True, what="serve"):  # for the server's whole life
            _serve(settings, host, port)


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from faceledger.api.app import create_app, ensure_admin_key
    from faceledger.service import FaceService

    bootstrap = FaceService(settings)
    path = ensure_admin_key(bootstrap)
    bootstrap.close()
    key_file = settings.data / "admin.key"
    if path is not None:
        typer.echo(f"created the admin API key in {path} (readable only by you)", err=True)
    elif key_file.exists():
        typer.echo(f"admin API key: {key_file}", err=True)
    typer.echo(
        f"faceledger on http://{host}:{port} (docs at /docs), data in {settings.data}", err=True
    )
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)
