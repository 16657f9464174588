"""Tests for faceledger.imaging: format sniffing, safe decoding, caps and fuzzing."""

from __future__ import annotations

import functools
import io
import resource
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from faceledger.errors import (
    CorruptImage,
    FaceledgerError,
    ImageTooLarge,
    InvalidArgument,
    UnsupportedFormat,
)
from faceledger.imaging import ImageLimits, decode_image, shrink, sniff_format

FACES = Path(__file__).resolve().parents[1].parent / "shared" / "faces"
WEBP_AS_JPG = FACES / "deepface_tests" / "identities" / "person03" / "img47.jpg"
RGBA_PNG = FACES / "face_recognition_examples" / "misc" / "32bit.png"
SMALL_JPEG = FACES / "dlib_examples" / "johns" / "John_Savage" / "000296_01099007.jpg"
SMALL_PNG = FACES / "insightface_pkg" / "aligned_112" / "Tom_Hanks_54745.png"


def _need(path: Path) -> Path:
    if not path.is_file():
        pytest.skip(f"shared test data missing: {path}")
    return path


@functools.cache
def _seed_bytes(name: str) -> bytes:
    """Real JPEG/PNG files from ../shared, or small generated images of the other formats."""
    if name in ("jpeg", "png"):
        return {"jpeg": SMALL_JPEG, "png": SMALL_PNG}[name].read_bytes()
    return _encode(_gradient(24, 16), name.upper())


def _encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _gradient(w: int = 40, h: int = 30) -> Image.Image:
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), np.full_like(x, 128)], axis=-1)
    return Image.fromarray(arr.astype(np.uint8))


def _assert_rgb(out: np.ndarray, h: int, w: int) -> None:
    assert out.shape == (h, w, 3)
    assert out.dtype == np.uint8
    assert out.flags.c_contiguous


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width x height`` greyscale but carries almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _gif_header_only(width: int, height: int) -> bytes:
    """A GIF whose screen and first frame claim ``width x height``."""
    return (
        b"GIF89a"
        + struct.pack("<HHBBB", width, height, 0x80, 0, 0)
        + b"\x00\x00\x00\xff\xff\xff"
        + b","
        + struct.pack("<HHHHB", 0, 0, width, height, 0)
        + b"\x02\x02\x44\x01\x00;"
    )


# --- real files from ../shared/faces -------------------------------------------------


def test_webp_named_jpg_is_sniffed_by_content() -> None:
    data = _need(WEBP_AS_JPG).read_bytes()
    assert sniff_format(data) == "webp"
    out = decode_image(WEBP_AS_JPG)
    _assert_rgb(out, 1800, 1350)
    assert np.array_equal(decode_image(str(WEBP_AS_JPG)), out)
    assert np.array_equal(decode_image(data), out)


def test_rgba_png_decodes_to_three_channels() -> None:
    out = decode_image(_need(RGBA_PNG))
    _assert_rgb(out, 1200, 626)


# --- formats and modes ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "name", "tolerance"),
    [
        ("JPEG", "jpeg", 12.0),
        ("PNG", "png", 0.0),
        ("WEBP", "webp", 12.0),
        ("BMP", "bmp", 0.0),
        ("GIF", "gif", 12.0),
        ("TIFF", "tiff", 0.0),
    ],
)
def test_round_trip_each_format(fmt: str, name: str, tolerance: float) -> None:
    im = _gradient()
    data = _encode(im, fmt)
    assert sniff_format(data) == name
    out = decode_image(data)
    _assert_rgb(out, 30, 40)
    diff = np.abs(out.astype(np.int16) - np.asarray(im).astype(np.int16)).mean()
    assert diff <= tolerance


def test_animated_gif_returns_first_frame() -> None:
    red = Image.new("RGB", (16, 8), (255, 0, 0))
    blue = Image.new("RGB", (16, 8), (0, 0, 255))
    data = _encode(red, "GIF", save_all=True, append_images=[blue], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2
    out = decode_image(data)
    _assert_rgb(out, 8, 16)
    assert (out == [255, 0, 0]).all()


def test_grayscale_png_repeats_channels() -> None:
    gray = Image.fromarray(np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5))
    out = decode_image(_encode(gray, "PNG"))
    _assert_rgb(out, 5, 5)
    for c in range(3):
        assert np.array_equal(out[:, :, c], np.asarray(gray))


