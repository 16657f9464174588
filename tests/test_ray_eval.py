"""``faceledger eval ... --ray ADDRESS`` on a real local Ray cluster (2 CPUs, 2 worker actors).

The cluster is the session's one (``tests/conftest.py``), shared with ``tests/test_ray.py``. The
evaluation runs as users run it, as subprocesses: ``eval verify`` on aligned crops of
glint360k_celeb24 gives the same figures with ``--ray`` as locally, with the same cache
entries (image SHA-256 and embedding); a driver killed part way and a worker killed
mid-run lose and duplicate nothing; a second run finds everything cached and computes
nothing on the cluster.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from faceledger.engine import Engine
from faceledger.errors import ModelError
from faceledger.eval.cache import (
    Batches,
    CacheEntry,
    EmbeddingCache,
    ImageTask,
    Mode,
    embed_image,
    embed_images,
)
from faceledger.eval.dataset import list_tree
from tests.test_ray import named_workers, wait_for

PER_PERSON = 20
"""Crops per person of glint360k_celeb24: 480 images, 30 chunks, a few seconds of work."""
FIGURES = ("genuine_pairs", "impostor_pairs", "images", "images_without_face")
RAY_LINE = re.compile(
    r"ray: (?P<items>\d+) images embedded on the cluster in (?P<tasks>\d+) tasks by "
    r"(?P<workers>\d+) workers \((?P<pids>\d+) worker processes\)"
)


@pytest.fixture(scope="module")
def celebs(faces_dir: Path) -> Path:
    return faces_dir / "glint360k_celeb24" / "images"


def images_of(celebs: Path) -> dict[str, Path]:
    """SHA-256 -> a file, of the images the runs embed (byte-identical files once)."""
    paths = [p for _, p in list_tree(celebs, per_person=PER_PERSON)]
    return {hashlib.sha256(p.read_bytes()).hexdigest(): p for p in paths}


def verify_args(celebs: Path, cache: Path) -> list[str]:
    return [
        "eval",
        "verify",
        "--tree",
        str(celebs),
        "--aligned",
        "--per-person",
        str(PER_PERSON),
        "--cache-dir",
        str(cache),
        "--json",
    ]


def start(env: dict[str, str], args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "faceledger", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[dict[str, Any], dict[str, int] | None]:
    """The command's JSON, and what it says the cluster did (``None``: no ``--ray``)."""
    out, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    said = RAY_LINE.search(err)
    return json.loads(out), ({k: int(v) for k, v in said.groupdict().items()} if said else None)


def cached(cache_dir: Path) -> dict[str, np.ndarray]:
    """SHA-256 -> embedding of every row of the one cache file, checking each key is once."""
    (path,) = (cache_dir / "embeddings").glob("*.sqlite")
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    rows = db.execute("SELECT sha256, mode, embedding FROM embeddings").fetchall()
    db.close()
    assert len({mode for _, mode, _ in rows}) == 1
    assert len({sha for sha, _, _ in rows}) == len(rows), "an image is cached twice"
    return {sha: np.frombuffer(blob, np.float32) for sha, _, blob in rows}


def cached_count(cache_dir: Path) -> int:
    try:
        (path,) = (cache_dir / "embeddings").glob("*.sqlite")
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
        (n,) = db.execute("SELECT COUNT(*) FROM embeddings").fetchone()
        db.close()
        return int(n)
    except (ValueError, sqlite3.Error):  # no file yet, or no table yet
        return 0


def same_figures(a: dict[str, Any], b: dict[str, Any]) -> None:
    for key in FIGURES:
        assert a[key] == b[key], key
    assert a["eer"] == pytest.approx(b["eer"], abs=1e-6)
    assert a["auc"] == pytest.approx(b["auc"], abs=1e-6)
    assert [p["tar"] for p in a["tar_at_fmr"]] == pytest.approx(
        [p["tar"] for p in b["tar_at_fmr"]], abs=1e-6
    )


