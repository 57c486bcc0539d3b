"""Between ROS messages and numpy: camera images in, segmentation results out.

Input side: every common ``sensor_msgs/Image`` encoding and ``sensor_msgs/CompressedImage``
become one contiguous (H, W, 3) uint8 RGB array. Anything unusable raises ``FrameError`` with a
message that says what is wrong, so the node can log it and skip the frame.

Output side: a ``fcclip_core`` Result becomes the node's messages, every one stamped with the
input image's header. The label image, the segment-id image and the SegmentArray all derive from
the same panoptic result, so they always agree with each other.

Message byte fields are built with ``array.array.frombytes``: assigning bytes or numpy arrays
directly makes the generated setters validate every element in Python (seconds per image).
"""
from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import Any, Mapping

import cv2
import numpy as np
from geometry_msgs.msg import Point
from sensor_msgs.msg import CompressedImage, Image, RegionOfInterest
from std_msgs.msg import Header

from fcclip_core.image_header import ImageHeaderError, read_image_header
from fcclip_ros.msg import Segment as SegmentMsg
from fcclip_ros.msg import SegmentArray
from fcclip_ros.msg import Vocabulary as VocabularyMsg

UNLABELLED = 65535  # value of pixels without a segment in the mono16 label image
_NATIVE_BIG_ENDIAN = sys.byteorder == "big"


class FrameError(ValueError):
    """An input frame that cannot be used; the message says why."""


@dataclass(frozen=True)
class FrameLimits:
    """Sizes beyond which a frame is treated as corrupt rather than processed."""

    max_pixels: int = 40_000_000
    max_side: int = 16384
    image_16bit_max: int = 65535  # the 16-bit value shown as white (4095 for 12-bit sensors)


@dataclass(frozen=True)
class _RawLayout:
    dtype: str  # "u1" or "u2"
    channels: int
    order: str  # channel order in memory: "rgb", "bgr", "rgba", "bgra", "mono"


_RAW_LAYOUTS: dict[str, _RawLayout] = {
    "rgb8": _RawLayout("u1", 3, "rgb"),
    "bgr8": _RawLayout("u1", 3, "bgr"),
    "rgba8": _RawLayout("u1", 4, "rgba"),
    "bgra8": _RawLayout("u1", 4, "bgra"),
    "mono8": _RawLayout("u1", 1, "mono"),
    "8UC1": _RawLayout("u1", 1, "mono"),
    "8UC3": _RawLayout("u1", 3, "bgr"),  # cv_bridge's convention for untyped 3-channel images
    "8UC4": _RawLayout("u1", 4, "bgra"),
    "mono16": _RawLayout("u2", 1, "mono"),
    "16UC1": _RawLayout("u2", 1, "mono"),
    "rgb16": _RawLayout("u2", 3, "rgb"),
    "bgr16": _RawLayout("u2", 3, "bgr"),
    "rgba16": _RawLayout("u2", 4, "rgba"),
    "bgra16": _RawLayout("u2", 4, "bgra"),
}
# Packed 4:2:2 formats (two bytes per pixel). ROS "yuv422" is UYVY byte order.
_YUV_CODES: dict[str, int] = {
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
    "yuyv": cv2.COLOR_YUV2RGB_YUY2,
}
SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_RAW_LAYOUTS) + tuple(_YUV_CODES)


def _check_size(height: int, width: int, limits: FrameLimits) -> None:
    if height <= 0 or width <= 0:
        raise FrameError(f"image has zero size ({width}x{height})")
    if height > limits.max_side or width > limits.max_side or height * width > limits.max_pixels:
        raise FrameError(
            f"image size {width}x{height} exceeds the limits (max side {limits.max_side}, "
            f"max pixels {limits.max_pixels}); treated as corrupt")


def _rows(msg: Image, bytes_per_pixel: int) -> np.ndarray:
    """The (H, W * bytes_per_pixel) uint8 pixel bytes of an Image, row padding (step) removed."""
    row_bytes = msg.width * bytes_per_pixel
    if msg.step < row_bytes:
        raise FrameError(
            f"step {msg.step} is smaller than width x bytes per pixel = {row_bytes} ({msg.encoding})")
    expected = msg.step * msg.height
    if len(msg.data) != expected:
        raise FrameError(
            f"data has {len(msg.data)} bytes, expected step x height = {msg.step} x {msg.height} = {expected}")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    return buffer.reshape(msg.height, msg.step)[:, :row_bytes]


def _to_uint8(values: np.ndarray, full_scale: int) -> np.ndarray:
    """Linear 16-bit -> 8-bit: ``full_scale`` maps to 255, larger values clip."""
    scaled = values.astype(np.float32) * np.float32(255.0 / full_scale) + np.float32(0.5)
    return np.clip(scaled, 0, 255).astype(np.uint8)


