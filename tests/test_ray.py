"""Batch work on a real local Ray cluster (2 CPUs, 2 worker actors), driven as users run it.

The test starts a Ray head on this machine (token authentication on, no dashboard, a small
object store, its temp dir under /tmp) and runs ``faceledger ... --ray ADDRESS`` as
subprocesses that connect to it. Each result is compared with the same command run
locally: the same persons, the same faces by image SHA-256 with the same embeddings, the
same people intervals in the videos, the same transcript of their speech; a killed worker
and a killed driver lose and duplicate nothing.
"""

from __future__ import annotations

import json
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.media_fixtures import AUDIO, JFK, SPEECH_VIDEO_FACE, SPEECH_VIDEO_WORDS, speech_video
from tests.test_speech import write_wav
from tests.test_video import damaged

COLLECTION = "celebs"
OK = (0, 5)
"""Exit codes of a run that did its work (5: some images refused, e.g. quality too low)."""
KILL_TEST_PERSONS = 8
"""Persons enrolled by the kill test (a third of the set: enough batches to kill in)."""


def start(data: Path, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "faceledger", "--data", str(data), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(data: Path, env: dict[str, str], *args: str, doc: Path | None = None) -> dict[str, Any]:
    """Run a command to success; its JSON (stdout, or the document ``doc`` it wrote)."""
    proc = start(data, env, *args)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode in OK, (args, err[-3000:])
    return dict(json.loads(doc.read_text() if doc is not None else out))


def new_data(root: Path, env: dict[str, str]) -> Path:
    data = root / f"data-{secrets.token_hex(3)}"
    run(data, env, "collection", "create", COLLECTION, "--no-require-consent", "--json")
    return data


def stored_faces(data: Path) -> dict[str, dict[str, np.ndarray]]:
    """person -> {image SHA-256: embedding}, read straight from the database."""
    db = sqlite3.connect(f"file:{data / 'faceledger.db'}?mode=ro", uri=True)
    rows = db.execute(
        "SELECT p.name, f.image_sha256, f.embedding FROM faces f JOIN persons p "
        "ON p.id = f.person_id"
    ).fetchall()
    db.close()
    out: dict[str, dict[str, np.ndarray]] = {}
    for person, sha, blob in rows:
        assert sha not in out.get(person, {}), f"duplicate face of {person}: {sha}"
        out.setdefault(person, {})[sha] = np.frombuffer(blob, np.float32)
    return out


def face_count(data: Path) -> int:
    try:
        db = sqlite3.connect(f"file:{data / 'faceledger.db'}?mode=ro", uri=True, timeout=5)
        (n,) = db.execute("SELECT COUNT(*) FROM faces").fetchone()
        db.close()
        return int(n)
    except sqlite3.Error:  # not created yet
        return 0


def assert_same_faces(a: Path, b: Path, persons: list[str] | None = None) -> None:
    """``b`` stores the faces ``a`` stores (of ``persons``): same hashes and embeddings."""
    fa, fb = stored_faces(a), stored_faces(b)
    if persons is not None:
        fa = {p: f for p, f in fa.items() if p in persons}
    assert sorted(fa) == sorted(fb)
    for person in fa:
        assert sorted(fa[person]) == sorted(fb[person]), person
        for sha, emb in fa[person].items():
            np.testing.assert_allclose(emb, fb[person][sha], atol=1e-5)


@pytest.fixture(scope="module")
def celebs(faces_dir: Path) -> Path:
    return faces_dir / "glint360k_celeb24" / "images"


@pytest.fixture(scope="module")
def local_enrolled(
    celebs: Path, tmp_path_factory: pytest.TempPathFactory, ray_env: dict[str, str]
) -> tuple[Path, dict[str, Any]]:
    """glint360k_celeb24 enrolled without Ray: the reference every Ray run must equal."""
    data = new_data(tmp_path_factory.mktemp("local"), ray_env)
    result = run(data, ray_env, "enroll-folder", COLLECTION, str(celebs), "--aligned", "--json")
    assert result["summary"]["enrolled"] > 2000
    return data, result


def refusals(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(person folder, file, code) of each refused image."""
    return sorted(
        (Path(r["source"]).parent.name, Path(r["source"]).name, r["refused"])
        for r in result["refused"]
    )


def test_enroll_folder_on_ray_equals_the_local_run_and_reruns_add_nothing(
    cluster: str,
    celebs: Path,
    local_enrolled: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    ray_env: dict[str, str],
) -> None:
    local, expected = local_enrolled
    data = new_data(tmp_path, ray_env)
    args = ("enroll-folder", COLLECTION, str(celebs), "--aligned", "--json", "--ray", cluster)
    result = run(data, ray_env, *args)
    assert result["cluster"]["workers"] == 2
    assert len(result["cluster"]["worker_pids"]) == 2  # both workers did work
    assert result["summary"] == expected["summary"]
    assert refusals(result) == refusals(expected)
    assert_same_faces(local, data)

    again = run(data, ray_env, *args)
    assert again["summary"]["enrolled"] == 0
    # every stored image, and the byte-identical copies the first run skipped, are skipped
    assert again["summary"]["skipped"] == expected["summary"]["enrolled"] + len(expected["skipped"])
    assert_same_faces(local, data)


def named_workers(kind: str) -> list[dict[str, str]]:
    import ray

    return [a for a in ray.util.list_named_actors(all_namespaces=True) if f"-{kind}-" in a["name"]]


def wait_for(predicate: Any, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_killed_driver_and_a_killed_worker_lose_and_duplicate_nothing(
    cluster: str,
    celebs: Path,
    local_enrolled: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    ray_env: dict[str, str],
) -> None:
    local, expected = local_enrolled
    persons = sorted(p.name for p in celebs.iterdir() if p.is_dir())[:KILL_TEST_PERSONS]
    tree = tmp_path / "tree"
    tree.mkdir()
    for person in persons:
        (tree / person).symlink_to(celebs / person, target_is_directory=True)
    want = sum(len(f) for p, f in stored_faces(local).items() if p in persons)
    want_refused = [r for r in refusals(expected) if r[0] in persons]
    data = new_data(tmp_path, ray_env)
    args = ("enroll-folder", COLLECTION, str(tree), "--aligned", "--ray", cluster)

    # the driver dies (SIGKILL) after its first batches are stored: its workers go with it
    driver = start(data, ray_env, *args)
    wait_for(lambda: face_count(data) >= 100, "the first stored batches")
    driver.send_signal(signal.SIGKILL)
    driver.communicate(timeout=60)
    partial = face_count(data)
    assert 100 <= partial < want
    wait_for(lambda: not named_workers("embed"), "the dead driver's workers to go")

    # the rerun resumes; one of its workers is killed while it embeds
    proc = start(data, ray_env, *args, "--json")
    wait_for(lambda: len(named_workers("embed")) == 2, "the rerun's workers")
    wait_for(lambda: face_count(data) > partial, "the rerun's first stored batch")
    victim = named_workers("embed")[0]
    import ray

    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]), no_restart=False)
    out, err = proc.communicate(timeout=900)
    assert proc.returncode in OK, err[-3000:]
    result = json.loads(out)
    assert len(result["cluster"]["worker_pids"]) >= 2
    assert "restarted" in err  # Ray's own word that the killed worker's batch ran again
    assert result["summary"]["enrolled"] == want - partial
    images = sum(len(list((celebs / p).iterdir())) for p in persons)
    assert sum(result["summary"][k] for k in ("enrolled", "skipped", "refused")) == images
    assert refusals(result) == want_refused
    assert_same_faces(local, data, persons)


def people(doc: dict[str, Any]) -> dict[str, list[tuple[str, list[list[float]]]]]:
    """video SHA-256 -> its people's labels and intervals."""
    return {
        v["video_sha256"]: sorted((p["label"], p["intervals"]) for p in v["index"]["people"])
        for v in doc["videos"]
    }


def test_index_archive_on_ray_equals_the_local_run_and_resumes(
    cluster: str,
    faces_dir: Path,
    local_enrolled: tuple[Path, dict[str, Any]],
    tmp_path: Path,
    ray_env: dict[str, str],
) -> None:
    data, _ = local_enrolled  # its celebrities appear in none of these clips
    videos = faces_dir / "intel_sample_videos" / "mp4_from_gif"
    common = (
        "video",
        "index-archive",
        str(videos),
        "--collection",
        COLLECTION,
        "--no-ocr",
        "--no-speech",
    )
    local_doc, ray_doc = tmp_path / "local.json", tmp_path / "ray.json"
    on_ray = run(data, ray_env, *common, "--json", str(ray_doc), "--ray", cluster, doc=ray_doc)
    media = run(data, ray_env, "media", "list", COLLECTION, "--json")
    assert len(media["videos"]) == 5  # each index kept in the media index, as `video index` does
    local = run(data, ray_env, *common, "--json", str(local_doc), doc=local_doc)
    assert local["indexed"] == on_ray["indexed"] == 5
    assert on_ray["cluster"]["tasks"] == 5
    assert len(on_ray["cluster"]["worker_pids"]) == 2
    assert people(on_ray) == people(local)
    assert sum(len(p) for p in people(local).values()) >= 5  # people were found at all

    again = run(data, ray_env, *common, "--json", str(ray_doc), "--ray", cluster, doc=ray_doc)
    assert again["resumed"] == 5
    assert again["cluster"]["tasks"] == 0
    assert people(again) == people(local)


def speech(doc: dict[str, Any]) -> dict[str, tuple[str | None, list[dict[str, Any]]]]:
    """video file name -> why its speech is missing (if so), and its transcript segments."""
    return {
        Path(v["path"]).name: (v["index"]["speech_problem"], v["index"]["transcript"])
        for v in doc["videos"]
    }


def english_then_german(path: Path) -> Path:
    """22 s: jfk.flac, half a second of silence, then 10.6 s of the German MIT licence."""
    from faceledger.speech import decode_audio
    from faceledger.speech.audio import SAMPLE_RATE

    english = decode_audio(JFK).samples
    german = decode_audio(AUDIO / "multilingual.mp3").samples
    german = german[int(30.9 * SAMPLE_RATE) : int(41.5 * SAMPLE_RATE)]
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    return write_wav(path, np.concatenate([english, pause, german]))


def test_index_archive_on_ray_transcribes_speech_as_the_local_run_does(
    cluster: str, faces_dir: Path, tmp_path: Path, ray_env: dict[str, str]
) -> None:
    """Speech on the workers (one model per actor): the same transcript (languages detected
    per segment, German translated) and people as locally, and a video whose audio is
    damaged is indexed without it, as locally. The workers load the model as a directory
    (``--asr-model``, hashed on each), the local run from the packages: the same weights."""
    from faceledger.config import Settings
    from faceledger.speech import assemble_default_model

    whisper_base = assemble_default_model(Settings().cache_dir)
    data = new_data(tmp_path, ray_env)
    biden = faces_dir / SPEECH_VIDEO_FACE.replace("biden2", "biden")
    run(data, ray_env, "enroll", COLLECTION, "joe_biden", str(biden), "--json")
    archive = tmp_path / "archive"
    archive.mkdir()
    sound = english_then_german(tmp_path / "en-de.wav")
    talk = speech_video(archive / "talk.mp4", faces_dir / SPEECH_VIDEO_FACE, audio=sound)
    damaged(talk, archive / "unheard.mp4", kind="audio")
    common = ("video", "index-archive", str(archive), "--collection", COLLECTION, "--no-ocr")
    ray_doc, local_doc = tmp_path / "ray.json", tmp_path / "local.json"
    on_ray = run(
        data,
        ray_env,
        *common,
        *("--json", str(ray_doc), "--ray", cluster, "--asr-model", str(whisper_base)),
        doc=ray_doc,
    )
    local = run(data, ray_env, *common, "--json", str(local_doc), doc=local_doc)
    assert on_ray["indexed"] == local["indexed"] == 2 and on_ray["failed"] == 0
    assert len(on_ray["cluster"]["worker_pids"]) == 2  # each worker transcribed a video
    assert speech(on_ray) == speech(local)
    assert people(on_ray) == people(local)
    problem, segments = speech(on_ray)["talk.mp4"]
    assert problem is None
    assert list(dict.fromkeys(s["language"] for s in segments)) == ["en", "de"]
    said = {
        lang: " ".join(s["text_en"] for s in segments if s["language"] == lang).lower()
        for lang in ("en", "de")
    }
    assert all(w in said["en"] for w in SPEECH_VIDEO_WORDS), said
    assert "documentation" in said["de"], said  # English for "Dokumentationsdateien"
    assert segments[0]["start"] < 1.5 and segments[-1]["end"] > 20.0
    problem, segments = speech(on_ray)["unheard.mp4"]
    assert segments == [] and "audio" in str(problem)  # its people are still indexed:
    assert [[label for label, _ in p] for p in people(on_ray).values()] == [["joe_biden"]] * 2


def test_transcripts_do_not_depend_on_how_many_threads_numpy_uses() -> None:
    """A Ray worker's NumPy runs one BLAS thread (OMP_NUM_THREADS=1), a local run one per
    core: faster-whisper's mel features used to differ in their last bit between the two,
    and with them the segments' times and confidences (0.12-7.12 s against 0.12-7.72 s)."""
    from threadpoolctl import threadpool_limits

    from faceledger.speech import default_speech_model, transcribe

    model = default_speech_model()
    found = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            found.append(transcribe(JFK, model=model).segments)
    assert found[0] and found[0] == found[1]


def test_a_worker_whose_speech_weights_differ_transcribes_nothing_and_says_why() -> None:
    """A node holding another model.bin than the driver's gives each video a speech_problem
    (the people are still indexed), as a local model that fails to load does."""
    from dataclasses import replace

    from faceledger.batch.speech import SpeechSpec
    from faceledger.config import Settings
    from faceledger.speech import assemble_default_model
    from faceledger.speech.model import WHISPER_BASE_SHA256
    from faceledger.video.soundtrack import run_speech

    cache = Settings().cache_dir
    default = SpeechSpec.of(None, cache_dir=cache)
    assert default.directory is None and default.sha256 == WHISPER_BASE_SHA256
    spec = SpeechSpec.of(assemble_default_model(cache), cache_dir=cache)  # --asr-model DIR
    assert spec.sha256 == WHISPER_BASE_SHA256  # hashed from the directory's model.bin
    driver_has = "ab" * 32
    heard = run_speech(JFK, replace(spec, sha256=driver_has).load().transcriber(None))
    assert heard.segments == [] and heard.seconds == 0.0
    assert heard.problem is not None and driver_has in heard.problem, heard.problem
    assert "install the same speech model on every node" in heard.problem


def test_enroll_embedded_refuses_faces_of_another_model(service: Any, celebs: Path) -> None:
    """What a worker sends is checked like local work: a face of another model stores nothing."""
    from dataclasses import replace

    from faceledger.batch.types import enrolment_faces
    from faceledger.errors import Conflict

    service.create_collection(COLLECTION, require_consent=False)
    _, engine = service.collection_engine(COLLECTION)
    image = next(iter(sorted((celebs / "barack_obama").iterdir())))
    found = enrolment_faces(engine, str(image), image.read_bytes(), sha256="x", aligned=True)
    foreign = replace(found, faces=[replace(f, model="other-model") for f in found.faces])
    with pytest.raises(Conflict, match="other-model"):
        service.enroll_embedded(COLLECTION, "obama", [foreign], allow_low_quality=True)
    assert service.store.list_persons(COLLECTION) == []
    stored = service.enroll_embedded(COLLECTION, "obama", [found, found], allow_low_quality=True)
    assert [r.face_id is not None for r in stored] == [True, False]  # the 2nd: same SHA-256
    assert stored[1].refused == "duplicate"
