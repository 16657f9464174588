"""The contract: every promise the README and ``--help`` make is checked here.

- every ``FACELEDGER_*`` setting is read from the environment and has an effect;
- every error ``code`` the README lists is produced by some request, with the HTTP status
  its exception class declares, as RFC 9457 problem+json whose ``type`` resolves on the
  server itself;
- every CLI command and flag the README shows exists.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from faceledger import errors
from faceledger.api.app import ADMIN_KEY_FILE, create_app
from faceledger.cli.main import app as cli_app
from faceledger.config import Settings
from faceledger.service import FaceService

README = Path(__file__).resolve().parents[1] / "README.md"
AMY = "faceapi_bbt/identities/amy"

# -- settings ------------------------------------------------------------------------------
SAMPLE_VALUES: dict[str, str] = {
    "data": "/tmp/faceledger-contract",
    "fix_permissions": "refuse",
    "db_url": "postgresql+psycopg://faceledger:secret@db.internal/faceledger",
    "index": "pgvector",
    "model_pack": "dlib",
    "max_image_bytes": "1234",
    "max_image_pixels": "5678",
    "max_faces_per_image": "3",
    "max_group_faces": "40",
    "detector_input_cap": "320",
    "min_face_size": "42.5",
    "workers": "1",
    "image_slots": "3",
    "max_queued_videos": "2",
    "max_video_pixels": "2073600",
    "max_video_seconds": "60.5",
    "max_upload_disk_bytes": "123456789",
    "image_queue": "5",
    "default_max_fmr": "0.001",
    "cache_dir": "/tmp/faceledger-cache",
    "max_upload_bytes": "999",
    "max_video_bytes": "9999",
    "request_timeout": "7.5",
    "rate_limit": "2.5",
    "rate_burst": "4",
    "retention_sweep_seconds": "3",
    "media_retention_days": "30",
    "require_purpose": "false",
    "console_session_seconds": "120",
    "keep_videos": "true",
    "signing_key_file": "/tmp/faceledger-contract-key/signing.key",
    "checkpoint_every_entries": "17",
    "checkpoint_every_seconds": "12.5",
    "witness_files": '["/tmp/w1.jsonl", "/tmp/w2.jsonl"]',
    "witness_urls": '["http://127.0.0.1:9/witness"]',
}
"""A value for every setting; a new setting must be added here (the test below insists)."""

EFFECT_TESTS: dict[str, str] = {
    "data": "test_data_dir_holds_the_database",
    "fix_permissions": "tests/test_permissions.py::test_a_wide_folder_is_fixed_refused_or_reported",
    "db_url": "tests/test_postgres.py::test_db_url_puts_the_store_on_postgresql",
    "index": "tests/test_pgvector.py::test_index_setting_selects_pgvector",
    "model_pack": "test_model_pack_binds_new_collections",
    "max_image_bytes": "test_image_caps",
    "max_image_pixels": "test_image_caps",
    "max_faces_per_image": "test_face_cap",
    "max_group_faces": "tests/test_abuse.py::test_group_is_capped_and_needs_a_purpose",
    "detector_input_cap": "test_detector_input_cap_and_min_face_size",
    "min_face_size": "test_detector_input_cap_and_min_face_size",
    "workers": "test_workers",
    "image_slots": "tests/test_abuse.py::test_images_beyond_the_budget_are_refused_with_503",
    "max_queued_videos": "tests/test_abuse.py::test_video_queue_is_capped_per_key",
    "max_video_pixels": "tests/test_abuse.py::test_video_caps_and_the_upload_disk_quota",
    "max_video_seconds": "tests/test_abuse.py::test_video_caps_and_the_upload_disk_quota",
    "max_upload_disk_bytes": "tests/test_abuse.py::test_video_caps_and_the_upload_disk_quota",
    "image_queue": "tests/test_abuse.py::test_images_beyond_the_budget_are_refused_with_503",
    "default_max_fmr": "test_default_max_fmr",
    "cache_dir": "test_cache_dir_receives_caches",
    "max_upload_bytes": "test_http_limits",
    "max_video_bytes": "test_http_limits",
    "request_timeout": "tests/test_unit_of_work.py::test_a_timed_out_enrolment_is_never_stored",
    "rate_limit": "test_error_codes_over_http",
    "rate_burst": "test_rate_limit_burst",
    "retention_sweep_seconds": "tests/test_api.py::test_retention_erases_expired_person",
    "media_retention_days": "tests/test_media_index.py::"
    "test_media_results_expire_after_media_retention_days",
    "require_purpose": "test_error_codes_over_http",
    "console_session_seconds": "tests/test_review.py::test_console_session_expires",
    "keep_videos": "tests/test_console.py::test_a_video_timeline_shows_who_appears_when",
    "signing_key_file": "tests/test_ledger_proofs.py::"
    "test_signing_key_file_holds_the_key_outside_the_data_folder",
    "checkpoint_every_entries": "tests/test_ledger_proofs.py::"
    "test_checkpoint_every_entries_signs_on_schedule",
    "checkpoint_every_seconds": "tests/test_ledger_proofs.py::"
    "test_checkpoint_every_seconds_signs_a_quiet_ledger",
    "witness_files": "tests/test_ledger_proofs.py::test_witness_files_receive_every_checkpoint",
    "witness_urls": "tests/test_ledger_proofs.py::"
    "test_witness_urls_get_every_checkpoint_after_failures",
}
"""Which test shows each setting's effect."""


