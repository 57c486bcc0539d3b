"""Image messages -> RGB for every supported encoding, and results -> messages.

The test packs each encoding by hand with numpy (independently of the code under test), with
row padding, and checks the decoded RGB against the original.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from fcclip_core.results import PanopticResult, Segment, SemanticResult
from fcclip_ros import conversions as conv
from fcclip_ros.conversions import FrameError, FrameLimits

from .conftest import VISION_MSGS_HASHES

pytestmark = pytest.mark.ros

RNG = np.random.default_rng(7)
H, W = 5, 6
RGB = RNG.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
PAD = 7  # extra bytes at the end of every row


def pack(pixels: np.ndarray, encoding: str, big_endian: bool = False, pad: int = PAD) -> Image:
    """An Image holding ``pixels`` (H, W[, C]) row by row, each row followed by ``pad`` junk bytes."""
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype == np.uint16:
        pixels = pixels.astype(">u2" if big_endian else "<u2")
    rows = pixels.reshape(pixels.shape[0], -1).view(np.uint8)
    junk = np.full((rows.shape[0], pad), 0xAB, dtype=np.uint8)
    padded = np.concatenate([rows, junk], axis=1)
    return Image(height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=int(big_endian),
                 step=padded.shape[1], data=conv.byte_field(padded))


def widen(values: np.ndarray) -> np.ndarray:
    """8-bit -> 16-bit so that full scale maps back exactly (v * 257)."""
    return values.astype(np.uint16) * 257


ALPHA = np.full((H, W, 1), 200, dtype=np.uint8)
ROUND_TRIPS = {
    "rgb8": lambda: RGB,
    "bgr8": lambda: RGB[:, :, ::-1],
    "8UC3": lambda: RGB[:, :, ::-1],
    "rgba8": lambda: np.concatenate([RGB, ALPHA], axis=2),
    "bgra8": lambda: np.concatenate([RGB[:, :, ::-1], ALPHA], axis=2),
    "8UC4": lambda: np.concatenate([RGB[:, :, ::-1], ALPHA], axis=2),
    "rgb16": lambda: widen(RGB),
    "bgr16": lambda: widen(RGB[:, :, ::-1]),
    "rgba16": lambda: widen(np.concatenate([RGB, ALPHA], axis=2)),
    "bgra16": lambda: widen(np.concatenate([RGB[:, :, ::-1], ALPHA], axis=2)),
}


@pytest.mark.parametrize("encoding", sorted(ROUND_TRIPS))
@pytest.mark.parametrize("big_endian", [False, True])
def test_colour_encodings_round_trip(encoding: str, big_endian: bool) -> None:
    rgb = conv.image_to_rgb(pack(ROUND_TRIPS[encoding](), encoding, big_endian))
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3) and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, RGB)


@pytest.mark.parametrize("encoding,widened", [("mono8", False), ("8UC1", False), ("mono16", True), ("16UC1", True)])
@pytest.mark.parametrize("big_endian", [False, True])
def test_grey_encodings_give_grey_rgb(encoding: str, widened: bool, big_endian: bool) -> None:
    grey = RGB[:, :, 0]
    rgb = conv.image_to_rgb(pack(widen(grey) if widened else grey, encoding, big_endian))
    np.testing.assert_array_equal(rgb, np.repeat(grey[:, :, None], 3, axis=2))


def test_16bit_full_scale_is_configurable() -> None:
    twelve_bit = np.array([[0, 1, 2048, 4095, 4096, 65535]], dtype=np.uint16)
    rgb = conv.image_to_rgb(pack(twelve_bit, "mono16"), FrameLimits(image_16bit_max=4095))
    # 2048 * 255 / 4095 = 127.5 -> 128; values above full scale clip to white.
    assert rgb[0, :, 0].tolist() == [0, 0, 128, 255, 255, 255]


def bt601(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Limited-range BT.601 YUV -> RGB, the convention of ROS camera drivers."""
    y, u, v = (np.asarray(a, np.float64) - offset for a, offset in ((y, 16), (u, 128), (v, 128)))
    rgb = np.stack([1.164 * y + 1.596 * v, 1.164 * y - 0.813 * v - 0.391 * u, 1.164 * y + 2.018 * u], axis=-1)
    return np.clip(np.round(rgb), 0, 255)


@pytest.mark.parametrize("encoding,order", [("yuv422", "UYVY"), ("uyvy", "UYVY"),
                                            ("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV")])
