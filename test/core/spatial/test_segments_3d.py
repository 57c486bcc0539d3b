"""3D segment geometry on synthetic scenes with known answers (pinhole camera, plates, a floor
and a wall), with holes, NaNs, far depth, other depth resolutions and bad intrinsics."""
from __future__ import annotations

import numpy as np
import pytest

from fcclip_core.spatial.depth import DepthError, depth_in_metres, resample_nearest
from fcclip_core.spatial.group_stats import SortedGroups
from fcclip_core.spatial.intrinsics import IntrinsicsError, PinholeIntrinsics
from fcclip_core.spatial.segments_3d import (GeometryConfig, labelled_cloud, panoptic_in_3d,
                                             segment_geometry)
from fcclip_core.spatial.synthetic import Cuboid, Plate, Scene, render

K = PinholeIntrinsics(fx=500.0, fy=500.0, cx=319.5, cy=239.5, width=640, height=480)
PLATE = Plate(x0=-0.3, x1=0.2, y0=-0.1, y1=0.3, z=1.5)
SCENE = Scene(wall_z=4.0, floor_y=1.0, plates=(PLATE,))
PLATE_ID = SCENE.segment_id_of_plate(0)
CENTROID_TOL = 0.01
BOX_TOL = 0.02


def check_plate(geometry, plate: Plate = PLATE, segment_id: int = PLATE_ID) -> None:
    seg = geometry.segments()[segment_id]
    np.testing.assert_allclose(seg.centroid, plate.center, atol=CENTROID_TOL)
    np.testing.assert_allclose(seg.box_min, (plate.x0, plate.y0, plate.z), atol=BOX_TOL)
    np.testing.assert_allclose(seg.box_max, (plate.x1, plate.y1, plate.z), atol=BOX_TOL)
    assert seg.median_depth == pytest.approx(plate.z, abs=0.002)


def test_plate_floor_and_wall_match_the_scene() -> None:
    ids, depth = render(SCENE, K)
    geometry = segment_geometry(ids, depth, K)
    check_plate(geometry)
    segments = geometry.segments()
    # the plate covers ~ (0.5 * 500 / 1.5) x (0.4 * 500 / 1.5) pixels, every one with depth
    assert segments[PLATE_ID].num_points == int((ids == PLATE_ID).sum())
    assert abs(segments[PLATE_ID].num_points - (250 / 1.5) * (200 / 1.5)) < 400
    wall, floor = segments[1], segments[2]
    assert wall.median_depth == pytest.approx(4.0, abs=0.002)
    assert wall.box_min[2] == pytest.approx(4.0, abs=0.002)
    assert wall.box_max[2] == pytest.approx(4.0, abs=0.002)
    # the floor is the plane y = 1 from the bottom row (z = 500 / 240.5) back to the wall
    assert floor.box_min[1] == pytest.approx(1.0, abs=0.002)
    assert floor.box_max[1] == pytest.approx(1.0, abs=0.002)
    assert floor.centroid[1] == pytest.approx(1.0, abs=0.002)
    assert 500 / 240.5 - 0.01 < floor.box_min[2] < floor.median_depth < floor.box_max[2] <= 4.0


def test_the_box_is_robust_to_edge_pixels_that_bleed_onto_the_wall() -> None:
    ids, depth = render(SCENE, K)
    grown = ids.copy()
    plate = ids == PLATE_ID
    # a one-pixel rim on the right and bottom edges (a mask one pixel off, ~1.3% of its pixels)
    # labelled as the plate but seeing the wall 2.5 m behind
    rim = np.zeros_like(plate)
    rim[:, 1:] |= plate[:, :-1]
    rim[1:, :] |= plate[:-1, :]
    rim &= ~plate
    assert 0.01 < rim.sum() / plate.sum() < 0.02
    grown[rim] = PLATE_ID
    check_plate(segment_geometry(grown, depth, K))
    # without percentiles the rim stretches the box to the wall
    loose = segment_geometry(grown, depth, K, GeometryConfig(box_percentiles=(0.0, 100.0)))
    assert loose.segments()[PLATE_ID].box_max[2] == pytest.approx(4.0, abs=0.002)


def test_holes_nans_infinities_and_far_depth_are_ignored() -> None:
    ids, depth = render(SCENE, K)
    rng = np.random.default_rng(0)
    broken = depth.copy()
    for bad in (0.0, np.nan, np.inf, 25.0):
        broken[rng.random(depth.shape) < 0.1] = bad
    geometry = segment_geometry(ids, broken, K, GeometryConfig(max_depth=10.0))
    check_plate(geometry)
    valid = np.isfinite(broken) & (broken > 0) & (broken <= 10.0)
    assert geometry.segments()[PLATE_ID].num_points == int(((ids == PLATE_ID) & valid).sum())
    assert geometry.segments()[1].median_depth == pytest.approx(4.0, abs=0.002)