def test_every_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fields = set(Settings.model_fields)
    assert fields == set(SAMPLE_VALUES), "a setting without a contract check"
    assert fields == set(EFFECT_TESTS)
    for name, value in SAMPLE_VALUES.items():
        monkeypatch.setenv(f"FACELEDGER_{name.upper()}", value)
    settings = Settings()
    for name, value in SAMPLE_VALUES.items():
        got = getattr(settings, name)
        expected: Any = {"false": False, "true": True}.get(value, value)
        if isinstance(got, list):  # list settings are given as JSON, as pydantic reads them
            got, expected = [str(g) for g in got], json.loads(value)
        if isinstance(got, Path):
            got = str(got)
        assert str(got) == str(expected) or got == type(got)(expected), name


def test_every_effect_test_exists() -> None:
    here = Path(__file__).read_text(encoding="utf-8")
    for setting, test in EFFECT_TESTS.items():
        if "::" in test:
            file, name = test.split("::")
            source = (README.parent / file).read_text(encoding="utf-8")
        else:
            source, name = here, test
        assert f"def {name}(" in source, (setting, test)


def test_data_dir_holds_the_database(tmp_path: Path) -> None:
    svc = FaceService(Settings(data=tmp_path / "elsewhere"))
    svc.create_collection("c", require_consent=False)
    svc.close()
    assert (tmp_path / "elsewhere" / "faceledger.db").is_file()


def test_model_pack_binds_new_collections(tmp_path: Path) -> None:
    pytest.importorskip("dlib")
    svc = FaceService(Settings(data=tmp_path / "d", model_pack="dlib"))
    col = svc.create_collection("c", require_consent=False)
    svc.close()
    assert col.model_pack == "dlib" and col.embedding_dim == 128


@pytest.fixture(scope="module")
def faces(request: pytest.FixtureRequest) -> Path:
    return Path(str(request.getfixturevalue("faces_dir")))


def test_image_caps(tmp_path: Path, faces_dir: Path) -> None:
    image = (faces_dir / AMY / "amy1.png").read_bytes()
    small = FaceService(Settings(data=tmp_path / "a", max_image_bytes=len(image) - 1))
    with pytest.raises(errors.ImageTooLarge):
        small.detect(image)
    small.close()
    few = FaceService(Settings(data=tmp_path / "b", max_image_pixels=100 * 100))
    with pytest.raises(errors.ImageTooLarge):
        few.detect(image)  # 150x150
    few.close()
    enough = FaceService(Settings(data=tmp_path / "c"))
    assert enough.detect(image)
    enough.close()


def test_face_cap(tmp_path: Path, faces_dir: Path) -> None:
    group = str(faces_dir / "facenet_pytorch/group/multiface.jpg")
    svc = FaceService(Settings(data=tmp_path / "d", max_faces_per_image=2))
    svc.create_collection("c", require_consent=False)
    assert len(svc.detect(group)) == 2
    assert len(svc.identify("c", group)) == 2
    svc.close()
    free = FaceService(Settings(data=tmp_path / "e"))
    assert len(free.detect(group)) > 2
    free.close()


def test_detector_input_cap_and_min_face_size(tmp_path: Path, faces_dir: Path) -> None:
    group = str(faces_dir / "facenet_pytorch/group/multiface.jpg")
    counts = {}
    for name, kw in {
        "default": {},
        "coarse": {"detector_input_cap": 96},
        "large_only": {"min_face_size": 400.0},
    }.items():
        svc = FaceService(Settings(data=tmp_path / name, **kw))  # type: ignore[arg-type]
        counts[name] = len(svc.detect(group))
        svc.close()
    assert counts["default"] >= 4
    assert counts["coarse"] < counts["default"]
    assert counts["large_only"] < counts["default"]


def test_workers(tmp_path: Path) -> None:
    svc = FaceService(Settings(data=tmp_path / "d", workers=1))
    assert svc.engine().workers == 1
    svc.close()


