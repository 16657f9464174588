"""ONNX Runtime session creation: providers and thread counts in one place."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import onnxruntime as ort

from faceledger.errors import ModelError
from faceledger.models.graph import optimise
from faceledger.models.graph_cache import cached_rewrite

log = logging.getLogger(__name__)


def sha256_file(path: Path) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def open_session(
    path: Path,
    *,
    threads: int = 1,
    expected_sha256: str | None = None,
    cache_dir: Path | None = None,
) -> ort.InferenceSession:
    """Open an ONNX model on the CPU, checking its hash first when one is expected.

    ``threads`` is the intra-op thread count; the engine runs several images in parallel,
    so one thread per session call is the efficient default. With ``cache_dir`` the
    rewritten graph is kept there (:mod:`faceledger.models.graph_cache`), keyed by the
    original file's hash, which is checked first all the same.

    Raises:
        ModelError: the file is missing, its hash differs, or ONNX Runtime rejects it.
    """
    if not path.is_file():
        raise ModelError(f"model file not found: {path}")
    actual = sha256_file(path) if expected_sha256 is not None or cache_dir is not None else ""
    if expected_sha256 is not None and actual != expected_sha256:
        raise ModelError(
            f"model file {path.name} has SHA-256 {actual}, expected {expected_sha256}",
            path=str(path),
        )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    rewritten: Path | bytes | None
    if cache_dir is None:
        rewritten = optimise(path)
    else:
        rewritten = cached_rewrite(actual, lambda: optimise(path), cache_dir=cache_dir)
    if rewritten is not None:
        try:
            return ort.InferenceSession(
                str(rewritten) if isinstance(rewritten, Path) else rewritten,
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            log.warning("%s: rewritten graph rejected, loading the original: %s", path.name, exc)
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ModelError(f"ONNX Runtime could not load {path.name}: {exc}") from exc
