"""Safe image decoding: sniff the format, cap bytes and pixels, return RGB uint8.

Colour and greyscale JPEGs whose scans are complete are decoded by OpenCV straight into
RGB: Pillow holds an RGB image in a 4-byte-per-pixel buffer, then a converted copy, then
the array (a 36 Mpx JPEG cost 4.3x its decoded size at peak; 2.0x this way, OpenCV's
decoder holding one working copy). The pixels are the same (libjpeg-turbo either way,
EXIF orientation applied; identical on every JPEG of the test data), but OpenCV fills a
truncated file with grey instead of failing, so the marker walk of
:func:`jpeg_scans_complete` decides which decoder a file gets. Everything else (CMYK,
other formats, damaged files) goes through Pillow.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps

from faceledger.errors import (
    CorruptImage,
    FaceledgerError,
    ImageTooLarge,
    InvalidArgument,
    UnsupportedFormat,
)
from faceledger.types import UInt8Image

_PIL_FORMATS = {name: name.upper() for name in ("jpeg", "png", "webp", "bmp", "gif", "tiff")}
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
MAX_BYTES = 20 * 1024 * 1024
MAX_PIXELS = 40_000_000

# Our pixel cap is checked on the header before any pixel is decoded, so Pillow's own
# bomb check (a warning at 89 Mpx, an error at 179 Mpx) is switched off: its warning
# would otherwise reach callers. Pillow's other warnings (corrupt EXIF, palette
# transparency) are silenced once here, because ``warnings.catch_warnings`` is not
# thread-safe and images are decoded on several threads at once.
Image.MAX_IMAGE_PIXELS = None
warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """Caps applied before and during decoding (Pillow's own bomb limit still applies)."""

    max_bytes: int = MAX_BYTES
    max_pixels: int = MAX_PIXELS


def sniff_format(data: bytes) -> str:
    """Name the image format of ``data`` from its magic bytes (never from a file name).

    Raises:
        UnsupportedFormat: the bytes are not JPEG, PNG, WebP, BMP, GIF or TIFF.
    """
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if head.startswith(_TIFF_MAGICS):
        return "tiff"
    if (
        head.startswith(b"BM")
        and len(head) >= 18
        and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    ):
        return "bmp"
    raise UnsupportedFormat(
        "not a supported image format (expected JPEG, PNG, WebP, BMP, GIF or TIFF)",
        size=len(data),
    )


def decode_image(
    data: bytes | str | os.PathLike[str] | npt.NDArray[Any],
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> UInt8Image:
    """Decode encoded bytes, a file path or an array into an RGB ``(h, w, 3)`` uint8 array.

    EXIF orientation is applied, only the first frame of animations is read and alpha is
    composited onto white.

    Args:
        data: encoded image bytes, a path (``str`` or path-like) or a NumPy image.
        max_bytes: largest accepted encoded size in bytes.
        max_pixels: largest accepted ``width * height``, checked before pixels are decoded.

    Raises:
        ImageTooLarge: the byte or pixel cap is exceeded.
        UnsupportedFormat: the data is not an image format we decode.
        CorruptImage: the data is truncated or malformed.
        InvalidArgument: a missing or unreadable path, or an array of the wrong shape/dtype.
    """
    if isinstance(data, np.ndarray):
        return _from_array(data, max_pixels)
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if isinstance(data, str | os.PathLike):
        data = _read_path(os.fspath(data), max_bytes)
    if not isinstance(data, bytes):
        raise InvalidArgument(f"cannot decode an image from {type(data).__name__}")
    if len(data) > max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes, limit is {max_bytes}", limit=max_bytes)
    return _decode_bytes(data, max_pixels)


def _read_path(path: str, max_bytes: int) -> bytes:
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            raise ImageTooLarge(
                f"image file is {size} bytes, limit is {max_bytes}", limit=max_bytes
            )
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)  # the file may grow after stat: len is re-checked
    except FileNotFoundError as exc:
        raise InvalidArgument(f"image file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"cannot read image file {path}: {exc}") from exc


def _decode_bytes(data: bytes, max_pixels: int) -> UInt8Image:
    fmt = sniff_format(data)
    try:
        with Image.open(BytesIO(data), formats=[_PIL_FORMATS[fmt]]) as im:
            _check_pixels(im.width, im.height, max_pixels)
            if fmt == "jpeg" and im.mode in ("RGB", "L") and jpeg_scans_complete(data):
                fast = _jpeg_by_opencv(data)
                if fast is not None and fast.shape[0] * fast.shape[1] == im.width * im.height:
                    return fast
            im.load()
            with contextlib.suppress(Exception):  # a broken EXIF block only loses rotation
                ImageOps.exif_transpose(im, in_place=True)
            return _to_rgb(im)
    except FaceledgerError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, MemoryError) as exc:
        raise ImageTooLarge(f"{fmt} image is too large to decode: {exc}", format=fmt) from exc
    except Exception as exc:
        raise CorruptImage(f"cannot decode {fmt} image: {exc}", format=fmt) from exc


def jpeg_scans_complete(data: bytes) -> bool:
    """Whether a JPEG's marker segments and entropy-coded scans run to its end marker.

    Length-prefixed segments are skipped whole; after each start of scan the coded data
    runs to the next marker that is neither a stuffed ``FF 00``, a fill byte nor a
    restart marker. Hand-written because no decoder we ship reports truncation without
    also paying for a full decode (Pillow) or reporting it at all (OpenCV).
    """
    n, pos = len(data), 2  # after SOI
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return True
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if pos + 4 > n:
            return False
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return False
        pos += 2 + length
        if marker != 0xDA:  # not a start of scan
            continue
        while True:  # entropy-coded data up to the next real marker
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= n:
                return False
            following = data[pos + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                pos += 2
            elif following == 0xFF:
                pos += 1
            else:
                break
    return False


def _jpeg_by_opencv(data: bytes) -> UInt8Image | None:
    """RGB pixels of a complete JPEG decoded in place, EXIF orientation applied."""
    rgb = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR_RGB)
    if rgb is None or rgb.ndim != 3 or rgb.shape[2] != 3:
        return None
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImage(f"image has an empty size {width}x{height}")
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"image is {width}x{height} = {width * height} pixels, limit is {max_pixels}",
            width=width,
            height=height,
            limit=max_pixels,
        )