def test_default_max_fmr(tmp_path: Path, faces_dir: Path) -> None:
    svc = FaceService(Settings(data=tmp_path / "d", default_max_fmr=1e-2))
    svc.create_collection("c", require_consent=False)
    images = sorted((faces_dir / AMY).iterdir())
    svc.enroll("c", "amy", images[:2])
    svc.identify("c", images[2])
    svc.verify("c", images[2], "amy")
    asked = [e["request"]["max_fmr"] for e in svc.ledger.entries() if "max_fmr" in e["request"]]
    svc.close()
    assert asked == [1e-2, 1e-2]


def test_cache_dir_receives_caches(tmp_path: Path, faces_dir: Path) -> None:
    cache = tmp_path / "cache"
    result = CliRunner().invoke(
        cli_app,
        ["eval", "verify", "--tree", str(faces_dir / "dlib_examples/johns"), "--per-person", "2"],
        env={"FACELEDGER_CACHE_DIR": str(cache)},
    )
    assert result.exit_code == 0, result.output
    assert any(cache.rglob("*")), "the evaluation cache was not written under the cache dir"


# -- HTTP: limits and error codes ---------------------------------------------------------
@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    data = tmp_path_factory.mktemp("contract") / "data"
    settings = Settings(
        data=data,
        rate_limit=0,
        max_upload_bytes=2_000_000,
        max_video_bytes=3_000_000,
        require_purpose=True,
    )
    with TestClient(create_app(settings)) as client:
        key = (data / ADMIN_KEY_FILE).read_text().strip()
        yield client, key


def readme_error_codes() -> list[str]:
    text = README.read_text(encoding="utf-8")
    block = text[text.index("with a stable `code`") + len("with a stable `code`") :]
    block = block[: block.index(")")]
    return re.findall(r"`([a-z_]+)`", block)


def problem_check(response: Any, code: str) -> None:
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json"), body
    assert body["code"] == code, body
    assert body["status"] == response.status_code
    assert body["type"] == f"/problems/{code}"


