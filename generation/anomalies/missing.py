"""`missing`: one part removed. The anomalous region is the surface the part was attached to."""

from __future__ import annotations

import dataclasses

import numpy as np
import open3d as o3d

from generation.anomalies.base import AnomalyRejected, AnomalyResult, part_areas
from generation.shapes.types import Shape


class MissingPartAnomaly:
    name = "missing"
    area_share = (0.01, 0.5)  # as in the published generator: a part of 1-50% of the surface
    contact_radii = (0.02, 0.04, 0.08)  # object units (shape normalised to max |v| = 0.5)

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        if len(shape.parts) < 2:
            raise AnomalyRejected("missing: the shape has a single part")
        share = part_areas(shape) / part_areas(shape).sum()
        candidates = np.flatnonzero((share >= self.area_share[0]) & (share <= self.area_share[1]))
        if len(candidates) == 0:
            raise AnomalyRejected("missing: no part covers 1-50% of the surface")
        index = int(candidates[rng.integers(len(candidates))])
        removed = shape.parts[index]
        variant = dataclasses.replace(shape, parts=[p for i, p in enumerate(shape.parts) if i != index])
        merged, _ = variant.merged()
        distance = _distance_to(removed.mesh, np.asarray(merged.vertices))
        for radius in self.contact_radii:
            faces = np.any(distance[np.asarray(merged.faces)] <= radius, axis=1)
            if faces.any():
                break
        else:
            raise AnomalyRejected("missing: the removed part touched nothing, so no region marks its absence")
        return AnomalyResult(
            shape=variant,
            anomaly_type=self.name,
            anomalous_faces=faces,
            params={"part": removed.name, "area_share": float(share[index]), "contact_radius": radius},
        )


def _distance_to(mesh, points: np.ndarray) -> np.ndarray:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()