def same_entries(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for sha, emb in a.items():
        np.testing.assert_allclose(emb, b[sha], atol=1e-5)


@pytest.fixture(scope="module")
def local_run(
    celebs: Path,
    tmp_path_factory: pytest.TempPathFactory,
    ray_env: dict[str, str],
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``eval verify`` without Ray: the figures and cache entries every Ray run must equal."""
    cache = tmp_path_factory.mktemp("local-cache")
    figures, said = finish(start(ray_env, verify_args(celebs, cache)))
    assert said is None
    assert figures["images"] > 400 and figures["genuine_pairs"] > 4000
    return figures, cached(cache)


def test_eval_verify_on_ray_equals_the_local_run_and_a_rerun_computes_nothing(
    cluster: str,
    celebs: Path,
    local_run: tuple[dict[str, Any], dict[str, np.ndarray]],
    tmp_path: Path,
    ray_env: dict[str, str],
) -> None:
    expected, entries = local_run
    args = [*verify_args(celebs, tmp_path), "--ray", cluster]
    figures, said = finish(start(ray_env, args))
    assert said is not None
    assert said["items"] == len(images_of(celebs)) == len(entries)
    assert said["workers"] == 2 and said["pids"] == 2  # both workers did work
    same_figures(figures, expected)
    same_entries(cached(tmp_path), entries)

    again, said = finish(start(ray_env, args))
    assert said == {"items": 0, "tasks": 0, "workers": 0, "pids": 0}  # never even connected
    same_figures(again, expected)
    same_entries(cached(tmp_path), entries)


def test_a_killed_driver_and_a_killed_worker_lose_and_duplicate_nothing(
    cluster: str,
    celebs: Path,
    local_run: tuple[dict[str, Any], dict[str, np.ndarray]],
    tmp_path: Path,
    ray_env: dict[str, str],
) -> None:
    expected, entries = local_run
    args = [*verify_args(celebs, tmp_path), "--ray", cluster]

    import ray

    # the driver dies (SIGKILL) once its first chunks are in the cache: its workers go with it
    driver = start(ray_env, args)
    try:
        wait_for(lambda: cached_count(tmp_path) >= 16, "the first cached chunk")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.communicate(timeout=60)
    partial = cached_count(tmp_path)
    assert 16 <= partial < len(entries)
    wait_for(lambda: not named_workers("evalembed"), "the dead driver's workers to go")

    # the rerun resumes from the cache; one of its workers is killed while it embeds
    proc = start(ray_env, args)
    try:
        wait_for(lambda: len(named_workers("evalembed")) == 2, "the rerun's workers")
        wait_for(lambda: cached_count(tmp_path) > partial, "the rerun's first cached chunk")
        victim = named_workers("evalembed")[0]
        ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=False)
        before_kill = cached_count(tmp_path)
    except BaseException:
        proc.kill()
        proc.communicate(timeout=60)
        raise
    figures, said = finish(proc)
    assert said is not None
    assert said["items"] == len(entries) - partial  # nothing cached was computed again
    assert before_kill < len(entries)  # the worker was killed mid-run
    # the killed worker came back (a process more, unless it was killed before its first
    # chunk finished) and its chunks ran again: all images, each once, equal to the local run
    assert said["pids"] >= 2 and said["workers"] == 2
    same_figures(figures, expected)
    same_entries(cached(tmp_path), entries)


class OtherNode:
    """A remote embedder whose node runs other detector settings: its entries' keys differ."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def embed(self, tasks: Sequence[ImageTask], *, mode: Mode) -> Batches:
        entries = [embed_image(self.engine, Path(t.path), mode=mode) for t in tasks]
        yield list(tasks), [CacheEntry(e.sha256, f"{e.mode}/other", e.result) for e in entries]


def test_entries_made_with_other_settings_are_refused_and_nothing_is_cached(
    engine: Engine, celebs: Path, tmp_path: Path
) -> None:
    paths = [p for _, p in list_tree(celebs, per_person=1)][:3]
    cache = EmbeddingCache(tmp_path, engine.model_id, remote=OtherNode(engine))
    with pytest.raises(ModelError, match="same faceledger version"):
        embed_images(engine, paths, mode="aligned", cache=cache)
    assert len(cache) == 0
    cache.remote = None
    here = embed_images(engine, paths, mode="aligned", cache=cache)
    entry = embed_image(engine, paths[0], mode="aligned")
    assert entry.sha256 == hashlib.sha256(paths[0].read_bytes()).hexdigest()
    assert here[0].embedding is not None and entry.result.embedding is not None
    np.testing.assert_array_equal(here[0].embedding, entry.result.embedding)
    assert len(cache) == 3
    cache.close()


def test_ray_without_the_cache_is_refused_before_any_work(celebs: Path) -> None:
    """What the cluster embeds goes through the cache: --ray with --no-cache is one clear line."""
    from typer.testing import CliRunner

    from faceledger.cli.common import ExitCode
    from faceledger.cli.main import app

    args = ["eval", "verify", "--tree", str(celebs), "--aligned", "--no-cache"]
    result = CliRunner().invoke(app, [*args, "--ray", "127.0.0.1:1"])
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert "drop --no-cache" in result.output


def test_eval_identify_on_ray_embeds_gallery_and_probes_with_one_pool_of_workers(
    cluster: str,
    faces_dir: Path,
    tmp_path: Path,
    ray_env: dict[str, str],
) -> None:
    """Two embedding passes (gallery, then probes) of detected faces: the same figures as
    locally, with the workers started once for both."""
    people = faces_dir / "faceapi_bbt" / "identities"
    gallery, probes = tmp_path / "gallery", tmp_path / "probes"
    persons = sorted(p for p in people.iterdir() if p.is_dir())
    for i, person in enumerate(persons):
        files = sorted(person.iterdir())
        enrolled = files[:1] if i % 2 == 0 else []  # half the persons are not enrolled
        for tree, chosen in ((gallery, enrolled), (probes, files[len(enrolled) :])):
            if not chosen:
                continue
            (tree / person.name).mkdir(parents=True)
            for f in chosen:
                (tree / person.name / f.name).symlink_to(f)
    args = ["eval", "identify", "--gallery", str(gallery), "--probes", str(probes), "--json"]
    local, said = finish(start(ray_env, [*args, "--cache-dir", str(tmp_path / "local")]))
    assert said is None
    ray_args = [*args, "--cache-dir", str(tmp_path / "ray"), "--ray", cluster, "--ray-workers", "2"]
    on_ray, said = finish(start(ray_env, ray_args))
    assert said is not None
    assert said["items"] == len(list(people.glob("*/*")))
    assert said["workers"] == 2 and said["pids"] <= 2  # one pool for both passes
    assert on_ray == local
    assert local["mated_searches"] >= 10 and local["nonmated_searches"] >= 10