def image_to_rgb(msg: Image, limits: FrameLimits = FrameLimits()) -> np.ndarray:
    """A ``sensor_msgs/Image`` as a contiguous (H, W, 3) uint8 RGB array."""
    encoding = msg.encoding
    _check_size(msg.height, msg.width, limits)
    if encoding in _YUV_CODES:
        if msg.width % 2:
            raise FrameError(f"{encoding} needs an even width, got {msg.width}")
        packed = np.ascontiguousarray(_rows(msg, 2)).reshape(msg.height, msg.width, 2)
        return np.ascontiguousarray(cv2.cvtColor(packed, _YUV_CODES[encoding]))
    layout = _RAW_LAYOUTS.get(encoding)
    if layout is None:
        shown = encoding if encoding else "(empty)"
        raise FrameError(f"unsupported encoding {shown!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    item = 2 if layout.dtype == "u2" else 1
    rows = _rows(msg, item * layout.channels)
    if item == 2:
        byte_order = ">" if msg.is_bigendian else "<"
        pixels = _to_uint8(np.ascontiguousarray(rows).view(byte_order + "u2"), limits.image_16bit_max)
    else:
        pixels = rows
    pixels = pixels.reshape(msg.height, msg.width, layout.channels)
    if layout.order == "mono":
        return np.ascontiguousarray(np.repeat(pixels, 3, axis=2))
    if layout.order.startswith("bgr"):
        return np.ascontiguousarray(pixels[:, :, 2::-1])
    return np.ascontiguousarray(pixels[:, :, :3])


def compressed_to_rgb(msg: CompressedImage, limits: FrameLimits = FrameLimits()) -> np.ndarray:
    """A ``sensor_msgs/CompressedImage`` (JPEG, PNG, ... as image_transport writes them) as RGB."""
    if "compresseddepth" in msg.format.lower().replace(" ", ""):
        raise FrameError(f"compressedDepth images are not supported (format {msg.format!r})")
    if len(msg.data) == 0:
        raise FrameError("compressed image has no data")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    try:  # the size limits apply before decoding: a tiny file can declare a huge image
        header = read_image_header(data)
    except ImageHeaderError as error:
        raise FrameError(f"unusable compressed image (format {msg.format!r}): {error}") from None
    _check_size(header.height, header.width, limits)
    try:
        decoded = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as error:  # OpenCV's own limits (CV_IO_MAX_IMAGE_PIXELS) or a corrupt stream
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise FrameError(f"could not decode compressed {header.format} image "
                         f"({header.width}x{header.height}): {reason}") from None
    if decoded is None:
        raise FrameError(f"could not decode compressed image (format {msg.format!r}, {len(msg.data)} bytes)")
    _check_size(decoded.shape[0], decoded.shape[1], limits)
    return np.ascontiguousarray(decoded[:, :, ::-1])


def byte_field(values: np.ndarray) -> array.array:
    """A message ``uint8[]`` field from an array's raw bytes, without per-element checks."""
    field = array.array("B")
    field.frombytes(np.ascontiguousarray(values).tobytes())
    return field


def array_to_image(values: np.ndarray, encoding: str, header: Header) -> Image:
    """An Image of a contiguous (H, W[, C]) array whose memory layout matches ``encoding``."""
    values = np.ascontiguousarray(values)
    msg = Image(header=header, height=values.shape[0], width=values.shape[1], encoding=encoding)
    msg.is_bigendian = int(_NATIVE_BIG_ENDIAN and values.dtype.itemsize > 1)
    msg.step = values.strides[0]
    msg.data = byte_field(values)
    return msg


def rgb_to_image(rgb: np.ndarray, header: Header) -> Image:
    """An rgb8 Image of an (H, W, 3) uint8 array."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected (H, W, 3) uint8 RGB, got {rgb.dtype} {rgb.shape}")
    return array_to_image(rgb, "rgb8", header)


# ---------------------------------------------------------------- results -> messages


def panoptic_label_image(panoptic: Any) -> np.ndarray:
    """Class id of each pixel's panoptic segment, ``UNLABELLED`` where there is none (uint16)."""
    ids = panoptic.segment_ids
    top = max([0] + [int(s.id) for s in panoptic.segments])
    lookup = np.full(top + 1, UNLABELLED, dtype=np.uint16)
    for segment in panoptic.segments:
        if not 0 <= segment.category_id < UNLABELLED:
            raise ValueError(f"class id {segment.category_id} does not fit the mono16 label image")
        lookup[segment.id] = segment.category_id
    if ids.size and (ids.min() < 0 or ids.max() > top):
        raise ValueError("segment-id image holds ids missing from the segment list")
    return lookup[ids]


def semantic_label_image(semantic: Any) -> np.ndarray:
    """The dense per-pixel argmax class as uint16."""
    labels = np.asarray(semantic.labels)
    if labels.size and (labels.min() < 0 or labels.max() >= UNLABELLED):
        raise ValueError("semantic class ids do not fit the mono16 label image")
    return labels.astype(np.uint16)


def labels_to_image(labels: np.ndarray, header: Header) -> Image:
    return array_to_image(labels.astype(np.uint16, copy=False), "mono16", header)


def segment_ids_to_image(segment_ids: np.ndarray, header: Header) -> Image:
    return array_to_image(segment_ids.astype(np.int32, copy=False), "32SC1", header)


def segment_array(panoptic: Any, vocabulary_version: int, header: Header,
                  tracks: Mapping[int, int] | None = None,
                  geometry: Mapping[int, Any] | None = None) -> SegmentArray:
    """The SegmentArray of a panoptic result (ids and areas as in its segment-id image), with
    each segment's track id (``tracks``: segment id -> track id) and 3D (``geometry``: segment
    id -> ``fcclip_core.spatial.segments_3d.Segment3D``) where given."""
    height, width = panoptic.segment_ids.shape
    msg = SegmentArray(header=header, vocabulary_version=int(vocabulary_version),
                       height=int(height), width=int(width))
    tracks, geometry = tracks or {}, geometry or {}
    for s in panoptic.segments:
        segment = SegmentMsg(
            id=int(s.id), class_id=int(s.category_id), label=str(s.label), score=float(s.score),
            is_thing=bool(s.isthing), area=int(s.area),
            bbox=RegionOfInterest(x_offset=int(s.bbox[0]), y_offset=int(s.bbox[1]),
                                  width=int(s.bbox[2]), height=int(s.bbox[3])),
            centroid_x=float(s.centroid[0]), centroid_y=float(s.centroid[1]),
            track_id=int(tracks.get(s.id, 0)))
        g = geometry.get(s.id)
        if g is not None:
            segment.has_3d = True
            segment.centroid_3d = Point(x=g.centroid[0], y=g.centroid[1], z=g.centroid[2])
            segment.box_3d_min = Point(x=g.box_min[0], y=g.box_min[1], z=g.box_min[2])
            segment.box_3d_max = Point(x=g.box_max[0], y=g.box_max[1], z=g.box_max[2])
            segment.num_points = int(g.num_points)
            segment.median_depth = float(g.median_depth)
        msg.segments.append(segment)
    return msg


def detection_id(segment_id: int, tracks: Mapping[int, int] | None) -> str:
    """A detection's ``id``: the segment id without tracking, else its track id ("" while the
    track is not confirmed)."""
    if tracks is None:
        return str(int(segment_id))
    track = int(tracks.get(segment_id, 0))
    return str(track) if track > 0 else ""


def detection_array(panoptic: Any, header: Header, vision_msgs: Any,
                    tracks: Mapping[int, int] | None = None) -> Any:
    """A ``vision_msgs/Detection2DArray`` with one detection per thing segment.

    ``class_id`` is the label text (unambiguous across vocabulary changes). ``id`` is the track
    id when ``tracks`` (segment id -> track id) is given ("" while a track is not confirmed),
    else the segment id (the value of the segment's pixels in ``~/segment_ids``).
    ``vision_msgs`` is the module ``vision_msgs.msg``. BoundingBox2D centres are pixel-area
    centres: x + w / 2, y + h / 2.
    """
    out = vision_msgs.Detection2DArray(header=header)
    for s in panoptic.segments:
        if not s.isthing:
            continue
        x, y, w, h = (float(v) for v in s.bbox)
        detection = vision_msgs.Detection2D(header=header, id=detection_id(s.id, tracks))
        hypothesis = vision_msgs.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = str(s.label)
        hypothesis.hypothesis.score = float(s.score)
        detection.results = [hypothesis]
        center = detection.bbox.center
        if hasattr(center, "position"):  # vision_msgs >= 4: vision_msgs/Pose2D
            center.position.x, center.position.y = x + w / 2.0, y + h / 2.0
        else:  # older releases: geometry_msgs/Pose2D
            center.x, center.y = x + w / 2.0, y + h / 2.0
        detection.bbox.size_x, detection.bbox.size_y = w, h
        out.detections.append(detection)
    return out


def vocabulary_message(vocabulary: Any, version: int, header: Header) -> VocabularyMsg:
    """The ``fcclip_ros/Vocabulary`` of a ``fcclip_core`` Vocabulary."""
    entries = list(vocabulary.entries)
    return VocabularyMsg(
        header=header, version=int(version), class_ids=list(range(len(entries))),
        labels=[str(e.names[0]) for e in entries],
        synonyms=[", ".join(str(n) for n in e.names) for e in entries],
        is_thing=[bool(e.isthing) for e in entries])


def label_info(vocabulary: Any, header: Header, vision_msgs: Any) -> Any:
    """A ``vision_msgs/LabelInfo``: class id -> label of the current vocabulary."""
    msg = vision_msgs.LabelInfo(header=header)
    msg.class_map = [vision_msgs.VisionClass(class_id=i, class_name=str(e.names[0]))
                     for i, e in enumerate(vocabulary.entries)]
    return msg
