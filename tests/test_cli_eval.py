"""`faceledger eval lfw` and friends, run through the real CLI on LFW-layout data built here."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from faceledger.cli.main import app

pytestmark = pytest.mark.integration


def build_lfw(faces_dir: Path, root: Path, *, per_fold: int = 6, folds: int = 2) -> None:
    """An LFW-layout folder from deepface identities: images/<Person>/<Person>_NNNN.jpg."""
    src = faces_dir / "deepface_tests" / "identities"
    people = {}
    for person_dir in sorted(p for p in src.iterdir() if p.is_dir()):
        name = f"Person_{person_dir.name}"
        (root / "images" / name).mkdir(parents=True)
        files = sorted(person_dir.iterdir())
        for i, f in enumerate(files, start=1):
            shutil.copyfile(f, root / "images" / name / f"{name}_{i:04d}.jpg")
        people[name] = len(files)
    names = [n for n, c in people.items() if c >= 2]
    lines = [f"{folds}\t{per_fold}"]
    for fold in range(folds):
        for k in range(per_fold):
            n = names[(fold * per_fold + k) % len(names)]
            lines.append(f"{n}\t1\t{people[n]}")
        for k in range(per_fold):
            a = names[(fold + k) % len(names)]
            b = names[(fold + k + 3) % len(names)]
            lines.append(f"{a}\t1\t{b}\t2")
    (root / "meta").mkdir()
    (root / "meta" / "pairs.txt").write_text("\n".join(lines) + "\n")


def test_eval_lfw_protocol_on_lfw_layout(faces_dir: Path, tmp_path: Path) -> None:
    build_lfw(faces_dir, tmp_path)
    result = CliRunner().invoke(
        app, ["eval", "lfw", "--root", str(tmp_path), "--folds", "2", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    for key in (
        "accuracy",
        "accuracy_std",
        "tar_at_far_1e-3",
        "images_per_second",
        "faces_not_found",
    ):
        assert key in data
    assert data["pairs"] == 24 and data["folds"] == 2
    assert data["accuracy"] >= 0.9


def test_eval_pairs_on_deepface_csv(faces_dir: Path) -> None:
    csv = faces_dir / "deepface_tests" / "pairs" / "pairs_all.csv"
    result = CliRunner().invoke(app, ["eval", "pairs", str(csv), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] >= 0.99


def test_compare_and_detect_commands(faces_dir: Path) -> None:
    ids = faces_dir / "faceapi_bbt" / "identities"
    runner = CliRunner()
    out = runner.invoke(
        app, ["compare", str(ids / "amy/amy1.png"), str(ids / "amy/amy2.png"), "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data) >= {"similarity", "threshold", "fmr", "same_person"} and data["same_person"]
    out = runner.invoke(app, ["detect", str(faces_dir / "insightface_pkg/group/t1.jpg"), "--json"])
    assert out.exit_code == 0 and len(json.loads(out.stdout)["faces"]) == 6


def test_bad_image_is_one_red_line_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = CliRunner().invoke(app, ["detect", str(bad), "--json"])
    assert result.exit_code == 7  # bad_input (faceledger.cli.common.ExitCode)
    assert "Traceback" not in result.output and "corrupt_image" in result.output


def test_models_lists_licence_and_hashes() -> None:
    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0
    default = next(p for p in json.loads(result.stdout) if p["name"] == "default")
    assert "non-commercial" in default["license"]
    assert default["embedding_dim"] == 512 and default["threshold_at_fmr_1e-4"] > 0
