"""The marker picture: boxes are drawn where the view camera projects them."""
from __future__ import annotations

import numpy as np
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from fcclip_ros.marker_picture import ViewCamera, draw_outputs, synthetic_picture


def test_a_cube_is_drawn_around_its_projected_centre() -> None:
    view = ViewCamera(eye=(0.0, 0.0, -2.0), target=(0.0, 0.0, 1.0), width=200, height=100, focal=100.0)
    uv, z = view.project(np.array([[0.0, 0.0, 1.0], [0.3, 0.0, 1.0]]))
    np.testing.assert_allclose(uv, [[100, 50], [110, 50]], atol=1e-6)
    assert z.tolist() == [3.0, 3.0]
    cube = Marker(header=Header(frame_id="cam"), type=Marker.CUBE, id=1)
    cube.pose.position.z, cube.pose.orientation.w = 1.0, 1.0
    cube.scale.x = cube.scale.y = cube.scale.z = 0.6
    cube.color.g, cube.color.a = 1.0, 1.0
    picture = draw_outputs(MarkerArray(markers=[cube]), None, view, {})
    green = (picture[:, :, 1] > 200) & (picture[:, :, 0] < 100)
    ys, xs = np.nonzero(green)
    # front face at z = 0.7 (2.7 from the eye): half side 0.3 -> 100 * 0.3 / 2.7 = 11.1 px
    assert abs(xs.min() - (100 - 11.1)) <= 2 and abs(xs.max() - (100 + 11.1)) <= 2
    assert not green[50, 100]  # a wireframe: the centre stays empty


def test_the_readme_picture_renders() -> None:
    picture = synthetic_picture()
    assert picture.shape == (480, 1280, 3) and picture.dtype == np.uint8
    assert picture[:, 640:].std() > 10  # the right half shows something