def test_a_cuboid_seen_from_the_side_gets_the_box_of_its_visible_faces() -> None:
    # right of the axis and below the camera: the camera sees its front, left and top faces
    cuboid = Cuboid(x0=0.3, x1=0.7, y0=0.2, y1=0.6, z0=1.5, z1=2.1)
    ids, depth = render(Scene(wall_z=4.0, floor_y=None, plates=(cuboid,)), K)
    full = segment_geometry(ids, depth, K, GeometryConfig(box_percentiles=(0.0, 100.0), sparse_stride=1))
    np.testing.assert_allclose(full.segments()[2].box_min, (0.3, 0.2, 1.5), atol=0.01)
    np.testing.assert_allclose(full.segments()[2].box_max, (0.7, 0.6, 2.1), atol=0.01)
    # the robust box trims 2% of the points per side: the far ends of the side and top faces
    # are seen foreshortened (few pixels per metre), so it stops short of z1 there
    seg = segment_geometry(ids, depth, K).segments()[2]
    np.testing.assert_allclose(seg.box_min, (0.3, 0.2, 1.5), atol=BOX_TOL)
    np.testing.assert_allclose(seg.box_max[:2], (0.7, 0.6), atol=BOX_TOL)
    assert 2.0 < seg.box_max[2] <= 2.1
    assert seg.median_depth > 1.5  # a good part of what is seen is the side and top


def test_max_depth_drops_what_lies_beyond_it() -> None:
    ids, depth = render(SCENE, K)
    geometry = segment_geometry(ids, depth, K, GeometryConfig(max_depth=3.0))
    assert 1 not in geometry.segments()  # the wall at 4 m
    assert geometry.segments()[2].box_max[2] <= 3.0
    check_plate(geometry)


def test_half_resolution_depth_gives_the_same_answer() -> None:
    ids, depth = render(SCENE, K)
    half_k = K.scaled_to(320, 240)
    _, half_depth = render(SCENE, half_k)
    full, _ = panoptic_in_3d(ids, np.arange(ids.max() + 1), depth, K)
    half, _ = panoptic_in_3d(ids, np.arange(ids.max() + 1), half_depth, K)
    check_plate(half)
    for sid, seg in full.segments().items():
        other = half.segments()[sid]
        np.testing.assert_allclose(other.centroid, seg.centroid, atol=CENTROID_TOL)
        np.testing.assert_allclose(other.box_min, seg.box_min, atol=BOX_TOL)
        np.testing.assert_allclose(other.box_max, seg.box_max, atol=BOX_TOL)


def test_camera_info_of_another_resolution_is_scaled_to_the_labels() -> None:
    ids, depth = render(SCENE, K)
    double_k = PinholeIntrinsics(fx=1000.0, fy=1000.0, cx=639.5, cy=479.5, width=1280, height=960)
    geometry, _ = panoptic_in_3d(ids, np.arange(ids.max() + 1), depth, double_k)
    check_plate(geometry)


def test_uint16_millimetres_and_a_custom_scale() -> None:
    ids, depth = render(SCENE, K)
    millimetres = np.round(depth * 1000).astype(np.uint16)
    geometry, _ = panoptic_in_3d(ids, np.arange(ids.max() + 1), millimetres, K)
    check_plate(geometry)
    tenths = np.round(depth * 10000).astype(np.uint16)  # 0.1 mm units
    geometry, _ = panoptic_in_3d(ids, np.arange(ids.max() + 1), tenths, K,
                                 GeometryConfig(depth_scale=0.0001))
    check_plate(geometry)
    assert depth_in_metres(np.array([[1500]], np.uint16))[0, 0] == pytest.approx(1.5)


