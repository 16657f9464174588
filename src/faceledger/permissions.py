"""Data only its owner can read: the data folder 0700, everything in it 0600.

The data folder holds embeddings, names, stored images, video uploads, review crops,
calibrations, the ledger's keys and the admin API key. ``faceledger serve`` and every CLI
command that opens the folder create files under a umask of 077 (:func:`private_umask`),
so a new database (and SQLite's ``-wal``/``-shm``, which copy its mode), index, key,
checkpoint, job, upload or crop is 0600 and a new folder 0700. At start they also check
what is already there (:func:`check_data_folder`): a folder with any group or other
permission bit, or anything in it with one, is reported and then, as
``FACELEDGER_FIX_PERMISSIONS`` says, fixed (``fix``, the default: folders 0700, files
lose their group and other bits), refused (``refuse``: the command stops, nothing is
opened) or only reported (``warn``). Symbolic links are not followed. On PostgreSQL the
database is not a file: only the data folder's own files are checked. A checkpoint
signing key kept elsewhere (``FACELEDGER_SIGNING_KEY_FILE``, a secret store's mount) is
the secret store's to protect.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from faceledger.errors import InvalidArgument, StoreError

log = logging.getLogger("faceledger.permissions")

PRIVATE_UMASK = 0o077
"""Files and folders created while it is in force are readable by their owner only."""
FOLDER_MODE = 0o700
SHOWN = 5
"""Paths named in a message; the rest are counted."""


class Policy(StrEnum):
    """What a start does with a data folder others can read (``FACELEDGER_FIX_PERMISSIONS``)."""

    FIX = "fix"
    REFUSE = "refuse"
    WARN = "warn"


@dataclass(frozen=True, slots=True)
class WideEntry:
    """A folder or file of the data folder with group or other permission bits."""

    path: Path
    mode: int
    """Its permission bits as found (``0o755``...)."""
    is_dir: bool


@dataclass(frozen=True, slots=True)
class PermissionReport:
    """What :func:`check_data_folder` found under a data folder, and what it did."""

    folder: Path
    policy: Policy
    wide: list[WideEntry] = field(default_factory=list)
    fixed: bool = False
    """True when every entry of ``wide`` now has its owner's bits only."""

    @property
    def ok(self) -> bool:
        """Nothing was readable or writable by others."""
        return not self.wide

    def describe(self) -> str:
        """One line naming the first entries found and their modes."""
        shown = ", ".join(f"{e.path} ({e.mode:04o})" for e in self.wide[:SHOWN])
        more = len(self.wide) - SHOWN
        return shown + (f" and {more} more" if more > 0 else "")


@contextmanager
def private_umask() -> Iterator[None]:
    """Create files 0600 and folders 0700 for the block (the umask is the process's)."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def find_wide(folder: Path) -> list[WideEntry]:
    """``folder`` and everything under it whose mode gives any permission to group or
    others. Symbolic links are neither reported nor followed. One ``lstat`` per entry."""
    found: list[WideEntry] = []

    def visit(path: Path) -> None:
        try:
            st = path.lstat()
        except FileNotFoundError:  # removed meanwhile (a finished upload, a rotated file)
            return
        if stat.S_ISLNK(st.st_mode):
            return
        if st.st_mode & 0o077:
            found.append(WideEntry(path, stat.S_IMODE(st.st_mode), stat.S_ISDIR(st.st_mode)))

    if folder.exists():
        visit(folder)
        for root, dirs, files in os.walk(folder, followlinks=False):
            base = Path(root)
            for name in sorted(dirs) + sorted(files):
                visit(base / name)
    return found


def _fix(entries: Iterable[WideEntry]) -> None:
    for e in entries:
        mode = FOLDER_MODE if e.is_dir else e.mode & 0o700
        try:
            os.chmod(e.path, mode, follow_symlinks=False)
        except FileNotFoundError:
            continue
        except OSError as exc:  # not its owner, or a read-only mount
            raise StoreError(
                f"cannot restrict {e.path} ({e.mode:04o}) to its owner: {exc.strerror}."
                f" Run `chmod -R go-rwx` on it as its owner, or set"
                f" FACELEDGER_FIX_PERMISSIONS=warn to start anyway",
                path=str(e.path),
            ) from exc


def check_data_folder(folder: Path, *, policy: Policy | str = Policy.FIX) -> PermissionReport:
    """Make sure only its owner can read ``folder`` (created 0700 if missing).

    Args:
        folder: the data folder; everything under it is checked.
        policy: fix, refuse or warn (see :class:`Policy`).

    Raises:
        StoreError: the policy is ``refuse`` and something is wider than its owner, or
            ``fix`` could not change a mode (another owner, a read-only mount).
        InvalidArgument: an unknown policy.
    """
    chosen = _policy(policy)
    folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
    wide = find_wide(folder)
    report = PermissionReport(folder, chosen, wide)
    if not wide:
        return report
    if chosen is Policy.REFUSE:
        raise StoreError(
            f"the data folder {folder} is readable or writable by others: {report.describe()}."
            f" Run `chmod -R go-rwx {folder}`, or set FACELEDGER_FIX_PERMISSIONS=fix to let"
            " faceledger do it at start",
            paths=[str(e.path) for e in wide],
        )
    if chosen is Policy.WARN:
        log.warning(
            "the data folder %s is readable or writable by others (FACELEDGER_FIX_PERMISSIONS"
            "=warn, left as is): %s",
            folder,
            report.describe(),
        )
        return report
    _fix(wide)
    log.warning("restricted to their owner (folders 0700, files 0600): %s", report.describe())
    return PermissionReport(folder, chosen, wide, fixed=True)


def _policy(value: Policy | str) -> Policy:
    try:
        return Policy(value)
    except ValueError:
        raise InvalidArgument(
            f"FACELEDGER_FIX_PERMISSIONS must be one of fix, refuse, warn; got {value!r}"
        ) from None
