"""Exact per-pixel ground truth by ray casting the final posed meshes with the render cameras.

Depth, instance and anomaly masks come from the same pinhole model and poses as the Cycles images,
one ray through each pixel centre (open3d's RaycastingScene, all views in one call).
"""

from __future__ import annotations

import numpy as np

from generation.cameras import pixel_rays
from generation.open3d_import import open3d as o3d

FLOOR_HALF_SIZE = 5.0  # the 10 m floor plane


def posed_vertices(vertices: np.ndarray, object_to_world: np.ndarray) -> np.ndarray:
    return vertices @ object_to_world[:3, :3].T + object_to_world[:3, 3]


def cast_ground_truth(
    meshes: list[tuple[np.ndarray, np.ndarray]],
    anomalous_faces: list[np.ndarray],
    intrinsics: np.ndarray,
    world_to_camera: np.ndarray,
    width: int,
    height: int,
) -> dict[str, np.ndarray]:
    """meshes: per object (world vertices (n, 3), faces (m, 3)); anomalous_faces: per object bool (m,).

    Returns depth (V, H, W) float32 planar metres (0 = nothing hit), instance (V, H, W) uint8
    (0 = floor/sky, i + 1 = object i) and anomaly (V, H, W) uint8.
    """
    scene = o3d.t.geometry.RaycastingScene()
    floor = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], dtype=np.float32) * FLOOR_HALF_SIZE
    floor[:, 2] = 0.0
    floor_id = scene.add_triangles(o3d.core.Tensor(floor), o3d.core.Tensor(np.array([[0, 1, 2], [0, 2, 3]],
                                                                                   dtype=np.uint32)))
    geometry_to_instance = {floor_id: 0}
    for i, (vertices, faces) in enumerate(meshes):
        gid = scene.add_triangles(
            o3d.core.Tensor(vertices.astype(np.float32)), o3d.core.Tensor(faces.astype(np.uint32))
        )
        geometry_to_instance[gid] = i + 1
    rays = np.stack([pixel_rays(K, w2c, width, height) for K, w2c in zip(intrinsics, world_to_camera,
                                                                            strict=True)])
    hits = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)), nthreads=0)
    t_hit = hits["t_hit"].numpy()
    geometry = hits["geometry_ids"].numpy().astype(np.int64)
    primitive = hits["primitive_ids"].numpy().astype(np.int64)
    missed = ~np.isfinite(t_hit)

    lookup = np.zeros(max(geometry_to_instance) + 2, dtype=np.uint8)
    for gid, instance_id in geometry_to_instance.items():
        lookup[gid] = instance_id
    instance = np.where(missed, 0, lookup[np.where(missed, -1, geometry)]).astype(np.uint8)
    anomaly = np.zeros_like(instance)
    for i, faces_mask in enumerate(anomalous_faces):
        on_object = instance == i + 1
        if faces_mask is not None and faces_mask.any():
            anomaly[on_object] = faces_mask[primitive[on_object]]
    depth = np.where(missed, 0.0, t_hit).astype(np.float32)
    return {"depth": depth, "instance": instance, "anomaly": anomaly}
