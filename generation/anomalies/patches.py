"""The two pseudo-anomalies of 3DzAL (WACV 2024) as surface patches:

- `patch_added`: a lump of foreign geometry attached to the surface (bulge, contamination), as 3DzAL attaches
  points taken from other objects at an anchor point of the normal one.
- `patch_removed`: material taken out around an anchor point of the surface (dent, chip or hole), as 3DzAL's
  "removing-point" patches mimic cuts and holes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from generation.anomalies.base import AnomalyRejected, AnomalyResult, first_accepted
from generation.anomalies.geometry import (
    cut_parts,
    exposed_surface_point,
    jagged_blob,
    keep_main_body,
    require_change,
)
from generation.shapes.builtin import random_material
from generation.shapes.types import Part, Shape


class PatchAddedAnomaly:
    name = "patch_added"
    radius = (0.04, 0.08)  # object units: 1.5-3 cm at the scene scale
    sink = (0.2, 0.5)  # share of the radius below the surface, so the lump is attached, not floating
    own_material_share = 0.5  # how often the lump is of the object's own material (a bulge, not dirt)

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        point, normal = exposed_surface_point(shape, rng)
        radius = float(rng.uniform(*self.radius))
        center = point + normal * radius * (1.0 - rng.uniform(*self.sink))
        lump = jagged_blob(center, radius, rng, roughness=float(rng.uniform(0.1, 0.35)))
        nearest = int(np.argmin([np.linalg.norm(np.clip(point, *p.mesh.bounds) - point) for p in shape.parts]))
        foreign = rng.random() >= self.own_material_share
        material = random_material(rng, "patch_material") if foreign else shape.parts[nearest].material
        variant = dataclasses.replace(shape, parts=[*shape.parts, Part("patch", lump, material)])
        faces = np.zeros(sum(len(p.mesh.faces) for p in variant.parts), dtype=bool)
        faces[-len(lump.faces):] = True
        change = require_change(shape, variant, faces, self.name)
        return AnomalyResult(variant, self.name, faces,
                             {"center": center.round(4).tolist(), "radius": round(radius, 4),
                              "foreign_material": bool(foreign), "surface_change": change})


class PatchRemovedAnomaly:
    name = "patch_removed"
    radius = (0.04, 0.09)  # object units
    depth = (0.3, 0.8)  # share of the radius the cutter reaches below the surface
    tries = 5

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        return first_accepted(self.name, self.tries, lambda: self._attempt(shape, rng))

    def _attempt(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        point, normal = exposed_surface_point(shape, rng)
        radius = float(rng.uniform(*self.radius))
        center = point + normal * radius * (1.0 - rng.uniform(*self.depth))
        cutter = jagged_blob(center, radius, rng, roughness=float(rng.uniform(0.1, 0.3)))
        kept, dropped = keep_main_body(cut_parts(shape, cutter, "difference"))
        if dropped or len(kept) < len(shape.parts):
            raise AnomalyRejected("the hole cut a piece off")
        faces = np.concatenate([mask for _, mask in kept])
        variant = dataclasses.replace(shape, parts=[p for p, _ in kept])
        change = require_change(shape, variant, faces, self.name)
        return AnomalyResult(variant, self.name, faces,
                             {"center": center.round(4).tolist(), "radius": round(radius, 4),
                              "surface_change": change})
