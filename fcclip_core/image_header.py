"""Image dimensions from a compressed file's header, read before anything is decoded.

Why: decoding allocates the full image first. A 1 MB PNG can declare 30000 x 30000 pixels and
make the decoder allocate gigabytes and work for seconds; reading the few header bytes lets a
caller apply its size limits first. PNG (the IHDR chunk) and baseline/progressive JPEG (the
SOF segment) are understood: the two formats ROS ``image_transport`` produces.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers carry the size; 0xC4 (DHT), 0xC8 (JPG) and 0xCC (DAC) share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers that stand alone (no length field): TEM, RST0..7, SOI, EOI.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xDA)})
_JPEG_SOS = 0xDA


class ImageHeaderError(ValueError):
    """The bytes are not a PNG or JPEG whose size can be read; the message says why."""


@dataclass(frozen=True)
class ImageHeader:
    format: str  # "png" or "jpeg"
    width: int
    height: int


def read_image_header(data: bytes | bytearray | memoryview) -> ImageHeader:
    """The format and declared size of a PNG or JPEG image; ImageHeaderError for anything else."""
    view = memoryview(data).cast("B")
    if bytes(view[:8]) == PNG_SIGNATURE:
        return _png_header(view)
    if bytes(view[:2]) == b"\xff\xd8":
        return _jpeg_header(view)
    raise ImageHeaderError(f"not a PNG or JPEG image (starts with {bytes(view[:8]).hex(' ')})")


def _png_header(view: memoryview) -> ImageHeader:
    if len(view) < 24 or bytes(view[12:16]) != b"IHDR":
        raise ImageHeaderError("truncated PNG: no IHDR chunk after the signature")
    width, height = struct.unpack(">II", view[16:24])
    return ImageHeader("png", width, height)


def _jpeg_header(view: memoryview) -> ImageHeader:
    position = 2
    while position + 4 <= len(view):
        if view[position] != 0xFF:
            raise ImageHeaderError(f"corrupt JPEG: no marker at byte {position}")
        marker = view[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _JPEG_STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack(">H", view[position + 2:position + 4])
        if length < 2:
            raise ImageHeaderError(f"corrupt JPEG: segment length {length} at byte {position}")
        if marker in _JPEG_SOF:
            if position + 9 > len(view):
                break
            height, width = struct.unpack(">HH", view[position + 5:position + 9])
            if height == 0:
                raise ImageHeaderError("JPEG without a height in its frame header (DNL) is not supported")
            return ImageHeader("jpeg", width, height)
        if marker == _JPEG_SOS:
            raise ImageHeaderError("corrupt JPEG: image data before any frame header")
        position += 2 + length
    raise ImageHeaderError("truncated JPEG: no frame header (SOF) found")