def test_large_segments_measured_sparsely_agree_with_every_pixel() -> None:
    ids, depth = render(Scene(wall_z=4.0, floor_y=1.0, plates=(PLATE, Cuboid(0.4, 0.9, -0.6, 0.1, 2.0, 2.5))), K)
    ids[100:400, 41] = 9  # a thin line of 300 pixels on an odd column: the grid would miss it
    exact = segment_geometry(ids, depth, K, GeometryConfig(sparse_stride=1)).segments()
    sparse = segment_geometry(ids, depth, K, GeometryConfig(sparse_stride=2, dense_points=100)).segments()
    assert set(exact) == set(sparse) == {1, 2, 3, 4, 9}
    for sid, seg in exact.items():
        other = sparse[sid]
        assert other.num_points == seg.num_points  # counts stay exact
        # surfaces seen at a grazing angle (the floor's far end, the cuboid's side) span a few cm
        # per pixel, and every other row and column is skipped: box ends move by up to 4 cm
        np.testing.assert_allclose(other.centroid, seg.centroid, atol=0.01)
        np.testing.assert_allclose(other.box_min, seg.box_min, atol=0.04)
        np.testing.assert_allclose(other.box_max, seg.box_max, atol=0.04)
        assert other.median_depth == pytest.approx(seg.median_depth, abs=0.01)


def test_segments_with_too_few_points_get_no_3d() -> None:
    ids, depth = render(SCENE, K)
    ids[0:2, 0:3] = 9  # 6 pixels
    geometry = segment_geometry(ids, depth, K, GeometryConfig(min_points=7))
    assert 9 not in geometry.segments() and PLATE_ID in geometry.segments()
    assert 9 in segment_geometry(ids, depth, K, GeometryConfig(min_points=6)).segments()


def test_invalid_intrinsics_and_sizes_raise_clear_errors() -> None:
    with pytest.raises(IntrinsicsError, match="focal lengths must be positive"):
        PinholeIntrinsics.from_k([0, 0, 320, 0, 0, 240, 0, 0, 1], 640, 480)
    with pytest.raises(IntrinsicsError, match="9 entries"):
        PinholeIntrinsics.from_k([500, 0, 320], 640, 480)
    with pytest.raises(IntrinsicsError, match="size must be positive"):
        PinholeIntrinsics.from_k([500, 0, 320, 0, 500, 240, 0, 0, 1], 0, 0)
    with pytest.raises(IntrinsicsError, match="not the same camera"):
        K.scaled_to(640, 640)
    ids, depth = render(SCENE, K)
    with pytest.raises(DepthError, match="not the same camera"):
        resample_nearest(depth, 480, 480)
    with pytest.raises(DepthError, match="must be a \\[H, W\\] image"):
        depth_in_metres(np.zeros((2, 3, 4), np.float32))


def test_labelled_cloud_is_decimated_back_projection() -> None:
    ids, depth = render(SCENE, K)
    classes = np.array([0, 10, 11, 12])
    cloud = labelled_cloud(ids, depth, K, classes, decimation=4)
    assert len(cloud.points) == ids[::4, ::4].size  # every pixel has a segment and depth
    plate = cloud.segment_ids == PLATE_ID
    assert (cloud.class_ids[plate] == 12).all()
    np.testing.assert_allclose(cloud.points[plate, 2], 1.5, atol=1e-6)
    assert cloud.points[plate, 0].min() >= PLATE.x0 - 1e-6
    assert cloud.points[plate, 1].max() <= PLATE.y1 + 1e-6
    np.testing.assert_allclose(cloud.points[cloud.segment_ids == 2, 1], 1.0, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
def test_sorted_groups_match_numpy_per_group(seed: int) -> None:
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, 12, 20000)
    values = rng.normal(groups * 0.5, 0.3 + 0.1 * groups).astype(np.float32)
    sorted_groups = SortedGroups(values, groups, 14, resolution=0.001)  # 12, 13 stay empty
    q = np.array([0.02, 0.5, 0.98])
    got = sorted_groups.quantiles(q)
    means = sorted_groups.trimmed_means(0.02, 0.98)
    for g in range(12):
        group = np.sort(values[groups == g].astype(np.float64))
        np.testing.assert_allclose(got[g], np.quantile(group, q), atol=0.00025)
        last = len(group) - 1
        inner = group[int(np.ceil(0.02 * last)):int(np.floor(0.98 * last)) + 1]
        assert means[g] == pytest.approx(inner.mean(), abs=0.00025)
    assert sorted_groups.counts.tolist() == np.bincount(groups, minlength=14).tolist()
    assert np.isnan(got[12:]).all() and np.isnan(means[12:]).all()


def test_sorted_groups_switch_to_float64_when_float32_is_too_coarse() -> None:
    values = np.array([0.0, 30.0, 0.0005, 29.9995], dtype=np.float32)
    groups = np.array([1, 1, 900, 900])
    sorted_groups = SortedGroups(values, groups, 901, resolution=0.001)
    assert sorted_groups.dtype == np.float64
    np.testing.assert_allclose(sorted_groups.quantiles(np.array([0.0, 1.0]))[[1, 900]],
                               [[0.0, 30.0], [0.0005, 29.9995]], atol=1e-6)
