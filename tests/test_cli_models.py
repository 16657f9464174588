"""`faceledger models show`: a stored model card is read as a typed card, or refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceledger.cli.common import ExitCode
from faceledger.cli.models import models_app


@pytest.mark.parametrize(
    "text",
    [
        '{"model": {"pack": "default"}}',  # a card missing its figures
        '{"model": {"pack": "default"}, "data": {}, "verification": []}',  # wrong shapes
        "[1, 2]",  # JSON, but not a card
        "{not json",
    ],
)
def test_a_malformed_card_is_one_red_line_not_a_traceback(tmp_path: Path, text: str) -> None:
    cards = tmp_path / "model-cards"
    cards.mkdir()
    (cards / "default.json").write_text(text, encoding="utf-8")
    for extra in ([], ["--json"]):
        out = CliRunner().invoke(
            models_app, ["show", "default", "--cache-dir", str(tmp_path), *extra]
        )
        assert out.exit_code == ExitCode.ERROR, out.output
        assert out.exception is None or isinstance(out.exception, SystemExit), out.exception
        assert "model card" in out.output and "default.json" in out.output


def test_the_population_statement_belongs_to_one_calibration() -> None:
    from faceledger.models.calibration import calibrate
    from faceledger.models.pack import CalibrationPopulation
    from faceledger.models.packs import load_pack

    pack = load_pack("default")
    assert pack.calibration is not None and pack.population is not None
    assert pack.population.calibration_id == pack.calibration.calibration_id
    listed = CliRunner().invoke(models_app, ["--json"])
    [default] = [p for p in json.loads(listed.stdout) if p["name"] == "default"]
    assert default["calibration_population"]["covered"].startswith("24 adult public figures")
    spec = {"calibration": pack.calibration.calibration_id, "covered": "a", "not_covered": "b"}
    assert CalibrationPopulation.for_calibration(spec, pack.calibration) is not None
    other = calibrate(np.linspace(-0.2, 0.3, 20_000).astype(np.float32), source="another set")
    assert CalibrationPopulation.for_calibration(spec, other) is None  # not inherited
    assert CalibrationPopulation.for_calibration(None, pack.calibration) is None
