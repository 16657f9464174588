"""Searches under a cohort-normalised calibration (#14): written by `eval calibrate --fair
--write`, chosen for a collection on request, and applied by identify, verify, similar and
group exactly as the calibration's tables were built.

The cohort is glint360k_celeb24; the gallery is faceapi_bbt's people, none of them in it.
Every expected score is recomputed here from the calibration file's own bytes, by brute
force, not by the code under test.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from faceledger.cli.common import ExitCode
from faceledger.cli.main import app
from faceledger.config import Settings
from faceledger.models.calibration import Calibration
from faceledger.service import FaceService

CACHE = Path(__file__).resolve().parents[1] / ".cache" / "embeddings"


def cohort_of(path: Path) -> tuple[np.ndarray, int]:
    """The cohort faces (float32 from the stored float16) and k, read independently."""
    data = json.loads(path.read_text())["cohort"]
    raw = base64.b64decode(data["data"])
    return np.frombuffer(raw, np.float16).reshape(data["shape"]).astype(np.float32), data["k"]


def cohort_mean(cohort: np.ndarray, k: int, x: np.ndarray) -> float:
    return float(np.sort(cohort @ x)[::-1][:k].mean())


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory, faces_dir: Path) -> tuple[Path, str, Path]:
    """A data folder whose calibration store holds a cohort calibration of glint."""
    data = tmp_path_factory.mktemp("cohort") / "data"
    glint = faces_dir / "glint360k_celeb24" / "images"
    args = ["eval", "calibrate", str(glint), "--aligned", "--fair", "--write"]
    args += ["--store", str(data / "calibrations"), "--cache-dir", str(CACHE.parent), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2259 face embeddings of TREE's people" in result.stderr
    shown = json.loads(result.stdout)
    assert shown["cohort"]["k"] == 200 and shown["cohort"]["faces"] > 2000
    assert "data" not in shown["cohort"]  # the terminal gets its hash, not its faces
    files = list((data / "calibrations").glob(f"*/{shown['id']}.json"))
    assert len(files) == 1
    return data, shown["id"], files[0]


def test_a_written_cohort_calibration_reads_back_and_is_checked(
    written: tuple[Path, str, Path],
) -> None:
    _, cal_id, path = written
    content = json.loads(path.read_text())
    cal = Calibration.from_dict(content)
    assert cal.calibration_id == cal_id and cal.cohort is not None
    assert cal.has_person_tables and cal.meta["fair"]["method"] == "cohort"
    assert cal.provenance["sets"] == ["glint360k_celeb24"]
    tampered = bytearray(base64.b64decode(content["cohort"]["data"]))
    tampered[100] ^= 1
    content["cohort"]["data"] = base64.b64encode(bytes(tampered)).decode()
    with pytest.raises(Exception, match="SHA-256"):
        Calibration.from_dict(content)


def test_searches_apply_the_collection_cohort_calibration(
    written: tuple[Path, str, Path], faces_dir: Path
) -> None:
    data, cal_id, path = written
    cohort, k = cohort_of(path)
    ids = faces_dir / "faceapi_bbt" / "identities"
    probe = str(ids / "sheldon" / "sheldon5.png")  # held out: not enrolled
    svc = FaceService(Settings(data=data))
    try:
        svc.create_collection("bbt", require_consent=False)
        for folder in sorted(p for p in ids.iterdir() if p.is_dir()):
            images = [str(f) for f in sorted(folder.iterdir()) if str(f) != probe]
            svc.enroll("bbt", folder.name, images, largest=True)
        plain = svc.identify("bbt", probe, purpose="before")
        svc.use_calibration("bbt", cal_id)
        found = svc.identify("bbt", probe, purpose="after")
        who = found[0].candidates[0].person
        assert who == plain[0].candidates[0].person == "sheldon"
        verified = svc.verify("bbt", probe, person=who, purpose="after")
        similar = svc.similar("bbt", probe, mode="matchFace", purpose="after")
        query = svc.engine().embed(probe)[0].require_embedding()
        _, gallery = svc.store.face_embeddings("bbt", who)
        entries = [e["request"] for e in svc.ledger.entries() if e["operation"] == "identify"]
        grouping = svc.group(collection="bbt", purpose="after")
    finally:
        svc.close()

    m_query = cohort_mean(cohort, k, query)
    normalised = sorted(
        (float(face @ query) - (m_query + cohort_mean(cohort, k, face)) / 2 for face in gallery),
        reverse=True,
    )
    best = found[0].candidates[0]
    raw = plain[0].candidates[0].similarity
    print(f"\n{who} ({len(gallery)} faces): raw {raw:.4f}, normalised {normalised[0]:.4f}")
    assert best.similarity == pytest.approx(normalised[0], abs=2e-4)
    assert best.similarity < plain[0].candidates[0].similarity  # a cohort mean is positive
    assert verified.similarity == pytest.approx(normalised[0], abs=2e-4) and verified.same_person
    # matchFace ranks by normalised score: the person's faces first, best first
    top = [c.similarity for c in similar.candidates[: len(normalised)]]
    assert top == pytest.approx(normalised, abs=2e-4)
    assert [e["calibration_id"] for e in entries] == [entries[0]["calibration_id"], cal_id]
    assert entries[0]["calibration_id"] != cal_id
    assert grouping.groups  # bbt's people still group under normalised scores


def test_a_cohort_calibration_checked_on_a_set_it_never_saw(
    written: tuple[Path, str, Path], faces_dir: Path
) -> None:
    """`--check` normalises the check data against the calibration's cohort: on imfdb
    (low-resolution crops of Indian film actors, none in glint) the stated rates hold
    within 2x where measurable, and the CLI refuses combinations it cannot honour."""
    data, _, _ = written
    glint = faces_dir / "glint360k_celeb24" / "images"
    args = ["eval", "calibrate", str(glint), "--aligned", "--fair", "--write"]
    args += ["--store", str(data / "calibrations"), "--cache-dir", str(CACHE.parent)]
    check = ["--check", str(faces_dir / "imfdb_subset"), "--layout", "prefix", "--json"]
    result = CliRunner().invoke(app, [*args, *check])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["calibration"]["cohort"]["faces"] > 2000
    rates = {r["stated_fmr"]: r for r in out["check"]["rates"]}
    for stated in (1e-3, 1e-4):
        r = rates[stated]
        measured, fnmr = r["measured_fmr"], r["fnmr"]
        print(f"\nimfdb at stated {stated:.0e}: measured {measured:.2e}, FNMR {fnmr:.3f}")
        assert r["measurable"] and 0.5 <= r["ratio"] <= 2.0, r
    for bad, message in [
        (["--method", "fsn"], "drop --method fsn"),
        (
            [
                "--labels",
                str(faces_dir / "glint360k_celeb24" / "meta" / "gender_distribution.json"),
                *check[:2],
            ],
            "drop --check",
        ),
    ]:
        refused = CliRunner().invoke(app, [*args, *bad])
        assert refused.exit_code == ExitCode.BAD_INPUT and message in refused.output, refused.output
    alone = CliRunner().invoke(app, ["eval", "calibrate", str(glint), "--aligned", "--fair"])
    assert alone.exit_code == ExitCode.BAD_INPUT and "--labels to measure by" in alone.output