def test_16bit_grayscale_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 257, 25700, 32768], [40000, 65278, 65535, 1000]], dtype=np.uint16)
    data = _encode(Image.fromarray(values), "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data)
    _assert_rgb(out, 2, 4)
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert np.array_equal(out[:, :, 0], expected)
    assert out[0, 3, 0] == 128  # mid grey stays mid grey


def test_16bit_rgb_png_from_opencv(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    ramp = (np.arange(12 * 10, dtype=np.uint32) * 500).astype(np.uint16).reshape(10, 12)
    rgb16 = np.stack([ramp, 65535 - ramp, np.full_like(ramp, 32896)], axis=-1)
    path = tmp_path / "rgb16.png"
    assert cv2.imwrite(str(path), rgb16[:, :, ::-1])  # OpenCV writes BGR
    out = decode_image(path)
    _assert_rgb(out, 10, 12)
    expected = rgb16 / 257.0
    assert np.abs(out - expected).max() <= 1.0


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [("I;16", 32896, 128), ("I", 65535, 255), ("F", 0.5, 128)],
)
def test_high_depth_tiff_modes(mode: str, value: float, expected: int) -> None:
    im = Image.new(mode, (6, 4), value)
    im.putpixel((0, 0), 0)
    out = decode_image(_encode(im, "TIFF"))
    _assert_rgb(out, 4, 6)
    assert out[1, 1, 0] == expected
    assert out[0, 0, 0] == 0


def test_rgba_png_composites_alpha() -> None:
    arr = np.zeros((2, 2, 4), dtype=np.uint8)
    arr[0, 0] = (10, 20, 30, 255)  # opaque
    arr[0, 1] = (10, 20, 30, 0)  # fully transparent -> white
    out = decode_image(_encode(Image.fromarray(arr), "PNG"))
    _assert_rgb(out, 2, 2)
    assert out[0, 0].tolist() == [10, 20, 30]
    assert out[0, 1].tolist() == [255, 255, 255]


def test_palette_with_transparency_and_cmyk() -> None:
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([0, 0, 0, 200, 10, 10])
    pal.putpixel((1, 1), 1)
    out = decode_image(_encode(pal, "PNG", transparency=0))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[1, 1].tolist() == [200, 10, 10]
    cmyk = decode_image(_encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))
    _assert_rgb(cmyk, 8, 8)
    assert cmyk[4, 4, 0] > 200 and cmyk[4, 4, 1] < 60


def test_exif_orientation_is_applied() -> None:
    arr = np.zeros((32, 64, 3), dtype=np.uint8)
    arr[:16, :16] = (255, 0, 0)  # red block at the stored top-left
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(_encode(im, "JPEG", exif=exif, quality=95))
    _assert_rgb(out, 64, 32)
    assert out[4:12, -12:-4, 0].mean() > 200  # the block is now top-right
    assert out[4:12, 4:12, 0].mean() < 50


# --- malformed input -----------------------------------------------------------------


def test_truncated_jpeg_is_corrupt() -> None:
    data = _need(SMALL_JPEG).read_bytes()
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize("data", [b"", b"\x00", b"BM", b"RIFF", bytes(range(256)) * 8])
def test_not_an_image_is_unsupported(data: bytes) -> None:
    with pytest.raises(UnsupportedFormat):
        sniff_format(data)
    with pytest.raises(UnsupportedFormat):
        decode_image(data)


def test_random_bytes_are_unsupported() -> None:
    rng = np.random.default_rng(1234)
    data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
    with pytest.raises(UnsupportedFormat):
        decode_image(data)


@pytest.mark.parametrize(
    "data",
    [
        _png_header_only(30000, 30000),  # past Pillow's own bomb error
        _png_header_only(10000, 10000),  # between Pillow's warning and error
        _png_header_only(8000, 8000),  # only our 40 MP cap
        _gif_header_only(60000, 60000),
    ],
)
def test_decompression_bomb_is_refused_cheaply(data: bytes) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageTooLarge):
            decode_image(data)
    assert caught == []
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200 * 1024


def test_pixel_cap_and_byte_cap(tmp_path: Path) -> None:
    data = _encode(_gradient(), "PNG")
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_pixels=40 * 30 - 1)
    _assert_rgb(decode_image(data, max_pixels=40 * 30), 30, 40)
    with pytest.raises(ImageTooLarge):
        decode_image(data, max_bytes=len(data) - 1)
    path = tmp_path / "small.png"
    path.write_bytes(data)
    with pytest.raises(ImageTooLarge):
        decode_image(path, max_bytes=len(data) - 1)
    _assert_rgb(decode_image(path, max_bytes=len(data)), 30, 40)


def test_bad_paths_are_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="not found"):
        decode_image(tmp_path / "missing.jpg")
    with pytest.raises(InvalidArgument):
        decode_image(tmp_path)
    with pytest.raises(InvalidArgument):
        decode_image("bad\x00path")


def test_limits_dataclass_defaults() -> None:
    limits = ImageLimits()
    assert (limits.max_bytes, limits.max_pixels) == (20 * 1024 * 1024, 40_000_000)
    with pytest.raises(AttributeError):
        limits.max_bytes = 1  # type: ignore[misc]


# --- NumPy input ---------------------------------------------------------------------


def test_numpy_inputs() -> None:
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    out = decode_image(rgb)
    assert np.array_equal(out, rgb) and out.flags.c_contiguous
    assert not np.shares_memory(out, rgb)
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    assert np.array_equal(decode_image(gray)[:, :, 1], gray)
    assert np.array_equal(decode_image(gray[:, :, None])[:, :, 2], gray)
    rgba = np.dstack([rgb, np.full((4, 5), 255, dtype=np.uint8)])
    assert np.array_equal(decode_image(rgba), rgb)
    u16 = np.array([[0, 32896, 65535]], dtype=np.uint16)
    assert decode_image(u16)[0, :, 0].tolist() == [0, 128, 255]
    f = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    assert decode_image(f)[0, :, 0].tolist() == [0, 128, 255]
    strided = np.zeros((10, 10, 3), dtype=np.uint8)[:, ::2]
    _assert_rgb(decode_image(strided), 10, 5)


