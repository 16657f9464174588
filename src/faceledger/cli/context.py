"""The service a CLI command works on, built from ``--data`` / ``FACELEDGER_DATA``.

The service and its store are imported when a command first opens them, so commands that
need neither (``detect``, ``compare``, ``models``) start without loading them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from faceledger.ledger.audit import Actor
    from faceledger.service import FaceService

_state: dict[str, Path | None] = {"data": None}
_database: dict[str, str | None] = {"url": None}


def set_data_dir(path: Path | None) -> None:
    _state["data"] = path


def set_database_url(url: str | None) -> None:
    _database["url"] = url


def database_url() -> str | None:
    """The database chosen with ``--db`` (or None for the settings' ``db_url``)."""
    return _database["url"]


def data_dir() -> Path | None:
    """The data directory chosen with ``--data`` (or None for the settings' default)."""
    return _state["data"]


@contextmanager
def open_service() -> Iterator[FaceService]:
    """A service on the chosen data directory, closed (indexes saved) afterwards.

    The folder is held shared (:mod:`faceledger.owner`): refused while a server owns it.
    Its modes are checked first and what the command writes is its owner's only
    (:mod:`faceledger.permissions`).
    """
    from faceledger.config import Settings
    from faceledger.owner import own
    from faceledger.permissions import check_data_folder, private_umask
    from faceledger.service import FaceService

    settings = Settings()
    if _state["data"] is not None:
        settings = settings.model_copy(update={"data": _state["data"]})
    if _database["url"] is not None:
        settings = settings.model_copy(update={"db_url": _database["url"]})
    with private_umask():
        check_data_folder(settings.data, policy=settings.fix_permissions)
        with own(settings.data, exclusive=False):
            service = FaceService(settings)
            try:
                yield service
            finally:
                service.close()


def local_actor() -> Actor:
    """The local user running the CLI, as recorded in the ledger."""
    from faceledger.service import local_actor as actor

    return actor()