def _to_rgb(im: Image.Image) -> UInt8Image:
    if im.mode.startswith(("I", "F")):  # 16/32-bit integer or float greyscale
        raw = np.asarray(im if im.mode in ("I", "F", "I;16", "I;16L", "I;16B") else im.convert("I"))
        im = Image.fromarray(_scale_to_uint8(raw))
    if im.has_transparency_data:
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba)
    try:
        rgb = im.convert("RGB")
    except ValueError as exc:
        raise UnsupportedFormat(f"unsupported colour mode {im.mode}", mode=im.mode) from exc
    return np.array(rgb, dtype=np.uint8, order="C")


def _scale_to_uint8(arr: npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    """Map integer or float samples to 0..255: 16-bit by /257, floats in 0..1 by *255."""
    if arr.dtype == np.uint8:
        return arr
    a = arr.astype(np.float64)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if arr.dtype.kind == "f" and np.isfinite(a).all() and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif arr.dtype.kind in "ui" and lo >= 0 and hi <= 65535:
        a = a / 257.0
    elif np.isfinite(a).all() and hi > lo:  # arbitrary range: stretch min..max
        a = (a - lo) * (255.0 / (hi - lo))
    else:
        a = np.nan_to_num(a, nan=0.0, posinf=255.0, neginf=0.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _from_array(arr: npt.NDArray[Any], max_pixels: int) -> UInt8Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise InvalidArgument(
            f"image array must be (h, w), (h, w, 3) or (h, w, 4), got {arr.shape}"
        )
    h, w = arr.shape[:2]
    if h == 0 or w == 0:
        raise InvalidArgument(f"image array is empty: {arr.shape}")
    _check_pixels(w, h, max_pixels)
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or arr.min() < 0.0 or arr.max() > 1.0:
            raise InvalidArgument("float image arrays must hold finite values in 0..1")
        u8 = np.rint(arr.astype(np.float32) * 255.0).astype(np.uint8)
    elif arr.dtype == np.uint16:
        u8 = np.rint(arr / 257.0).astype(np.uint8)
    elif arr.dtype == np.uint8:
        u8 = arr
    else:
        raise InvalidArgument(f"image arrays must be uint8, uint16 or float, got {arr.dtype}")
    if u8.ndim == 3 and u8.shape[2] == 3:
        return np.array(u8, dtype=np.uint8, order="C")  # a copy: never alias the caller's data
    return _to_rgb(Image.fromarray(np.ascontiguousarray(u8)))
