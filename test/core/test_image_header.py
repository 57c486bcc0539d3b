"""Image headers: sizes of PNG and JPEG files read without decoding, garbage refused."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fcclip_core.image_header import ImageHeader, ImageHeaderError, read_image_header


def encoded(extension: str, height: int = 37, width: int = 53, *flags: int) -> bytes:
    image = np.random.default_rng(0).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(extension, image, list(flags))
    assert ok
    return data.tobytes()


def test_png_and_jpeg_sizes_are_read_from_the_header(png_bomb):
    assert read_image_header(encoded(".png")) == ImageHeader("png", 53, 37)
    assert read_image_header(encoded(".jpg")) == ImageHeader("jpeg", 53, 37)
    progressive = encoded(".jpg", 20, 3000, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert read_image_header(progressive) == ImageHeader("jpeg", 3000, 20)
    assert read_image_header(png_bomb(30000, 30000)) == ImageHeader("png", 30000, 30000)
    # A memoryview / numpy buffer works as well as bytes.
    assert read_image_header(np.frombuffer(encoded(".jpg"), np.uint8)).width == 53


@pytest.mark.parametrize("data, message", [
    (b"", "not a PNG or JPEG"),
    (b"GIF89a\x01\x00\x01\x00", "not a PNG or JPEG"),
    (encoded(".bmp"), "not a PNG or JPEG"),
    (encoded(".png")[:20], "truncated PNG"),
    (encoded(".jpg")[:40], "truncated JPEG"),
    (b"\xff\xd8\xff\xda\x00\x08" + bytes(20), "image data before any frame header"),
    (b"\xff\xd8\x00\x00\x00\x00", "no marker at byte 2"),
    (b"\xff\xd8\xff\xc0\x00\x11\x08\x00\x00\x00\x10\x03" + bytes(20), "DNL"),
])
def test_unusable_headers_are_refused_with_a_reason(data, message):
    with pytest.raises(ImageHeaderError, match=message):
        read_image_header(data)
