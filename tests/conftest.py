"""Shared fixtures: the real face data beside the repo and one engine per test session.

Under CI (``CI`` set in the environment) nothing real may be skipped: a missing
``../shared/faces`` fails the test that needs it, and any skipped test fails the run
(expected failures, ``xfail``, are reported as such and do not count). Tests that use
the real faces are marked ``integration`` through their fixture.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from faceledger.config import Settings
from faceledger.engine import Engine
from faceledger.eval.cache import EmbeddingCache
from faceledger.eval.dataset import EmbeddedSet, embed_trees
from faceledger.service import FaceService
from tests.pg import any_store, db_url, postgres  # noqa: F401  (fixtures for every module)

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
EMBEDDINGS = Path(__file__).resolve().parents[1] / ".cache" / "embeddings"
IN_CI = bool(os.environ.get("CI"))
REAL_DATA_FIXTURES = {"faces_dir", "engine", "service", "glint"}
_skipped: list[str] = []


def require_shared(path: Path, what: str) -> Path:
    """``path`` if it exists; else skip, or under CI fail (real data must be there)."""
    if not path.exists():
        message = f"{what} is missing: {path}"
        if IN_CI:
            pytest.fail(f"{message} (CI runs every real-data test)")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    """``../shared/faces``: real photos with identity labels (read-only)."""
    return require_shared(SHARED, "../shared/faces")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that loads real models or real faces as ``integration``."""
    for item in items:
        if REAL_DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        _skipped.append(report.nodeid)


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:  # a whole module skipped (importorskip of a tested extra)
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI a skipped test is a failure: say which, and fail the run."""
    if IN_CI and _skipped:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(
                f"CI: {len(_skipped)} test(s) skipped, which CI does not allow: "
                + ", ".join(_skipped),
                red=True,
            )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    """The default-pack engine, loaded once."""
    eng = Engine("default")
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def glint(faces_dir: Path, engine: Engine) -> EmbeddedSet:
    """glint360k_celeb24's aligned crops, embedded once (through the evaluation cache)."""
    cache = EmbeddingCache(EMBEDDINGS, engine.model_id)
    try:
        return embed_trees(
            engine, [faces_dir / "glint360k_celeb24" / "images"], aligned=True, cache=cache
        )
    finally:
        cache.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FaceService]:
    """A face service on a fresh data directory."""
    svc = FaceService(Settings(data=tmp_path / "data"))
    yield svc
    svc.close()


@pytest.fixture(scope="session")
def ray_env() -> Iterator[dict[str, str]]:
    """The environment a cluster process and a driver share (the token is the secret).

    One per session: a Ray process reads its token once, so a second head with another
    token in the same test process fails to authenticate."""
    env = {
        "RAY_DISABLE_USAGE_STATS": "1",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
    }
    before = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield {**os.environ, **env}
    for k, v in before.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def cluster(ray_env: dict[str, str]) -> Iterator[str]:
    """A 2-CPU Ray head on this machine, shared by the Ray test modules; its GCS address
    (what ``--ray`` takes).

    Ray reads ``RAY_AUTH_MODE`` when it is imported, so it is imported after ``ray_env``.
    """
    import ray

    temp = tempfile.mkdtemp(prefix="fl-ray-")  # short: Ray's socket paths must fit 107 bytes
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024 * 1024,
        _temp_dir=temp,
        configure_logging=False,
        log_to_driver=False,
    )
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
