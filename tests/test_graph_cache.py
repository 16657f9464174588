"""The disk cache of rewritten ONNX graphs: hits skip the rewrite, damage is caught."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np
import pytest

from faceledger.models.graph_cache import CACHE_ENV, cached_rewrite, graph_cache_dir

SHA = "ab" * 32


def test_a_hit_skips_the_rewrite_and_damage_is_rewritten(tmp_path: Path) -> None:
    calls: list[int] = []

    def rewrite() -> bytes:
        calls.append(1)
        return b"graph bytes"

    assert cached_rewrite(SHA, rewrite, cache_dir=tmp_path) == b"graph bytes"
    hit = cached_rewrite(SHA, rewrite, cache_dir=tmp_path)
    assert isinstance(hit, Path) and hit.read_bytes() == b"graph bytes" and len(calls) == 1
    hit.write_bytes(b"graph byteX")  # altered or truncated on disk
    assert cached_rewrite(SHA, rewrite, cache_dir=tmp_path) == b"graph bytes"
    assert len(calls) == 2 and hit.read_bytes() == b"graph bytes"
    assert not list(tmp_path.glob("*.tmp")), "temporary files are renamed or removed"


def test_no_rewrite_is_remembered_and_a_read_only_cache_only_costs_the_saving(
    tmp_path: Path,
) -> None:
    calls: list[int] = []

    def nothing() -> None:
        calls.append(1)

    assert cached_rewrite(SHA, nothing, cache_dir=tmp_path) is None
    assert cached_rewrite(SHA, nothing, cache_dir=tmp_path) is None and len(calls) == 1
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert cached_rewrite(SHA, lambda: b"x", cache_dir=locked / "sub") == b"x"
    finally:
        locked.chmod(stat.S_IRWXU)


def test_cache_location_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert graph_cache_dir() == tmp_path
    monkeypatch.setenv(CACHE_ENV, "")
    assert graph_cache_dir() is None
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert graph_cache_dir() == tmp_path / "faceledger" / "graphs"


def test_engine_from_the_cache_embeds_as_the_freshly_rewritten_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faces_dir: Path
) -> None:
    """The second load reads both rewritten graphs from the cache (hashes still checked
    on the original files) and gives the same embeddings."""
    from faceledger.engine import Engine

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    image = faces_dir / "faceapi_bbt/identities/amy/amy1.png"
    first = Engine("default", workers=1)
    want = first.embed(image)[0].require_embedding()
    first.close()
    assert len(list(tmp_path.glob("*.onnx"))) == 2 and len(list(tmp_path.glob("*.sha256"))) == 2
    again = Engine("default", workers=1)
    np.testing.assert_array_equal(again.embed(image)[0].require_embedding(), want)
    again.close()