def test_error_codes_over_http(
    api: tuple[TestClient, str], faces_dir: Path, tmp_path: Path
) -> None:
    client, admin = api
    h = {"X-API-Key": admin}
    amy = (faces_dir / AMY / "amy1.png").read_bytes()
    white = (faces_dir / "faceapi_bbt/test_images/white.png").read_bytes()
    group = (faces_dir / "facenet_pytorch/group/multiface.jpg").read_bytes()
    client.post("/v1/collections", json={"name": "k"}, headers=h)
    client.post("/v1/collections", json={"name": "open", "require_consent": False}, headers=h)
    client.post("/v1/collections/open/persons", json={"name": "amy"}, headers=h)
    searcher = client.post("/v1/keys", json={"role": "searcher"}, headers=h).json()["key"]
    # a real low-quality face (a blurred, low-contrast film still)
    low = (faces_dir / "imfdb_subset/Avinash/Avinash_13.jpg").read_bytes()
    enrol = "/v1/collections/open/persons/amy/faces"
    produced: dict[str, Any] = {
        "no_face": client.post(enrol, content=white, headers=h),
        "image_too_large": client.post(enrol, content=b"\xff" * 2_100_000, headers=h),
        "unsupported_format": client.post(enrol, content=b"just some text", headers=h),
        "corrupt_image": client.post(enrol, content=amy[: len(amy) // 3], headers=h),
        "quality_too_low": client.post(enrol, content=low, headers=h),
        "multiple_faces": client.post(enrol, content=group, headers=h),
        "purpose_required": client.post("/v1/collections/open/identify", content=amy, headers=h),
        "consent_required": client.post("/v1/collections/k/persons", json={"name": "x"}, headers=h),
        "not_found": client.get("/v1/collections/nowhere", headers=h),
        "forbidden": client.post(
            "/v1/collections", json={"name": "z"}, headers={"X-API-Key": searcher}
        ),
        "unauthenticated": client.get("/v1/collections"),
    }
    by_code = {cls.code: cls for cls in _subclasses(errors.FaceledgerError) if cls.code in produced}
    for code, response in produced.items():
        problem_check(response, code)
        assert response.status_code == by_code[code].http_status, code
        described = client.get(f"/problems/{code}").json()
        assert described["status"] == response.status_code
    limited = Settings(data=tmp_path / "rl", rate_limit=1, rate_burst=1)
    with TestClient(create_app(limited)) as c2:
        key = (tmp_path / "rl" / ADMIN_KEY_FILE).read_text().strip()
        answers = [c2.get("/v1/collections", headers={"X-API-Key": key}) for _ in range(3)]
    assert answers[0].status_code == 200
    problem_check(answers[-1], "rate_limited")
    assert answers[-1].status_code == 429 and int(answers[-1].headers["Retry-After"]) >= 1
    produced["rate_limited"] = answers[-1]
    busy = Settings(data=tmp_path / "busy", rate_limit=0, image_slots=1, image_queue=0)
    with TestClient(create_app(busy)) as c4:
        key = (tmp_path / "busy" / ADMIN_KEY_FILE).read_text().strip()
        with c4.app.state.service.gate.slot():  # the one image slot is in work
            answer = c4.post("/v1/detect", content=amy, headers={"X-API-Key": key})
        after = c4.post("/v1/detect", content=amy, headers={"X-API-Key": key})
    problem_check(answer, "overloaded")
    assert answer.status_code == 503 and int(answer.headers["Retry-After"]) >= 1
    assert after.status_code == 200, after.json()
    produced["overloaded"] = answer
    assert set(readme_error_codes()) <= set(produced), "a README error code nothing produces"
    assert set(produced) <= set(readme_error_codes()), "an error code the README does not list"
    relaxed = Settings(data=tmp_path / "rp", rate_limit=0, require_purpose=False)
    with TestClient(create_app(relaxed)) as c3:
        key = (tmp_path / "rp" / ADMIN_KEY_FILE).read_text().strip()
        c3.post(
            "/v1/collections",
            json={"name": "o", "require_consent": False},
            headers={"X-API-Key": key},
        )
        ok = c3.post("/v1/collections/o/identify", content=amy, headers={"X-API-Key": key})
    assert ok.status_code == 200, ok.json()


def test_rate_limit_burst(tmp_path: Path) -> None:
    settings = Settings(data=tmp_path / "d", rate_limit=0.01, rate_burst=5)
    with TestClient(create_app(settings)) as client:
        key = (tmp_path / "d" / ADMIN_KEY_FILE).read_text().strip()
        codes = [
            client.get("/v1/collections", headers={"X-API-Key": key}).status_code for _ in range(7)
        ]
    assert codes[:5] == [200] * 5 and codes[5:] == [429, 429]


def test_face_limit_is_a_conflict_not_a_rate_limit() -> None:
    assert errors.LimitExceeded.http_status == 409
    assert issubclass(errors.LimitExceeded, errors.Conflict)
    assert errors.RateLimited.code == "rate_limited" and errors.RateLimited.http_status == 429


def test_http_limits(api: tuple[TestClient, str]) -> None:
    client, admin = api
    client.post(
        "/v1/collections",
        json={"name": "limits", "require_consent": False},
        headers={"X-API-Key": admin},
    )
    h = {"X-API-Key": admin, "content-length": "2000001"}
    big = client.post("/v1/collections/limits/identify", content=b"x" * 2_000_001, headers=h)
    problem_check(big, "image_too_large")
    video = client.post(
        "/v1/videos",
        params={"collection": "limits", "purpose": "contract"},
        content=b"x" * 3_000_001,
        headers={"X-API-Key": admin},
    )
    assert video.status_code == 413
    within = client.post(
        "/v1/videos",
        params={"collection": "limits", "purpose": "contract"},
        content=b"x" * 2_500_000,
        headers={"X-API-Key": admin},
    )
    assert within.status_code == 202  # over the image cap, under the video cap


def _subclasses(cls: type[errors.FaceledgerError]) -> list[type[errors.FaceledgerError]]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_subclasses(sub))
    return out


# -- CLI: every command and flag the README shows ------------------------------------------
def readme_commands() -> list[list[str]]:
    """The ``faceledger ...`` lines of the README's code blocks, as words."""
    text = README.read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if not line.startswith("faceledger "):
                continue
            # "a | b": b is either more flags of a, or a sibling command ("audit verify |
            # audit export"); "--face-index N | --largest" stays one command.
            parts = [shlex.split(part) for part in line.split(" | ")]
            commands.append(parts[0])
            for part in parts[1:]:
                if part and not part[0].startswith(("-", "[")):
                    commands.append(["faceledger", *part])
                else:
                    commands[-1].extend(part)
    return commands


def test_readme_commands_and_flags_exist() -> None:
    runner = CliRunner()
    commands = readme_commands()
    assert len(commands) >= 15
    missing = []
    for words in commands:
        path: list[str] = []
        for w in words[1:]:
            if w.startswith("-") or w.startswith("[") or not w.replace("-", "").isalpha():
                break
            probe = runner.invoke(cli_app, [*path, w, "--help"])
            if probe.exit_code != 0:
                break
            path.append(w)
        help_text = runner.invoke(
            cli_app, [*path, "--help"], terminal_width=400, env={"COLUMNS": "400"}
        ).output  # wide enough that rich never cuts an option name short
        for flag in re.findall(r"(--[a-z][a-z0-9-]*)", " ".join(words)):
            if flag not in help_text and flag != "--help":
                missing.append((" ".join(path), flag))
    assert missing == []
