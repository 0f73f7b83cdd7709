"""Pinhole cameras in pure numpy: intrinsics, look-at extrinsics (OpenCV axes), projection, view sampling.

Kept out of Blender so the conventions of docs/scene-format.md can be tested in milliseconds.
"""

from __future__ import annotations

import numpy as np

OPENCV_TO_BLENDER = np.diag([1.0, -1.0, -1.0, 1.0])


def intrinsics(width: int, height: int, focal_mm: float = 30.0, sensor_mm: float = 36.0) -> np.ndarray:
    """K of a Blender camera with horizontal sensor fit and no shift (principal point at the image centre)."""
    f = focal_mm / sensor_mm * width
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """World-to-camera 4x4 with OpenCV axes (x right, y down, z towards the target)."""
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("camera looks straight along the up axis; its roll is undefined")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward])
    w2c = np.eye(4)
    w2c[:3, :3] = rotation
    w2c[:3, 3] = -rotation @ eye
    return w2c


def blender_matrix_world(world_to_camera: np.ndarray) -> np.ndarray:
    """A Blender camera's matrix_world for an OpenCV world-to-camera matrix."""
    return np.linalg.inv(world_to_camera) @ OPENCV_TO_BLENDER


def camera_center(world_to_camera: np.ndarray) -> np.ndarray:
    rotation, translation = world_to_camera[:3, :3], world_to_camera[:3, 3]
    return -rotation.T @ translation


def project(K: np.ndarray, world_to_camera: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) and camera-frame depths (N,) of world points (N, 3)."""
    cam = points @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    z = cam[:, 2]
    uvw = cam @ K.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = uvw[:, :2] / z[:, None]
    return uv, z


def pixel_rays(K: np.ndarray, world_to_camera: np.ndarray, width: int, height: int) -> np.ndarray:
    """Rays through pixel centres as (H, W, 6) [origin, direction]; directions have camera-frame z = 1,
    so a hit distance along them is the planar depth."""
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    dirs_cam = pix @ np.linalg.inv(K).T
    dirs_world = dirs_cam @ world_to_camera[:3, :3]  # R^T applied row-wise
    origin = np.broadcast_to(camera_center(world_to_camera), dirs_world.shape)
    return np.concatenate([origin, dirs_world], axis=-1)


def fits_in_image(K, world_to_camera, points, width, height, margin_px: float = 0.0) -> bool:
    uv, z = project(K, world_to_camera, points)
    if np.any(z <= 1e-6):
        return False
    inside_u = (uv[:, 0] >= margin_px) & (uv[:, 0] <= width - margin_px)
    inside_v = (uv[:, 1] >= margin_px) & (uv[:, 1] <= height - margin_px)
    return bool(np.all(inside_u & inside_v))


def orbit_views(
    rng: np.random.Generator,
    n_views: int,
    target: np.ndarray,
    radius_range: tuple[float, float],
    elevation_deg_range: tuple[float, float],
    K: np.ndarray,
    width: int,
    height: int,
    must_see: np.ndarray,
    margin_px: float = 4.0,
) -> tuple[np.ndarray, dict]:
    """Cameras on an orbit around `target`, one per evenly spaced azimuth (random phase, so no two views coincide).

    Elevation and radius are drawn per view; a radius is then grown until every point of `must_see`
    (e.g. all object box corners) projects inside the image with `margin_px` to spare.
    Returns world-to-camera matrices (V, 4, 4) and the sampled azimuths, elevations and radii.
    """
    phase = rng.uniform(0.0, 2 * np.pi / n_views)
    azimuths = phase + 2 * np.pi * np.arange(n_views) / n_views
    elevations = np.deg2rad(rng.uniform(*elevation_deg_range, size=n_views))
    radii = rng.uniform(*radius_range, size=n_views)
    matrices = []
    for i in range(n_views):
        direction = np.array(
            [np.cos(elevations[i]) * np.cos(azimuths[i]), np.cos(elevations[i]) * np.sin(azimuths[i]),
             np.sin(elevations[i])]
        )
        for _ in range(200):
            w2c = look_at(target + radii[i] * direction, target)
            if fits_in_image(K, w2c, must_see, width, height, margin_px):
                break
            radii[i] *= 1.03
        else:
            raise ValueError("objects do not fit in the image even from far away; check the intrinsics")
        matrices.append(w2c)
    record = {
        "azimuth_deg": np.rad2deg(azimuths).tolist(),
        "elevation_deg": np.rad2deg(elevations).tolist(),
        "radius": radii.tolist(),
    }
    return np.stack(matrices), record
