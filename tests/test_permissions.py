"""Data only its owner can read (#12): the data folder 0700 and every file in it 0600.

Checked on real processes started with the usual umask of 022 (under which a new file is
0644 unless faceledger sees to it): after a server has enrolled, searched, indexed a
video and signed checkpoints, and after CLI commands; and a folder made readable by
others is fixed, refused or reported as ``FACELEDGER_FIX_PERMISSIONS`` says.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from faceledger.permissions import Policy, check_data_folder, find_wide
from tests.test_api import start_server, stop_server

pytestmark = pytest.mark.integration

AMY = Path("faceapi_bbt/identities/amy")
WIDE_UMASK = 0o022


def modes(folder: Path) -> dict[str, int]:
    """``relative path -> permission bits`` of the folder and everything under it."""
    out = {".": stat.S_IMODE(folder.stat().st_mode)}
    for path in sorted(folder.rglob("*")):
        if not path.is_symlink():
            out[str(path.relative_to(folder))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def assert_private(folder: Path) -> dict[str, int]:
    found = modes(folder)
    wide = {p: f"{m:04o}" for p, m in found.items() if m & 0o077}
    assert not wide, f"readable or writable by others: {wide}"
    for path, mode in found.items():
        expected = 0o700 if (folder / path).is_dir() else 0o600
        assert mode == expected, (path, f"{mode:04o}")
    return found


@contextmanager
def wide_umask() -> Iterator[None]:
    """Child processes started in the block inherit the usual umask (files 0644)."""
    previous = os.umask(WIDE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def cli(data: Path, *args: str, policy: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ}
    env.pop("FACELEDGER_FIX_PERMISSIONS", None)
    if policy is not None:
        env["FACELEDGER_FIX_PERMISSIONS"] = policy
    return subprocess.run(
        [sys.executable, "-m", "faceledger", "--data", str(data), *args],
        capture_output=True,
        text=True,
        env=env,
        umask=WIDE_UMASK,
        timeout=300,
        check=False,
    )


def test_files_are_private_after_serve(
    tmp_path_factory: pytest.TempPathFactory, faces_dir: Path
) -> None:
    data = tmp_path_factory.mktemp("perm-serve") / "data"
    with wide_umask():
        server = start_server(data, FACELEDGER_RATE_LIMIT="0")
    try:
        with server.client() as admin:
            admin.create_collection("c", require_consent=False)
            admin.create_person("c", "amy")
            for image in sorted((faces_dir / AMY).iterdir())[:2]:
                admin.enroll("c", "amy", image)
            admin.identify("c", faces_dir / AMY / "amy3.png", purpose="permissions test")
            admin.export_person("c", "amy")
        headers = {"X-API-Key": server.admin_key}
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as http:
            video = (faces_dir / "faceapi_bbt" / "video" / "video.mp4").read_bytes()
            job = http.post(
                "/v1/videos",
                params={"collection": "c", "purpose": "test", "fps": 1, "ocr": False},
                content=video,
            )
            assert job.status_code == 202, job.text
            deadline = time.monotonic() + 120
            while http.get(f"/v1/videos/{job.json()['job']}").json()["status"] not in (
                "done",
                "failed",
            ):
                assert time.monotonic() < deadline, "the video job did not finish"
                time.sleep(0.2)
            assert http.post("/v1/audit/checkpoints").status_code == 201
        # while it runs: SQLite's write-ahead log and shared memory too
        running = assert_private(data)
        assert {"faceledger.db-wal", "faceledger.db-shm"} <= set(running), sorted(running)
    finally:
        stop_server(server)
    after = assert_private(data)
    for name in ("faceledger.db", "admin.key", "ledger.key", "ledger-signing.key", "ledger.head"):
        assert name in after, sorted(after)
    assert {"index", "jobs", "tmp"} <= set(after), sorted(after)  # video uploads went there
    assert any(p.startswith("index/") for p in after), sorted(after)  # saved index files


def test_files_are_private_after_cli_use(tmp_path: Path, faces_dir: Path) -> None:
    data = tmp_path / "data"
    steps = [
        ("collection", "create", "c", "--no-require-consent"),
        ("enroll", "c", "amy", str(faces_dir / AMY / "amy1.png")),
        ("identify", "c", str(faces_dir / AMY / "amy3.png"), "--purpose", "permissions test"),
        ("audit", "checkpoint"),
        ("audit", "export", "--out", str(data / "ledger.jsonl")),
    ]
    for step in steps:
        done = cli(data, *step)
        assert done.returncode == 0, (step, done.stderr)
        assert "restricted to their owner" not in done.stderr  # nothing was ever wide
    found = assert_private(data)
    for name in ("faceledger.db", "ledger.key", "ledger-signing.key", "ledger.jsonl"):
        assert name in found, sorted(found)


def _widen(folder: Path) -> dict[str, int]:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return modes(folder)


def test_a_wide_folder_is_fixed_refused_or_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli(data, "collection", "create", "c", "--no-require-consent").returncode == 0
    wide = _widen(data)
    assert "faceledger.db" in wide and wide["."] == 0o755

    refused = cli(data, "collection", "list", "--json", policy="refuse")
    assert refused.returncode == 1, refused.stderr
    assert "readable or writable by others" in refused.stderr
    assert "chmod -R go-rwx" in refused.stderr and "FIX_PERMISSIONS=fix" in refused.stderr
    assert refused.stdout == ""  # nothing was opened nor listed
    assert modes(data) == wide

    warned = cli(data, "collection", "list", "--json", policy="warn")
    assert warned.returncode == 0, warned.stderr
    assert "readable or writable by others" in warned.stderr and '"c"' in warned.stdout
    assert {p: m for p, m in modes(data).items() if p in wide} == wide

    fixed = cli(data, "collection", "list", "--json")  # the default: fix
    assert fixed.returncode == 0, fixed.stderr
    assert "restricted to their owner" in fixed.stderr and "faceledger.db (0644)" in fixed.stderr
    assert_private(data)

    again = cli(data, "collection", "list", "--json", policy="refuse")  # now clean
    assert again.returncode == 0 and again.stderr == "", again.stderr


def test_serve_refuses_a_wide_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "faceledger.db").write_bytes(b"")
    (data / "faceledger.db").chmod(0o644)
    env = {**os.environ, "FACELEDGER_FIX_PERMISSIONS": "refuse"}
    done = subprocess.run(
        [sys.executable, "-m", "faceledger", "serve", "--data", str(data), "--port", "9"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "readable or writable by others" in done.stderr
    assert (data / "faceledger.db").read_bytes() == b""  # never opened
    assert not (data / ".lock").exists()


def test_check_data_folder_policies(tmp_path: Path) -> None:
    """The function itself: a symbolic link is not followed; an unknown policy is refused."""
    folder = tmp_path / "d"
    report = check_data_folder(folder)  # created 0700
    assert report.ok and stat.S_IMODE(folder.stat().st_mode) == 0o700
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    outside.chmod(0o644)
    (folder / "link").symlink_to(outside)
    secret = folder / "crop.jpg"
    secret.write_bytes(b"jpeg")
    secret.chmod(0o664)
    assert [e.path for e in find_wide(folder)] == [secret]
    warned = check_data_folder(folder, policy=Policy.WARN)
    assert not warned.ok and not warned.fixed and "crop.jpg (0664)" in warned.describe()
    fixed = check_data_folder(folder, policy="fix")
    assert fixed.fixed and stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644  # not ours: left alone
    from faceledger.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="fix, refuse, warn"):
        check_data_folder(folder, policy="loose")
