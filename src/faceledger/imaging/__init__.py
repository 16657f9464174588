"""Image input: safe decoding of uploaded bytes, files and arrays to RGB uint8."""

from faceledger.imaging.decode import (
    MAX_BYTES,
    MAX_PIXELS,
    ImageLimits,
    decode_image,
    sniff_format,
)

__all__ = ["MAX_BYTES", "MAX_PIXELS", "ImageLimits", "decode_image", "sniff_format"]
