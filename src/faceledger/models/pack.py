"""What a model pack is: its files with their hashes, licence, dimension and calibration.

Which packs exist, and how each kind of pack is built into a pipeline, is the business of
:mod:`faceledger.models.packs`, which fills :data:`BUILDERS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceledger.errors import ModelError
from faceledger.models.calibration import Calibration
from faceledger.models.pipeline import FacePipeline


@dataclass(frozen=True, slots=True)
class ModelFile:
    """One model file of a pack and its expected SHA-256 (``None``: not pinned)."""

    role: str
    path: Path
    sha256: str | None


@dataclass(frozen=True, slots=True)
class CalibrationPopulation:
    """Who a calibration's identities were, and who they were not (free text, per the
    calibration id it was written for, so a new calibration never inherits it)."""

    calibration_id: str
    covered: str
    not_covered: str

    @classmethod
    def for_calibration(
        cls, spec: dict[str, Any] | None, calibration: Calibration | None
    ) -> CalibrationPopulation | None:
        """The statement in ``spec`` if it was written for ``calibration``, else ``None``."""
        if not spec or calibration is None or spec.get("calibration") != calibration.calibration_id:
            return None
        return cls(calibration.calibration_id, str(spec["covered"]), str(spec["not_covered"]))


@dataclass(frozen=True)
class ModelPack:
    """A named, hash-pinned set of models whose embeddings share one space."""

    name: str
    kind: str
    description: str
    license: str
    embedding_dim: int
    files: tuple[ModelFile, ...]
    calibration: Calibration | None
    home: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    population: CalibrationPopulation | None = None
    """Which populations the calibration covers, when the pack states it."""

    @property
    def model_id(self) -> str:
        """Identity of the embedding space: pack name plus recogniser hash prefix."""
        rec = next((f for f in self.files if f.role == "recognizer"), None)
        digest = (rec.sha256 or "")[:12] if rec else ""
        return f"{self.name}@{digest}" if digest else self.name

    def require_calibration(self) -> Calibration:
        """The threshold table, or a clear error telling how to make one."""
        if self.calibration is None:
            raise ModelError(
                f"model pack {self.name!r} has no calibrated thresholds; "
                "run `faceledger eval calibrate` on labelled faces to create them"
            )
        return self.calibration

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description for `faceledger models`."""
        cal = self.calibration
        return {
            "name": self.name,
            "kind": self.kind,
            "model_id": self.model_id,
            "description": self.description,
            "license": self.license,
            "embedding_dim": self.embedding_dim,
            "files": [
                {"role": f.role, "file": f.path.name, "sha256": f.sha256} for f in self.files
            ],
            "threshold_at_fmr_1e-4": cal.threshold_for(1e-4) if cal else None,
            "calibration_source": cal.source if cal else None,
            "calibration_population": (
                {"covered": self.population.covered, "not_covered": self.population.not_covered}
                if self.population
                else None
            ),
        }

    def build(self, *, threads: int = 1) -> FacePipeline:
        """Load the models (hash-checked) and return a ready pipeline."""
        builder = BUILDERS.get(self.kind)
        if builder is None:
            raise ModelError(f"unknown model pack kind {self.kind!r}")
        return builder(self, threads)


BUILDERS: dict[str, Callable[[ModelPack, int], FacePipeline]] = {}
"""``pack kind -> builder(pack, threads)``, registered by :mod:`faceledger.models.packs`."""
