"""Smooth geometric deformations, applied to every part alike so attached parts stay attached:

- `bump`: a hook pulls a surface point outward with a wide smooth falloff.
- `deformation`: a hook moves and turns (up to 30 deg) the surface around a point with a smooth falloff.
- `bend`, `twist`: Blender's SimpleDeform, 30-40 deg over the object's extent along a random axis (the middle
  stays put, so the variant keeps the normal shape's frame).

Parts in reach are re-meshed first (edges split to a maximum length) so the displacement bends the surface
smoothly; the anomalous faces are those that moved.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial

import numpy as np
import trimesh

from generation.anomalies.base import AnomalyRejected, AnomalyResult
from generation.anomalies.geometry import (
    MAX_FACES,
    MIN_SURFACE_CHANGE,
    exposed_surface_point,
    random_direction,
    require_change,
    rotation_matrix,
    smooth_falloff,
    subdivided,
)
from generation.shapes.types import Part, Shape

# a face is anomalous where a vertex moved by NOTICEABLE of the largest displacement (the faint rim of a wide
# falloff is not marked), but never less than MOVED and always from half the surface-change floor on
MOVED = 2e-3  # object units (~1 mm)
NOTICEABLE = 0.2


def displaced(shape: Shape, displacement: Callable[[np.ndarray], np.ndarray], max_edge: float,
              reach: tuple[np.ndarray, float] | None = None) -> tuple[Shape, np.ndarray]:
    """The shape with every vertex moved by `displacement(vertices)` and the faces that moved; parts outside
    `reach` (centre, radius) are left as they are, the rest are re-meshed to `max_edge` first."""
    def in_reach(part: Part) -> bool:
        return reach is None or np.linalg.norm(np.clip(reach[0], *part.mesh.bounds) - reach[0]) <= reach[1]

    reached_area = sum(p.mesh.area for p in shape.parts if in_reach(p))
    parts, faces = [], []
    for part in shape.parts:
        if not in_reach(part):
            parts.append(part)
            faces.append(np.zeros(len(part.mesh.faces), dtype=bool))
            continue
        mesh = subdivided(part.mesh, max_edge, int(MAX_FACES * part.mesh.area / reached_area))
        offset = displacement(np.asarray(mesh.vertices))
        distance = np.linalg.norm(offset, axis=1)
        moved = distance > np.clip(NOTICEABLE * distance.max(), MOVED, MIN_SURFACE_CHANGE / 2)
        parts.append(Part(part.name, trimesh.Trimesh(mesh.vertices + offset, mesh.faces, process=False),
                          part.material))
        faces.append(moved[mesh.faces].any(axis=1))
    return dataclasses.replace(shape, parts=parts), np.concatenate(faces)


class BumpAnomaly:
    name = "bump"
    height = (0.03, 0.06)  # object units, outward along the surface normal
    radius = (0.12, 0.25)  # falloff radius (large, as published)

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        point, normal = exposed_surface_point(shape, rng)
        height, radius = float(rng.uniform(*self.height)), float(rng.uniform(*self.radius))

        def pull(vertices):
            weight = smooth_falloff(np.linalg.norm(vertices - point, axis=1), radius)
            return height * weight[:, None] * normal

        variant, faces = displaced(shape, pull, radius / 6, (point, radius))
        change = require_change(shape, variant, faces, self.name)
        return AnomalyResult(variant, self.name, faces,
                             {"center": point.round(4).tolist(), "normal": normal.round(4).tolist(),
                              "height": round(height, 4), "radius": round(radius, 4), "surface_change": change})


class DeformationAnomaly:
    name = "deformation"
    offset = (0.03, 0.07)  # object units
    max_turn_deg = 30.0  # as published
    radius = (0.15, 0.3)

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        point, _ = exposed_surface_point(shape, rng)
        radius = float(rng.uniform(*self.radius))
        offset = random_direction(rng) * rng.uniform(*self.offset)
        axis = random_direction(rng)
        turn = float(np.deg2rad(rng.uniform(-self.max_turn_deg, self.max_turn_deg)))
        rotation = rotation_matrix(axis, turn)

        def hook(vertices):
            target = (vertices - point) @ rotation.T + point + offset
            weight = smooth_falloff(np.linalg.norm(vertices - point, axis=1), radius)
            return weight[:, None] * (target - vertices)

        variant, faces = displaced(shape, hook, radius / 6, (point, radius))
        change = require_change(shape, variant, faces, self.name)
        return AnomalyResult(variant, self.name, faces,
                             {"center": point.round(4).tolist(), "offset": offset.round(4).tolist(),
                              "axis": axis.round(4).tolist(), "turn_deg": round(float(np.rad2deg(turn)), 2),
                              "radius": round(radius, 4), "surface_change": change})


def bend(vertices: np.ndarray, along: int, toward: int, angle: float, low: float, high: float) -> np.ndarray:
    """SimpleDeform bend: the `along` axis is curved into an arc of `angle` radians in the (along, toward) plane;
    the middle of [low, high] stays fixed, the ends turn by ±angle/2."""
    middle, length = (low + high) / 2, high - low
    radius = length / angle
    u, w = vertices[:, along] - middle, vertices[:, toward]
    phi = angle * u / length
    out = vertices.copy()
    out[:, along] = middle + (radius - w) * np.sin(phi)
    out[:, toward] = radius - (radius - w) * np.cos(phi)
    return out


def twist(vertices: np.ndarray, along: int, angle: float, low: float, high: float) -> np.ndarray:
    """SimpleDeform twist: each slice across the `along` axis turns about it, by ±angle/2 at the ends."""
    middle, length = (low + high) / 2, high - low
    phi = angle * (vertices[:, along] - middle) / length
    first, second = [k for k in range(3) if k != along]
    out = vertices.copy()
    out[:, first] = np.cos(phi) * vertices[:, first] - np.sin(phi) * vertices[:, second]
    out[:, second] = np.sin(phi) * vertices[:, first] + np.cos(phi) * vertices[:, second]
    return out


class _SimpleDeform:
    name = ""
    angle_deg = (30.0, 40.0)  # as published
    max_edge = 0.04

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        merged, _ = shape.merged()
        low, high = merged.bounds
        reasons = []
        for along in rng.permutation(3):
            along = int(along)
            angle = float(np.deg2rad(rng.uniform(*self.angle_deg)) * rng.choice([-1, 1]))
            toward = int(rng.choice([k for k in range(3) if k != along]))
            settings = (along, toward, angle, low[along], high[along])
            variant, faces = displaced(shape, partial(self.displacement, settings=settings), self.max_edge)
            try:
                change = require_change(shape, variant, faces, self.name)
            except AnomalyRejected as err:
                reasons.append(f"axis {'xyz'[along]}: {err}")
                continue
            params = {"axis": "xyz"[along], "angle_deg": round(float(np.rad2deg(angle)), 2), "surface_change": change}
            if self.name == "bend":
                params["toward"] = "xyz"[toward]
            return AnomalyResult(variant, self.name, faces, params)
        raise AnomalyRejected("; ".join(reasons))

    def displacement(self, vertices: np.ndarray, settings: tuple) -> np.ndarray:
        return self.deformed(vertices, *settings) - vertices


class BendAnomaly(_SimpleDeform):
    name = "bend"

    def deformed(self, vertices, along, toward, angle, low, high):
        return bend(vertices, along, toward, angle, low, high)


class TwistAnomaly(_SimpleDeform):
    name = "twist"

    def deformed(self, vertices, along, toward, angle, low, high):
        return twist(vertices, along, angle, low, high)
