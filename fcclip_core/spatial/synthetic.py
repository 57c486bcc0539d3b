"""Synthetic scenes with known answers, for the tests, the benchmark and the README picture.

- Depth scenes: a floor, a back wall and upright rectangles facing a pinhole camera; every
  object's true extent and distance are known in closed form.
- Panoptic sequences: boxes moving at constant velocity (crossing, hiding) over a stuff
  background, with the true object behind every segment.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fcclip_core.results import PanopticResult, Segment, region_stats
from fcclip_core.spatial.intrinsics import PinholeIntrinsics


@dataclass(frozen=True)
class Plate:
    """An upright rectangle facing the camera at depth ``z``, spanning [x0, x1] x [y0, y1]
    in the optical frame (metres; y points down)."""

    x0: float
    x1: float
    y0: float
    y1: float
    z: float

    @property
    def center(self) -> tuple[float, float, float]:
        return ((self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2, self.z)

    def hit(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Depth where each ray (dx, dy, 1) meets the plate; inf where it misses."""
        x, y = dx * self.z, dy * self.z
        inside = (x >= self.x0) & (x <= self.x1) & (y >= self.y0) & (y <= self.y1)
        return np.where(inside, self.z, np.inf)


@dataclass(frozen=True)
class Cuboid:
    """An axis-aligned box [x0, x1] x [y0, y1] x [z0, z1] in the optical frame (metres), in
    front of the camera (z0 > 0): its visible faces are what the camera sees."""

    x0: float
    x1: float
    y0: float
    y1: float
    z0: float
    z1: float

    def hit(self, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """Depth (z) where each ray (dx, dy, 1) enters the box; inf where it misses (slabs)."""
        near = np.full(dx.shape, self.z0)
        far = np.full(dx.shape, self.z1)
        for d, lo, hi in ((dx, self.x0, self.x1), (dy, self.y0, self.y1)):
            with np.errstate(divide="ignore", invalid="ignore"):
                t0, t1 = lo / d, hi / d
            enter = np.where(d == 0, np.where(lo <= 0 <= hi, -np.inf, np.inf), np.minimum(t0, t1))
            leave = np.where(d == 0, np.where(lo <= 0 <= hi, np.inf, -np.inf), np.maximum(t0, t1))
            near, far = np.maximum(near, enter), np.minimum(far, leave)
        return np.where(near <= far, near, np.inf)


@dataclass(frozen=True)
class Scene:
    """Floor at ``floor_y`` below the camera (None: no floor), back wall at ``wall_z``, and
    objects (plates and cuboids).

    Segment ids: 1 = wall, 2 = floor (when present), then one per object in order.
    """

    wall_z: float = 4.0
    floor_y: float | None = 1.0
    plates: tuple[Plate | Cuboid, ...] = field(default_factory=tuple)

    def segment_id_of_plate(self, index: int) -> int:
        return index + (3 if self.floor_y is not None else 2)


def render(scene: Scene, k: PinholeIntrinsics) -> tuple[np.ndarray, np.ndarray]:
    """(segment ids [H, W] int32, depth [H, W] float32 metres) of ``scene`` at ``k``'s size:
    each pixel centre's ray meets the nearest surface."""
    u = (np.arange(k.width) - k.cx) / k.fx
    v = (np.arange(k.height) - k.cy) / k.fy
    dx, dy = np.meshgrid(u, v)
    depth = np.full(dx.shape, scene.wall_z, dtype=np.float64)
    ids = np.ones(dx.shape, dtype=np.int32)
    if scene.floor_y is not None:
        with np.errstate(divide="ignore"):
            z_floor = np.where(dy > 0, scene.floor_y / np.where(dy > 0, dy, 1.0), np.inf)
        nearer = z_floor < depth
        depth[nearer], ids[nearer] = z_floor[nearer], 2
    for index, obj in enumerate(scene.plates):
        z = obj.hit(dx, dy)
        hit = z < depth
        depth[hit], ids[hit] = z[hit], scene.segment_id_of_plate(index)
    return ids, depth.astype(np.float32)


def grid_of_plates(k: PinholeIntrinsics, rows: int, cols: int, z_near: float = 1.0,
                   z_far: float = 3.0, fill: float = 0.7) -> tuple[Plate, ...]:
    """``rows`` x ``cols`` plates tiling the view of ``k`` at depths spread between ``z_near``
    and ``z_far``; each covers about ``fill`` of its grid cell (per side) as seen from the
    camera, so none hides another."""
    plates = []
    depths = np.linspace(z_near, z_far, rows * cols)
    for i in range(rows):
        for j in range(cols):
            z = float(depths[i * cols + j])
            # the cell's pixel rectangle, back-projected to depth z
            u0, u1 = j * k.width / cols, (j + 1) * k.width / cols
            v0, v1 = i * k.height / rows, (i + 1) * k.height / rows
            du, dv = (1 - fill) / 2 * (u1 - u0), (1 - fill) / 2 * (v1 - v0)
            plates.append(Plate(x0=(u0 + du - k.cx) * z / k.fx, x1=(u1 - du - k.cx) * z / k.fx,
                                y0=(v0 + dv - k.cy) * z / k.fy, y1=(v1 - dv - k.cy) * z / k.fy,
                                z=z))
    return tuple(plates)


@dataclass(frozen=True)
class MovingBox:
    """A thing moving across the image at constant velocity, hidden in ``hidden`` frames.

    Pixel units; a smaller ``z`` is nearer and hides farther boxes where they overlap."""

    object_id: int
    class_id: int
    x: float  # centre column at frame 0
    y: float  # centre row at frame 0
    vx: float  # columns per frame
    vy: float  # rows per frame
    width: int
    height: int
    z: float = 1.0
    hidden: frozenset[int] = frozenset()


def render_boxes(boxes: tuple[MovingBox, ...], frame: int, height: int, width: int,
                 stuff_class: int | None = None, seed: int = 0,
                 ) -> tuple[np.ndarray, list[tuple[int, int, bool]], dict[int, int]]:
    """A panoptic frame of moving boxes over one stuff background.

    Returns (segment ids [H, W] int32, (segment id, class id, is thing) per segment,
    segment id -> object id of the boxes that are visible). Segment ids are shuffled per
    frame, as a segmenter's are.
    """
    visible = [b for b in sorted(boxes, key=lambda b: -b.z) if frame not in b.hidden]
    order = np.random.default_rng(seed * 100003 + frame).permutation(len(visible) + 1) + 1
    ids = np.zeros((height, width), dtype=np.int32)
    segments: list[tuple[int, int, bool]] = []
    objects: dict[int, int] = {}
    if stuff_class is not None:
        ids[:] = order[-1]
    for box, sid in zip(visible, order):
        cx, cy = box.x + box.vx * frame, box.y + box.vy * frame
        r0, r1 = int(round(cy - box.height / 2)), int(round(cy + box.height / 2))
        c0, c1 = int(round(cx - box.width / 2)), int(round(cx + box.width / 2))
        ids[max(0, r0):max(0, r1), max(0, c0):max(0, c1)] = sid
    present = set(np.unique(ids).tolist())
    for box, sid in zip(visible, order):
        if sid in present:
            segments.append((int(sid), box.class_id, True))
            objects[int(sid)] = box.object_id
    if stuff_class is not None and order[-1] in present:
        segments.append((int(order[-1]), stuff_class, False))
    return ids, segments, objects


def panoptic_result(ids: np.ndarray, segments: list[tuple[int, int, bool]],
                    labels: list[str]) -> PanopticResult:
    """A ``PanopticResult`` for a segment-id map and (segment id, class id, is thing) triples,
    with areas, boxes and centroids measured from the map; score 1."""
    stats = region_stats(ids, int(ids.max(initial=0)) + 1)
    return PanopticResult(segment_ids=ids, segments=[
        Segment(id=sid, category_id=cls, label=labels[cls], isthing=thing, score=1.0,
                area=int(stats.area[sid]), bbox=tuple(int(v) for v in stats.bbox[sid]),
                centroid=(float(stats.centroid[sid, 0]), float(stats.centroid[sid, 1])),
                query_index=0)
        for sid, cls, thing in sorted(segments)])
