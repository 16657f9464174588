"""A disk cache of rewritten ONNX graphs, so a process does not redo the rewrites at load.

Rewriting (:mod:`faceledger.models.graph`) needs the ``onnx`` package, whose import alone
takes about 0.9 s, plus parsing and re-serialising both models: most of a short CLI
call's model loading. The result depends only on the original file and on the rewrite
code, so it is cached under ``<cache>/<model sha256>-<rewrite code sha256[:16]>.onnx``
with a ``.sha256`` sidecar holding the digest of the cached file. The cache is read only
when that digest matches (a truncated or altered file is rewritten again); a ``.none``
marker records that no rewrite applies to a model. Files are written atomically
(temporary file, then rename), so concurrent processes never see half a file.

The original file's pinned hash is still checked at every load
(:func:`faceledger.models.session.open_session`), and the key is that verified hash.
The cache folder is ``FACELEDGER_GRAPH_CACHE`` (empty: no cache), else
``$XDG_CACHE_HOME/faceledger/graphs`` (``~/.cache/faceledger/graphs``). Trust it as you
trust the installed packages: whoever can write it chooses the graphs that run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path

log = logging.getLogger(__name__)

CACHE_ENV = "FACELEDGER_GRAPH_CACHE"


def graph_cache_dir() -> Path | None:
    """The folder of cached graphs (see the module docstring), or None when disabled."""
    chosen = os.environ.get(CACHE_ENV)
    if chosen is not None:
        return Path(chosen).expanduser() if chosen.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "faceledger" / "graphs"


@cache
def rewrite_code_version() -> str:
    """SHA-256 of the rewrite module's source: any change to the rewrites misses the cache."""
    source = Path(__file__).with_name("graph.py").read_bytes()
    return hashlib.sha256(source).hexdigest()[:16]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_rewrite(
    model_sha256: str, rewrite: Callable[[], bytes | None], *, cache_dir: Path
) -> Path | bytes | None:
    """The rewritten graph of the model whose (verified) hash is ``model_sha256``.

    Returns the cached file's path, or, on a miss, the bytes ``rewrite()`` produced (then
    stored for next time), or None when no rewrite applies. An unwritable cache only
    costs the saving: the rewritten bytes are returned all the same.
    """
    stem = cache_dir / f"{model_sha256}-{rewrite_code_version()}"
    graph, sidecar, none = (stem.with_suffix(s) for s in (".onnx", ".sha256", ".none"))
    if none.is_file():
        return None
    try:
        if graph.is_file() and sidecar.read_text().strip() == _digest(graph):
            return graph
    except OSError:
        pass  # no sidecar yet, or a file vanished under a concurrent writer: rewrite
    data = rewrite()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        if data is None:
            _write_atomically(none, b"")
        else:
            _write_atomically(graph, data)
            _write_atomically(sidecar, hashlib.sha256(data).hexdigest().encode())
    except OSError as exc:  # a read-only home or full disk: run without caching
        log.debug("graph cache %s not written: %s", cache_dir, exc)
    return data