@pytest.mark.parametrize(
    "arr",
    [
        np.zeros((4, 4, 2), dtype=np.uint8),
        np.zeros((4, 4, 3, 1), dtype=np.uint8),
        np.zeros(16, dtype=np.uint8),
        np.zeros((0, 4, 3), dtype=np.uint8),
        np.zeros((4, 4), dtype=np.int64),
        np.zeros((4, 4), dtype=bool),
        np.full((4, 4), 2.0),
        np.full((4, 4), np.nan),
    ],
)
def test_bad_numpy_inputs(arr: np.ndarray) -> None:
    with pytest.raises(InvalidArgument):
        decode_image(arr)


def test_numpy_pixel_cap() -> None:
    with pytest.raises(ImageTooLarge):
        decode_image(np.zeros((10, 10), dtype=np.uint8), max_pixels=99)


# --- property test -------------------------------------------------------------------

_MAGICS = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"GIF89a"]
_MAGICS += [b"II*\x00", b"MM\x00*", b"BM" + bytes(12) + b"\x28\x00\x00\x00"]


@st.composite
def _mutated_real_image(draw: st.DrawFn) -> bytes:
    seeds = ["jpeg", "png", "jpeg", "png", "webp", "gif", "tiff", "bmp"]
    data = bytearray(_seed_bytes(draw(st.sampled_from(seeds))))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 64))]
        else:
            del data[pos:]
    return bytes(data)


_fuzz_input = st.one_of(
    st.binary(max_size=2048),
    st.builds(lambda m, b: m + b, st.sampled_from(_MAGICS), st.binary(max_size=512)),
    _mutated_real_image(),
)


@pytest.mark.skipif(
    not (SMALL_JPEG.is_file() and SMALL_PNG.is_file()), reason="shared test data missing"
)
@settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=_fuzz_input)
def test_any_bytes_raise_only_faceledger_errors(data: bytes) -> None:
    try:
        out = decode_image(data, max_pixels=4_000_000)
    except FaceledgerError:
        return
    assert out.ndim == 3 and out.shape[2] == 3 and out.dtype == np.uint8


@pytest.mark.parametrize("target", [(640, 446), (333, 232), (2280, 1588), (1, 1)])
def test_shrink_matches_a_direct_area_resize(faces_dir: Path, target: tuple[int, int]) -> None:
    import cv2

    photo = decode_image(faces_dir / "deepface_tests" / "group" / "couple.jpg")  # 2280x1588
    small = shrink(photo, target)
    direct = cv2.resize(photo, target, interpolation=cv2.INTER_AREA)
    assert small.shape == direct.shape and small.dtype == np.uint8
    assert np.abs(small.astype(np.int16) - direct).mean() < 1.5
    with pytest.raises(ValueError, match="positive"):
        shrink(photo, (0, 10))


# --- memory of a large JPEG -----------------------------------------------------------
_PEAK_SCRIPT = """
import io, sys
from PIL import Image
from faceledger.imaging import decode_image
def status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
side = 6000
out = io.BytesIO()
Image.new('RGB', (side, side), (120, 110, 100)).save(out, 'JPEG', quality=10)
data = out.getvalue()
with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # reset the peak to the current size: the encoder held the image
before = status('VmRSS')
image = decode_image(data)
print(image.nbytes, status('VmHWM') - before)
"""


def test_a_large_jpeg_costs_about_its_decoded_size() -> None:
    # #13: a 600 kB JPEG claiming 36 Mpx (108 MB decoded) cost 4.3x that at peak
    # (Pillow's 4-byte-per-pixel buffer, a converted copy, then the array); OpenCV
    # decodes it with one working copy.
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT], capture_output=True, text=True, check=True
    ).stdout.split()
    decoded, peak = int(out[0]), int(out[1])
    assert decoded == 6000 * 6000 * 3
    assert peak < 2.2 * decoded, peak / decoded


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("progressive", [False, True])
def test_every_exif_orientation_and_jpeg_kind_decode_as_pillow_does(
    orientation: int, progressive: bool
) -> None:
    rng = np.random.default_rng(orientation)
    arr = rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
    arr[:8, :8] = (255, 0, 0)
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    data = _encode(im, "JPEG", exif=exif, quality=90, progressive=progressive)
    with Image.open(io.BytesIO(data)) as ref:
        from PIL import ImageOps

        expected = np.asarray(ImageOps.exif_transpose(ref).convert("RGB"))
    out = decode_image(data)
    assert out.shape == expected.shape and out.flags.writeable
    assert np.array_equal(out, expected)
    grey = _encode(im.convert("L"), "JPEG", progressive=progressive)
    g = decode_image(grey)
    assert g.shape == (24, 40, 3) and np.array_equal(g[..., 0], g[..., 2])
    with pytest.raises(CorruptImage):
        decode_image(data[: len(data) // 2])
