"""What every shape source hands to the scene generator: named parts, each a mesh with its own material.

Parts are what part-level anomalies act on (a missing handle, a recoloured wheel), so a shape keeps them
separate; `Shape.merged()` gives the single mesh Blender and the ground truth see, with a part index per face.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import trimesh


@dataclass(frozen=True)
class MaterialSpec:
    name: str
    base_color: tuple[float, float, float]  # linear RGB in 0..1
    roughness: float
    metallic: float


@dataclass
class Part:
    name: str  # unique within its shape, e.g. "handle"; no dots
    mesh: trimesh.Trimesh  # watertight for built-in shapes
    material: MaterialSpec


@dataclass
class Shape:
    shape_id: str  # e.g. "mug_0007", no dots
    category: str
    source: str  # "builtin" or the source file path
    parts: list[Part]

    def merged(self) -> tuple[trimesh.Trimesh, np.ndarray]:
        """All parts in one mesh (faces in part order, vertices not merged), and each face's part index."""
        vertices, faces, part_index, offset = [], [], [], 0
        for i, part in enumerate(self.parts):
            vertices.append(np.asarray(part.mesh.vertices, dtype=np.float64))
            faces.append(np.asarray(part.mesh.faces, dtype=np.int64) + offset)
            part_index.append(np.full(len(part.mesh.faces), i, dtype=np.int32))
            offset += len(part.mesh.vertices)
        mesh = trimesh.Trimesh(np.concatenate(vertices), np.concatenate(faces), process=False)
        return mesh, np.concatenate(part_index)


class ShapeError(Exception):
    """A shape that cannot be used; the runner records `str()` as the reason it was skipped."""

    def __init__(self, path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def normalize(shape: Shape) -> Shape:
    """Centre the bounding box of all parts on the origin and scale uniformly to max |coordinate| = 0.5.

    Orientation is left alone: generators and loaders already put z up with the resting side down.
    """
    merged, _ = shape.merged()
    if not np.isfinite(merged.vertices).all():
        raise ShapeError(shape.source, "non-finite vertex coordinates (NaN or inf)")
    low, high = merged.bounds
    half_extent = float((high - low).max()) / 2.0
    if not half_extent > 0.0:
        raise ShapeError(shape.source, "degenerate: zero extent")
    center = (low + high) / 2.0
    parts = [
        Part(
            name=part.name,
            mesh=trimesh.Trimesh((np.asarray(part.mesh.vertices) - center) * (0.5 / half_extent),
                                 np.asarray(part.mesh.faces), process=False),
            material=part.material,
        )
        for part in shape.parts
    ]
    return Shape(shape.shape_id, shape.category, shape.source, parts)
