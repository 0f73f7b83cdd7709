"""`missing`: one part removed. The anomalous region is the surface the part was attached to."""

from __future__ import annotations

import dataclasses

import numpy as np
import trimesh

from generation.anomalies.base import AnomalyRejected, AnomalyResult, part_areas
from generation.open3d_import import open3d as o3d
from generation.shapes.types import Shape


class MissingPartAnomaly:
    name = "missing"
    area_share = (0.01, 0.5)  # as in the published generator: a part of 1-50% of the surface
    contact_radii = (0.02, 0.04, 0.08)  # object units (shape normalised to max |v| = 0.5)

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        """Remove a random eligible part; parts whose removal fails a check are passed over."""
        if len(shape.parts) < 2:
            raise AnomalyRejected("missing: the shape has a single part")
        share = part_areas(shape) / part_areas(shape).sum()
        candidates = np.flatnonzero((share >= self.area_share[0]) & (share <= self.area_share[1]))
        if len(candidates) == 0:
            raise AnomalyRejected("missing: no part covers 1-50% of the surface")
        reasons = []
        for index in rng.permutation(candidates):
            removed = shape.parts[int(index)]
            variant = dataclasses.replace(shape, parts=[p for i, p in enumerate(shape.parts) if i != index])
            if not _connected(variant):
                reasons.append(f"removing {removed.name!r} leaves the object in separate pieces")
                continue
            faces, radius = self._contact_faces(variant, removed.mesh)
            if faces is None:
                reasons.append(f"{removed.name!r} touched nothing, so no region marks its absence")
                continue
            return AnomalyResult(
                shape=variant,
                anomaly_type=self.name,
                anomalous_faces=faces,
                params={"part": removed.name, "area_share": float(share[index]), "contact_radius": radius},
            )
        raise AnomalyRejected("missing: " + "; ".join(reasons))

    def _contact_faces(self, variant: Shape, removed: trimesh.Trimesh) -> tuple[np.ndarray | None, float]:
        """Faces of what is left that lay against the removed part: near its surface or closest to it."""
        merged, _ = variant.merged()
        faces = np.asarray(merged.faces)
        vertex_distance = _distance_to(removed, np.asarray(merged.vertices))
        samples = trimesh.sample.sample_surface(removed, 4000, seed=0)[0].astype(np.float32)
        closest = _raycasting_scene(merged).compute_closest_points(o3d.core.Tensor(samples))
        sample_distance = np.linalg.norm(closest["points"].numpy() - samples, axis=1)
        nearest_face = closest["primitive_ids"].numpy().astype(np.int64)
        for radius in self.contact_radii:
            marked = np.any(vertex_distance[faces] <= radius, axis=1)
            marked[nearest_face[sample_distance <= radius]] = True
            if marked.any():
                return marked, radius
        return None, 0.0


def _connected(shape: Shape, touch: float = 0.01) -> bool:
    """Whether the parts form one object (each part within `touch` of the rest), so removing a part
    never leaves loose pieces that would fall apart in the physics drop."""
    reached, frontier = {0}, [0]
    while frontier:
        i = frontier.pop()
        for j in range(len(shape.parts)):
            if j not in reached and _gap(shape.parts[i].mesh, shape.parts[j].mesh) <= touch:
                reached.add(j)
                frontier.append(j)
    return len(reached) == len(shape.parts)


def _gap(a: trimesh.Trimesh, b: trimesh.Trimesh) -> float:
    """Approximate distance between two parts (0 where b reaches inside a), from b's vertices and surface samples."""
    points = np.concatenate([np.asarray(b.vertices), trimesh.sample.sample_surface(b, 2000, seed=0)[0]])
    scene = _raycasting_scene(a)
    query = o3d.core.Tensor(points.astype(np.float32))
    if (scene.compute_occupancy(query).numpy() > 0).any():
        return 0.0
    return float(scene.compute_distance(query).numpy().min())


def _raycasting_scene(mesh: trimesh.Trimesh) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    return scene


def _distance_to(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    return _raycasting_scene(mesh).compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()
