"""Part-level anomalies: one part moved, turned or shrunk while staying attached, or given another material.

Moves are made about the part's joint (where it meets the rest), as a misassembled part would sit; a variant
whose part comes off the body, or ends up buried in it, is rejected and re-drawn.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import trimesh

from generation.anomalies.base import AnomalyRejected, AnomalyResult, faces_of_parts, first_accepted, part_areas
from generation.anomalies.geometry import (
    TOUCH,
    distance_to,
    gap,
    random_direction,
    raycasting_scene,
    require_change,
    rotation_matrix,
)
from generation.open3d_import import open3d as o3d
from generation.shapes.builtin import random_material
from generation.shapes.types import Part, Shape

MIN_EXPOSED = 0.2  # share of the moved part's surface that must stay outside the other parts
MIN_COLOR_DISTANCE = 0.15  # linear RGB: a swapped material must look different


def movable_parts(shape: Shape, area_share: tuple[float, float] = (0.01, 0.5)) -> np.ndarray:
    if len(shape.parts) < 2:
        raise AnomalyRejected("the shape has a single part")
    share = part_areas(shape) / part_areas(shape).sum()
    candidates = np.flatnonzero((share >= area_share[0]) & (share <= area_share[1]))
    if len(candidates) == 0:
        raise AnomalyRejected("no part covers 1-50% of the surface")
    return candidates


def joint(part: trimesh.Trimesh, others: list[trimesh.Trimesh]) -> np.ndarray:
    """Where the part meets the rest: the mean of its vertices closest to the other parts."""
    vertices = np.asarray(part.vertices)
    distance = distance_to(others, vertices)
    near = distance <= max(TOUCH, float(distance.min()) + 1e-4)
    return vertices[near].mean(axis=0)


def exposed_share(mesh: trimesh.Trimesh, others: list[trimesh.Trimesh]) -> float:
    points = trimesh.sample.sample_surface(mesh, 500, seed=0)[0].astype(np.float32)
    inside = np.zeros(len(points), dtype=bool)
    for other in others:
        if other.is_watertight:
            inside |= raycasting_scene([other]).compute_occupancy(o3d.core.Tensor(points)).numpy() > 0
    return float(1.0 - inside.mean())


class _PartMove:
    """Subclasses give `motion(part, pivot, rng) -> (4x4 matrix, params)`."""

    name = ""
    tries = 10

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        candidates = movable_parts(shape)
        return first_accepted(self.name, self.tries, lambda: self._attempt(shape, candidates, rng))

    def _attempt(self, shape: Shape, candidates: np.ndarray, rng: np.random.Generator) -> AnomalyResult:
        index = int(candidates[rng.integers(len(candidates))])
        part = shape.parts[index]
        others = [p.mesh for i, p in enumerate(shape.parts) if i != index]
        pivot = joint(part.mesh, others)
        matrix, params = self.motion(part.mesh, pivot, rng)
        mesh = part.mesh.copy()
        mesh.apply_transform(matrix)
        if min(gap(other, mesh) for other in others) > TOUCH:
            raise AnomalyRejected(f"{part.name!r} came off the body")
        if exposed_share(mesh, others) < MIN_EXPOSED:
            raise AnomalyRejected(f"{part.name!r} ended up inside the body")
        parts = list(shape.parts)
        parts[index] = Part(part.name, mesh, part.material)
        variant = dataclasses.replace(shape, parts=parts)
        faces = faces_of_parts(variant, {index})
        change = require_change(shape, variant, faces, self.name)
        return AnomalyResult(variant, self.name, faces,
                             {"part": part.name, "pivot": pivot.tolist(), **params, "surface_change": change})


class PartTranslationAnomaly(_PartMove):
    name = "part_translation"
    distance = (0.1, 0.4)  # as published, relative to the part's size

    def motion(self, part, pivot, rng):
        size = float(np.ptp(part.vertices, axis=0).max())
        offset = random_direction(rng) * rng.uniform(*self.distance) * size
        matrix = np.eye(4)
        matrix[:3, 3] = offset
        return matrix, {"offset": offset.tolist()}


class PartRotationAnomaly(_PartMove):
    name = "part_rotation"
    angle_rad = (0.3, 0.4)  # as published

    def motion(self, part, pivot, rng):
        axis = random_direction(rng)
        angle = float(rng.uniform(*self.angle_rad) * rng.choice([-1, 1]))
        matrix = np.eye(4)
        matrix[:3, :3] = rotation_matrix(axis, angle)
        matrix[:3, 3] = pivot - matrix[:3, :3] @ pivot
        return matrix, {"axis": axis.tolist(), "angle_rad": angle}


class PartScaleAnomaly(_PartMove):
    name = "part_scale"
    factor = (0.7, 0.8)  # as published; about the joint, so the part stays in place

    def motion(self, part, pivot, rng):
        factor = float(rng.uniform(*self.factor))
        matrix = np.eye(4)
        matrix[:3, :3] *= factor
        matrix[:3, 3] = pivot * (1 - factor)
        return matrix, {"factor": factor}


class MaterialSwapAnomaly:
    name = "material_swap"

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        """A part takes the material of another part that looks different; where every part looks alike it takes
        a material of another object (a random one from the built-in catalogue)."""
        candidates = movable_parts(shape, (0.03, 1.0)) if len(shape.parts) > 1 else np.array([0])
        index = int(candidates[rng.integers(len(candidates))])
        old = shape.parts[index].material
        donors = [p for i, p in enumerate(shape.parts) if i != index
                  and np.linalg.norm(np.subtract(p.material.base_color, old.base_color)) >= MIN_COLOR_DISTANCE]
        if donors:
            donor = donors[int(rng.integers(len(donors)))]
            material, source = donor.material, f"part {donor.name}"
        else:
            for _ in range(50):
                material = random_material(rng, f"{old.name}_swapped")
                if np.linalg.norm(np.subtract(material.base_color, old.base_color)) >= MIN_COLOR_DISTANCE:
                    break
            else:
                raise AnomalyRejected("material_swap: no material different enough")
            source = "another object"
        parts = list(shape.parts)
        parts[index] = Part(parts[index].name, parts[index].mesh, material)
        variant = dataclasses.replace(shape, parts=parts)
        return AnomalyResult(variant, self.name, faces_of_parts(variant, {index}),
                             {"part": parts[index].name, "material_from": source,
                              "old_color": list(old.base_color), "new_color": list(material.base_color)})
