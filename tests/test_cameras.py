"""Camera conventions (docs/scene-format.md) in pure numpy."""

import numpy as np
import pytest

from generation import cameras


def test_default_intrinsics_match_the_published_benchmark():
    K = cameras.intrinsics(256, 256, focal_mm=30, sensor_mm=36)
    np.testing.assert_allclose(K, [[213.3333, 0, 128], [0, 213.3333, 128], [0, 0, 1]], atol=1e-3)


def test_look_at_puts_target_on_principal_point_and_up_on_top():
    K = cameras.intrinsics(64, 48)
    eye, target = np.array([1.0, -2.0, 0.8]), np.array([0.1, 0.2, 0.1])
    w2c = cameras.look_at(eye, target)
    np.testing.assert_allclose(cameras.camera_center(w2c), eye, atol=1e-12)
    uv, z = cameras.project(K, w2c, np.stack([target, target + [0, 0, 0.05]]))
    np.testing.assert_allclose(uv[0], [32, 24], atol=1e-9)
    assert z[0] == pytest.approx(np.linalg.norm(eye - target))
    assert uv[1, 1] < uv[0, 1]  # higher in the world is higher in the image (smaller v)


def test_blender_camera_looks_along_its_negative_z():
    eye, target = np.array([0.5, 0.5, 0.5]), np.zeros(3)
    matrix = cameras.blender_matrix_world(cameras.look_at(eye, target))
    np.testing.assert_allclose(matrix[:3, 3], eye, atol=1e-12)
    forward = matrix[:3, :3] @ [0, 0, -1]
    np.testing.assert_allclose(forward, -eye / np.linalg.norm(eye), atol=1e-12)
    up_in_image = matrix[:3, :3] @ [0, 1, 0]
    assert up_in_image[2] > 0


def test_pixel_rays_pass_through_their_pixel_centres_with_planar_depth():
    K = cameras.intrinsics(16, 12)
    w2c = cameras.look_at([0.3, -1.0, 0.6], [0, 0, 0.1])
    rays = cameras.pixel_rays(K, w2c, 16, 12)
    points = rays[..., :3] + 2.5 * rays[..., 3:]
    uv, z = cameras.project(K, w2c, points.reshape(-1, 3))
    u, v = np.meshgrid(np.arange(16) + 0.5, np.arange(12) + 0.5)
    np.testing.assert_allclose(uv, np.stack([u.ravel(), v.ravel()], axis=1), atol=1e-9)
    np.testing.assert_allclose(z, 2.5, atol=1e-9)


def test_orbit_views_have_distinct_azimuths_and_keep_every_point_in_frame():
    rng = np.random.default_rng(0)
    K = cameras.intrinsics(64, 64)
    points = rng.uniform([-0.6, -0.6, 0], [0.6, 0.6, 0.4], size=(50, 3))
    w2c, record = cameras.orbit_views(rng, 20, np.array([0, 0, 0.1]), (0.67, 0.77), (25, 32), K, 64, 64,
                                      points, margin_px=2)
    azimuths = np.sort(np.mod(record["azimuth_deg"], 360))
    assert np.diff(azimuths).min() == pytest.approx(18.0)
    assert (360 - azimuths[-1] + azimuths[0]) == pytest.approx(18.0)  # the last view is not the first again
    for matrix in w2c:
        assert cameras.fits_in_image(K, matrix, points, 64, 64, margin_px=2)
    elevations = np.array(record["elevation_deg"])
    assert elevations.min() >= 25 and elevations.max() <= 32
