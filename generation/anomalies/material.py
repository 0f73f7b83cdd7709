"""`material`: one part re-coloured (hue, saturation and roughness changed), the part's faces are anomalous."""

from __future__ import annotations

import colorsys
import dataclasses

import numpy as np

from generation.anomalies.base import AnomalyRejected, AnomalyResult, faces_of_parts, part_areas
from generation.shapes.types import MaterialSpec, Part, Shape


class MaterialAnomaly:
    name = "material"
    min_area_share = 0.03  # smaller parts are barely visible at 256 px
    min_color_distance = 0.2  # in linear RGB, so the change is visible

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        share = part_areas(shape) / part_areas(shape).sum()
        candidates = np.flatnonzero(share >= self.min_area_share)
        if len(candidates) == 0:
            raise AnomalyRejected("material: no part covers 3% of the surface")
        index = int(candidates[rng.integers(len(candidates))])
        old = shape.parts[index].material
        new_color = _distinct_color(rng, np.array(old.base_color), self.min_color_distance)
        material = MaterialSpec(
            name=f"{old.name}_recoloured",
            base_color=tuple(float(c) for c in new_color),
            roughness=float(np.clip(old.roughness + rng.uniform(-0.3, 0.3), 0.05, 1.0)),
            metallic=old.metallic,
        )
        parts = list(shape.parts)
        parts[index] = Part(name=parts[index].name, mesh=parts[index].mesh, material=material)
        variant = dataclasses.replace(shape, parts=parts)
        return AnomalyResult(
            shape=variant,
            anomaly_type=self.name,
            anomalous_faces=faces_of_parts(variant, {index}),
            params={"part": parts[index].name, "old_color": list(old.base_color),
                    "new_color": list(material.base_color), "roughness": material.roughness},
        )


def _distinct_color(rng: np.random.Generator, old: np.ndarray, min_distance: float) -> np.ndarray:
    hue, _, _ = colorsys.rgb_to_hsv(*np.clip(old, 0, 1))
    for _ in range(100):
        new_hue = (hue + rng.uniform(0.2, 0.8)) % 1.0
        color = np.array(colorsys.hsv_to_rgb(new_hue, rng.uniform(0.55, 0.95), rng.uniform(0.25, 0.85)))
        if np.linalg.norm(color - old) >= min_distance:
            return color
    raise AnomalyRejected("material: could not find a colour far enough from the original")