def test_packed_yuv422(encoding: str, order: str) -> None:
    y = RNG.integers(16, 236, size=(H, W)).astype(np.uint8)
    u = RNG.integers(16, 241, size=(H, W // 2)).astype(np.uint8)
    v = RNG.integers(16, 241, size=(H, W // 2)).astype(np.uint8)
    # Each pair of pixels shares one U and one V sample.
    packed = np.empty((H, W // 2, 4), dtype=np.uint8)
    channels = {"Y0": y[:, 0::2], "Y1": y[:, 1::2], "U": u, "V": v}
    names = ["U", "Y0", "V", "Y1"] if order == "UYVY" else ["Y0", "U", "Y1", "V"]
    for index, name in enumerate(names):
        packed[:, :, index] = channels[name]
    rgb = conv.image_to_rgb(pack(packed.reshape(H, W, 2), encoding))
    expected = bt601(y, np.repeat(u, 2, axis=1), np.repeat(v, 2, axis=1))
    assert np.abs(rgb.astype(np.float64) - expected).max() <= 2


def test_compressed_png_is_exact_and_jpeg_close() -> None:
    big = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_NEAREST)
    ok, png = cv2.imencode(".png", big[:, :, ::-1])
    assert ok
    msg = CompressedImage(format="rgb8; png compressed bgr8", data=conv.byte_field(png))
    np.testing.assert_array_equal(conv.compressed_to_rgb(msg), big)
    smooth = np.zeros((48, 64, 3), np.uint8)
    smooth[..., 0], smooth[..., 2] = 200, 40  # a flat colour survives JPEG almost unchanged
    ok, jpeg = cv2.imencode(".jpg", smooth[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = conv.compressed_to_rgb(CompressedImage(format="jpeg", data=conv.byte_field(jpeg)))
    assert np.abs(decoded.astype(int) - smooth).max() <= 3


@pytest.mark.parametrize("mutate,message", [
    (lambda m: setattr(m, "encoding", "bayer_rggb8"), "unsupported encoding 'bayer_rggb8'"),
    (lambda m: setattr(m, "encoding", ""), "unsupported encoding '(empty)'"),
    (lambda m: setattr(m, "data", conv.byte_field(np.zeros(10, np.uint8))), "data has 10 bytes, expected step x height"),
    (lambda m: setattr(m, "step", 3), "step 3 is smaller than width x bytes per pixel = 18"),
    (lambda m: (setattr(m, "height", 0), setattr(m, "data", conv.byte_field(np.zeros(0, np.uint8)))),
     "zero size"),
    (lambda m: setattr(m, "height", 100000), "exceeds the limits"),
])
def test_bad_images_raise_clear_errors(mutate, message: str) -> None:
    msg = pack(RGB, "rgb8")
    mutate(msg)
    with pytest.raises(FrameError, match=message.replace("(", r"\(").replace(")", r"\)")):
        conv.image_to_rgb(msg)


def test_pixel_limit_and_odd_yuv_width() -> None:
    with pytest.raises(FrameError, match="exceeds the limits"):
        conv.image_to_rgb(pack(RGB, "rgb8"), FrameLimits(max_pixels=H * W - 1))
    odd = Image(height=1, width=3, encoding="yuv422", step=6, data=conv.byte_field(np.zeros(6, np.uint8)))
    with pytest.raises(FrameError, match="even width"):
        conv.image_to_rgb(odd)


@pytest.mark.parametrize("msg,message", [
    (CompressedImage(format="jpeg"), "no data"),
    (CompressedImage(format="jpeg", data=conv.byte_field(np.arange(50, dtype=np.uint8))), "not a PNG or JPEG"),
    (CompressedImage(format="16UC1; compressedDepth png", data=conv.byte_field(np.ones(9, np.uint8))),
     "compressedDepth"),
])
def test_bad_compressed_images_raise_clear_errors(msg: CompressedImage, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        conv.compressed_to_rgb(msg)


def test_compressed_size_limits_apply_before_decoding(monkeypatch, png_bomb) -> None:
    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded an image that its header already disqualifies")

    bomb = CompressedImage(format="png", data=conv.byte_field(np.frombuffer(png_bomb(30000, 30000), np.uint8)))
    with monkeypatch.context() as patched:
        patched.setattr(conv.cv2, "imdecode", no_decoding)
        with pytest.raises(FrameError, match="30000x30000 exceeds the limits"):
            conv.compressed_to_rgb(bomb)


def test_compressed_image_beyond_opencvs_own_pixel_cap_is_an_invalid_frame(png_bomb) -> None:
    # With limits raised past OpenCV's cap (2^30 pixels), OpenCV refuses it: still a FrameError.
    huge = CompressedImage(format="png", data=conv.byte_field(np.frombuffer(png_bomb(40000, 40000), np.uint8)))
    with pytest.raises(FrameError, match="could not decode compressed png image \\(40000x40000\\)"):
        conv.compressed_to_rgb(huge, FrameLimits(max_pixels=2**31, max_side=50000))


# ------------------------------------------------------------------ results -> messages

def small_panoptic() -> PanopticResult:
    ids = np.zeros((4, 5), dtype=np.int32)
    ids[0:2, 0:3] = 1  # a thing of class 2
    ids[2:4, :] = 2  # stuff of class 0
    ids[0, 4] = 3  # a one-pixel thing of class 2
    segments = [
        Segment(id=1, category_id=2, label="cat", isthing=True, score=0.9, area=6, bbox=(0, 0, 3, 2),
                centroid=(1.0, 0.5), query_index=4),
        Segment(id=2, category_id=0, label="floor", isthing=False, score=0.6, area=10, bbox=(0, 2, 5, 2),
                centroid=(2.0, 2.5), query_index=1),
        Segment(id=3, category_id=2, label="cat", isthing=True, score=0.3, area=1, bbox=(4, 0, 1, 1),
                centroid=(4.0, 0.0), query_index=7),
    ]
    return PanopticResult(segment_ids=ids, segments=segments)


def header() -> Header:
    h = Header(frame_id="cam")
    h.stamp.sec, h.stamp.nanosec = 12, 34
    return h


def test_label_image_follows_the_panoptic_segments() -> None:
    labels = conv.panoptic_label_image(small_panoptic())
    assert labels.dtype == np.uint16
    expected = np.full((4, 5), conv.UNLABELLED, np.uint16)
    expected[0:2, 0:3] = 2
    expected[2:4, :] = 0
    expected[0, 4] = 2
    np.testing.assert_array_equal(labels, expected)
    msg = conv.labels_to_image(labels, header())
    assert (msg.encoding, msg.step, msg.header.frame_id) == ("mono16", 10, "cam")
    np.testing.assert_array_equal(np.frombuffer(msg.data, np.uint16).reshape(4, 5), expected)


def test_label_image_rejects_unknown_ids() -> None:
    result = small_panoptic()
    result.segment_ids[3, 3] = 9
    with pytest.raises(ValueError, match="missing from the segment list"):
        conv.panoptic_label_image(result)


def test_segment_ids_image_and_segment_array_agree() -> None:
    result = small_panoptic()
    ids_msg = conv.segment_ids_to_image(result.segment_ids, header())
    assert (ids_msg.encoding, ids_msg.step, ids_msg.is_bigendian) == ("32SC1", 20, 0)
    ids = np.frombuffer(ids_msg.data, np.int32).reshape(4, 5)
    np.testing.assert_array_equal(ids, result.segment_ids)
    array = conv.segment_array(result, vocabulary_version=3, header=header())
    assert (array.vocabulary_version, array.height, array.width) == (3, 4, 5)
    assert (array.header.stamp.sec, array.header.stamp.nanosec, array.header.frame_id) == (12, 34, "cam")
    for seg in array.segments:
        assert seg.area == int((ids == seg.id).sum())
    first = array.segments[0]
    assert (first.id, first.class_id, first.label, first.is_thing) == (1, 2, "cat", True)
    assert (first.bbox.x_offset, first.bbox.y_offset, first.bbox.width, first.bbox.height) == (0, 0, 3, 2)
    assert (first.centroid_x, first.centroid_y) == (1.0, 0.5)
    assert first.score == pytest.approx(0.9)


def test_semantic_label_image() -> None:
    labels = np.array([[0, 3], [65534, 1]], dtype=np.int32)
    semantic = SemanticResult(labels=labels, scores=np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(conv.semantic_label_image(semantic), labels.astype(np.uint16))
    semantic.labels = np.array([[65535]], dtype=np.int32)
    with pytest.raises(ValueError, match="do not fit"):
        conv.semantic_label_image(semantic)


def test_detections_and_label_info_with_wire_compatible_vision_msgs(vision_msgs_prefix, vision_msgs_module) -> None:
    for name, expected in VISION_MSGS_HASHES.items():
        assert vision_msgs_prefix.type_hash(name) == expected
    vision_msgs = vision_msgs_module
    detections = conv.detection_array(small_panoptic(), header(), vision_msgs)
    assert detections.header.frame_id == "cam"
    # One detection per thing segment; the stuff segment (id 2) has none.
    assert [d.id for d in detections.detections] == ["1", "3"]
    first = detections.detections[0]
    assert first.results[0].hypothesis.class_id == "cat"
    assert first.results[0].hypothesis.score == pytest.approx(0.9)
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (1.5, 1.0)
    assert (first.bbox.size_x, first.bbox.size_y) == (3.0, 2.0)
    assert first.header.stamp.sec == 12

    class Entry:
        def __init__(self, names):
            self.names = names

    class Vocab:
        entries = [Entry(["floor"]), Entry(["dog", "puppy"])]

    info = conv.label_info(Vocab(), header(), vision_msgs)
    assert [(c.class_id, c.class_name) for c in info.class_map] == [(0, "floor"), (1, "dog")]
