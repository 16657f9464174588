"""Image input: safe decoding of uploaded bytes, files and arrays to RGB uint8, and fast
shrinking of decoded images."""

from faceledger.imaging.decode import (
    MAX_BYTES,
    MAX_PIXELS,
    ImageLimits,
    decode_image,
    sniff_format,
)
from faceledger.imaging.resize import shrink

__all__ = ["MAX_BYTES", "MAX_PIXELS", "ImageLimits", "decode_image", "shrink", "sniff_format"]
