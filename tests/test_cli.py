"""The face-database CLI as a script uses it: JSON that parses, documented exit codes,
global options anywhere, confirmation before erasing, idempotent folder enrolment, batch
searches, and rename/merge/move visible in later results and in the ledger.

Every test works on a fresh data folder, through the Typer app in-process.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from faceledger.cli import common
from faceledger.cli.common import ExitCode, exit_code_for, to_jsonable
from faceledger.cli.main import app, hoist_global_options

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.usefixtures("any_store")  # each test on SQLite and on PostgreSQL
Run = Callable[..., Any]


@pytest.fixture
def cli(tmp_path: Path) -> Run:
    """``cli(*args, code=0)``: run faceledger on a fresh data folder (``--data`` last, as a
    user may type it), check the exit code, and return the parsed JSON (or the output)."""
    runner = CliRunner()
    data = tmp_path / "data"

    def run(*args: str, code: int = 0, data_first: bool = False, input: str | None = None) -> Any:
        where = ["--data", str(data)]
        argv = [*where, *args] if data_first else [*args, *where]
        result = runner.invoke(app, argv, input=input)
        assert result.exit_code == code, (argv, result.output)
        if "--json" in args and code == 0:
            text = result.stdout  # after any answer to a confirmation, echoed by the runner
            return json.loads(text[min(i for i in (text.find("{"), text.find("[")) if i >= 0) :])
        return result.output

    return run


@pytest.fixture
def tree(tmp_path: Path, faces_dir: Path) -> Path:
    """A small ``<person>/<images>`` tree: three people of faceapi_bbt, four photos each."""
    root = tmp_path / "tree"
    for person in ("amy", "sheldon", "penny"):
        (root / person).mkdir(parents=True)
        for i in range(1, 5):
            src = faces_dir / "faceapi_bbt/identities" / person / f"{person}{i}.png"
            shutil.copy(src, root / person / src.name)
    return root


def test_global_options_are_hoisted_from_anywhere() -> None:
    assert hoist_global_options(["collection", "create", "X", "--data", "D"]) == [
        "--data",
        "D",
        "collection",
        "create",
        "X",
    ]
    assert hoist_global_options(["detect", "--data=D", "a.png"]) == ["--data=D", "detect", "a.png"]
    assert hoist_global_options(["x", "--", "--data", "D"]) == ["x", "--", "--data", "D"]


def test_exit_code_table_is_in_the_readme_and_matches_the_errors() -> None:
    text = README.read_text(encoding="utf-8")
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| `{code.name.lower()}` \|", text, re.M), code
    assert exit_code_for("no_face") is ExitCode.NO_FACE
    assert exit_code_for("not_found") is ExitCode.NOT_FOUND
    for refused in ("quality_too_low", "multiple_faces", "consent_required", "purpose_required"):
        assert exit_code_for(refused) is ExitCode.REFUSED
    assert exit_code_for("limit_exceeded") is ExitCode.CONFLICT
    assert exit_code_for("corrupt_image") is ExitCode.BAD_INPUT
    assert exit_code_for("store_error") is ExitCode.ERROR


def test_to_jsonable_handles_dates_enums_and_models() -> None:
    from datetime import UTC, datetime

    from faceledger.ledger.keys import Role

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert json.dumps(to_jsonable({"at": when, "role": Role.ADMIN, "ids": {1}})) == (
        '{"at": "2026-01-02T03:04:05+00:00", "role": "admin", "ids": [1]}'
    )


def test_collection_and_person_commands_json_and_exit_codes(cli: Run, tree: Path) -> None:
    created = cli("collection", "create", "c", "--json")
    assert created["name"] == "c" and created["created_at"].startswith("20")
    cli("collection", "create", "c", code=ExitCode.CONFLICT)
    assert [c["name"] for c in cli("collection", "list", "--json", data_first=True)] == ["c"]
    cli("person", "list", "nope", "--json", code=ExitCode.NOT_FOUND)
    # consent is required by default: refused, and the message names the fix
    out = cli("enroll", "c", "amy", str(tree / "amy/amy1.png"), code=ExitCode.REFUSED)
    assert "--consent" in out and "--no-require-consent" in out
    first = cli("enroll-folder", "c", str(tree), "--consent", "form-1", "--json")
    assert first["summary"]["enrolled"] == 12 and first["summary"]["skipped"] == 0
    again = cli("enroll-folder", "c", str(tree), "--consent", "form-1", "--json")
    assert again["summary"]["enrolled"] == 0 and again["summary"]["skipped"] == 12
    people = {p["name"]: p for p in cli("person", "list", "c", "--json")}
    assert {n: p["face_count"] for n, p in people.items()} == {"amy": 4, "sheldon": 4, "penny": 4}
    assert people["amy"]["created_at"].startswith("20")
    text = cli("enroll", "c", "amy", str(tree / "amy/amy1.png"))
    assert "skipped (duplicate" in text
    dup = cli("enroll", "c", "amy", str(tree / "amy/amy1.png"), "--allow-duplicates", "--json")
    assert dup["enrolled"] == 1 and dup["skipped"] == 0


def test_refusals_and_failures_exit_non_zero(cli: Run, faces_dir: Path, tmp_path: Path) -> None:
    white = faces_dir / "faceapi_bbt/test_images/white.png"
    amy = faces_dir / "faceapi_bbt/identities/amy/amy1.png"
    cli("collection", "create", "c", "--no-require-consent")
    out = cli("enroll", "c", "amy", str(white), code=ExitCode.NO_FACE)
    assert "no_face" in out
    out = cli("identify", "c", str(white), code=ExitCode.NO_FACE)
    assert "no face found in" in out and "white.png" in out
    cli("identify", "nope", str(amy), code=ExitCode.NOT_FOUND)
    out = cli("compare", str(amy), str(white), code=ExitCode.NO_FACE)
    assert "white.png" in out
    group = faces_dir / "faceapi_bbt/group/bbt1.jpg"
    out = cli("enroll", "c", "x", str(group), code=ExitCode.REFUSED)
    assert "multiple_faces" in out and "--largest" in out and "--face-index" in out
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    cli("detect", str(bad), code=ExitCode.BAD_INPUT)
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(amy, flat / "amy1.png")
    out = cli("enroll-folder", "c", str(flat), code=ExitCode.BAD_INPUT)
    assert "<person>" in out
    cli("collection", "create", "--json", code=ExitCode.USAGE)  # Typer: missing argument


def test_destructive_commands_confirm(
    cli: Run, faces_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    amy = faces_dir / "faceapi_bbt/identities/amy"
    cli("collection", "create", "c", "--no-require-consent")
    enrolled = cli("enroll", "c", "amy", str(amy / "amy1.png"), str(amy / "amy2.png"), "--json")
    face_id = enrolled["results"][0]["face_id"]
    out = cli("person", "delete", "c", "amy", code=ExitCode.USAGE)
    assert "--yes" in out
    cli("face", "delete", "c", str(face_id), code=ExitCode.USAGE)
    cli("collection", "delete", "c", code=ExitCode.USAGE)
    monkeypatch.setattr(common, "interactive", lambda: True)
    cli("person", "delete", "c", "amy", input="n\n", code=ExitCode.ABORTED)
    assert cli("person", "list", "c", "--json")[0]["face_count"] == 2
    assert cli("face", "delete", "c", str(face_id), "--json", input="y\n")["deleted"]
    erased = cli("person", "delete", "c", "amy", "--yes", "--json")
    assert erased == {"person": "amy", "faces_erased": 1}
    assert cli("collection", "delete", "c", "-y", "--json")["deleted"]
    assert cli("collection", "list", "--json") == []


def test_rename_merge_and_move_show_in_identify_and_the_ledger(
    cli: Run, tree: Path, faces_dir: Path, tmp_path: Path
) -> None:
    cli("collection", "create", "c", "--no-require-consent")
    amy = sorted((tree / "amy").iterdir())
    cli("enroll", "c", "amy", *map(str, amy[:2]))
    cli("enroll", "c", "amy_again", *map(str, amy[2:]))
    for person in ("sheldon", "penny"):
        cli("enroll", "c", person, *map(str, sorted((tree / person).iterdir())))
    renamed = cli("person", "rename", "c", "sheldon", "sheldon_cooper", "--json")
    assert renamed["name"] == "sheldon_cooper" and renamed["face_count"] == 4
    merged = cli("person", "merge", "c", "amy_again", "amy", "--json")
    assert merged["name"] == "amy" and merged["face_count"] == 4
    ids = faces_dir / "faceapi_bbt/identities"
    probes = [ids / "sheldon/sheldon5.png", ids / "amy/amy5.png"]
    found = cli("identify", "c", *map(str, probes), "--purpose", "test", "--json")
    assert found["failed"] == 0
    top = [r["faces"][0]["candidates"][0]["person"] for r in found["results"]]
    assert top == ["sheldon_cooper", "amy"]
    faces = [
        f["face_id"]
        for f in cli("enroll", "c", "amy", str(ids / "amy/amy5.png"), "--json")["results"]
    ]
    moved = cli("face", "move", "c", *map(str, faces), "--to", "penny", "--json")
    assert moved["to"]["face_count"] == 5 and moved["moved"] == faces
    verified = cli(
        "verify", "c", str(ids / "sheldon/sheldon5.png"), "--person", "sheldon_cooper", "--json"
    )
    assert verified["same_person"]

    from faceledger.config import Settings
    from faceledger.service import FaceService

    svc = FaceService(Settings(data=tmp_path / "data"))
    try:
        ops = [e["operation"] for e in svc.ledger.entries(limit=1000)]
        assert {"person.update", "person.merge", "face.move"} <= set(ops)
        rename = next(
            e for e in svc.ledger.entries(limit=1000) if e["operation"] == "person.update"
        )
        assert rename["request"]["changed"] == ["name"]
    finally:
        svc.close()


def test_batch_detect_identify_and_verify_take_folders(
    cli: Run, tree: Path, faces_dir: Path, tmp_path: Path
) -> None:
    batch = tmp_path / "batch"
    batch.mkdir()
    shutil.copy(faces_dir / "faceapi_bbt/test_images/white.png", batch / "white.png")
    for person in ("amy", "penny"):
        shutil.copy(tree / person / f"{person}1.png", batch / f"{person}.png")
    (batch / "notes.txt").write_text("not an image: ignored in a folder")
    detected = cli("detect", str(batch), "--json", code=0)
    assert [Path(r["image"]).name for r in detected["results"]] == [
        "amy.png",
        "penny.png",
        "white.png",
    ]
    assert [len(r["faces"]) for r in detected["results"]] == [1, 1, 0]
    cli("collection", "create", "c", "--no-require-consent")
    cli("enroll-folder", "c", str(tree))
    out = cli("identify", "c", str(batch), "--json", code=ExitCode.NO_FACE)
    document = json.loads(out[out.index("{") :])
    assert document["failed"] == 1
    by_name = {Path(r["image"]).name: r for r in document["results"]}
    assert by_name["white.png"]["error"]["code"] == "no_face"
    assert by_name["penny.png"]["faces"][0]["candidates"][0]["person"] == "penny"
    verified = cli("verify", "c", str(tree / "amy"), "--person", "amy", "--json")
    assert verified["failed"] == 0 and all(r["same_person"] for r in verified["results"])
    similar = cli("similar", "c", str(tree / "amy/amy1.png"), "--json")
    assert similar["similar"][0]["person"] == "amy"
    grouped = cli("group", str(batch), "--json")
    assert "groups" in grouped and "messy_group" in grouped
