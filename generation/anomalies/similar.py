"""`similar_shape` (the release's `diff`): the object is replaced by another shape that looks much like it.

As in the published PartsAD generator: candidates are the shape's nearest neighbours by multi-view DINOv2
descriptors (`generation/shape_index.py`), and one is accepted only if its Chamfer distance to the normal shape is
under a threshold; here also over a floor, so the odd object really differs. Variant k of a shape is its k-th
accepted neighbour, so the banked variants of one shape are distinct shapes. The replacement keeps the normal
shape's materials (largest part to largest part), so only the geometry tells it apart; the whole object is the
anomalous region.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from generation.anomalies.base import AnomalyRejected, AnomalyResult, part_areas
from generation.shapes.types import Part, Shape, ShapeError

YAW_STEPS = 8  # the Chamfer distance is the smallest over this many turns about the vertical axis


def surface_points(shape: Shape, count: int) -> np.ndarray:
    """Area-uniform samples of the surface; a fixed seed makes the distance a function of the two shapes only."""
    return np.asarray(trimesh.sample.sample_surface(shape.merged()[0], count, seed=0)[0])


def yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def chamfer_distance(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Symmetric Chamfer distance (mean of the two mean nearest-point distances) between point sets, minimised
    over turns of `b` about z (scenes turn every object anyway); returns (distance, best turn in radians)."""
    tree_a = cKDTree(a)
    best = (np.inf, 0.0)
    for angle in 2 * np.pi * np.arange(YAW_STEPS) / YAW_STEPS:
        turned = b @ yaw(angle).T
        distance = (tree_a.query(turned)[0].mean() + cKDTree(turned).query(a)[0].mean()) / 2
        best = min(best, (float(distance), float(angle)))
    return best


class SimilarShapeAnomaly:
    name = "similar_shape"
    encoder = "facebook/dinov2-small"  # hub id or local folder of the descriptor model
    views = 8  # renders per shape for its descriptor
    image_size = 224
    neighbours = 10  # nearest shapes by descriptor that are tried, nearest first
    chamfer = (0.01, 0.05)  # accepted Chamfer distance, in object sizes (shapes normalised to max |v| = 0.5)
    points = 2048  # surface samples per shape for the Chamfer distance
    same_category = False  # look only among shapes of the same category
    _catalogue = None  # a generation.shape_index.SimilarShapes, given by the bank
    _rank = 0  # which accepted neighbour this variant is

    def among(self, catalogue, rank: int) -> SimilarShapeAnomaly:
        """A copy that picks the `rank`-th accepted look-alike from `catalogue`."""
        bound = copy.copy(self)
        bound._catalogue, bound._rank = catalogue, rank
        return bound

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        if self._catalogue is None:
            raise AnomalyRejected("similar_shape: no shape index to find look-alikes in")
        candidates = self._catalogue.ranked(shape.shape_id, self.neighbours, self.same_category)
        if not candidates:
            raise AnomalyRejected("similar_shape: no other shape in the split to take")
        normal_points = surface_points(shape, self.points)
        low, high = self.chamfer
        accepted, tried = 0, []
        for rank, (other_id, similarity) in enumerate(candidates):
            try:
                other = self._catalogue.load(other_id)
            except ShapeError as err:
                tried.append(f"{other_id}: {err.reason}")
                continue
            distance, angle = chamfer_distance(normal_points, surface_points(other, self.points))
            tried.append(f"{other_id}: {distance:.3f}")
            if not low <= distance <= high:
                continue
            if accepted < self._rank:
                accepted += 1
                continue
            replacement = _turned_with_materials(other, angle, shape)
            return AnomalyResult(
                shape=replacement,
                anomaly_type=self.name,
                anomalous_faces=np.ones(len(replacement.merged()[0].faces), dtype=bool),
                params={"replacement": other_id, "descriptor_similarity": similarity, "neighbour_rank": rank,
                        "chamfer": distance, "yaw_deg": float(np.degrees(angle))},
            )
        raise AnomalyRejected(f"similar_shape: {accepted} of the {len(candidates)} nearest shapes have a Chamfer "
                              f"distance in [{low}, {high}], variant {self._rank} needs {self._rank + 1} "
                              f"({'; '.join(tried)})")


def _turned_with_materials(other: Shape, angle: float, normal: Shape) -> Shape:
    """`other` turned by `angle` about z (to line up with the normal shape), wearing the normal shape's
    materials: parts ranked by area take the materials of the normal parts of the same rank, cycling."""
    by_area = [normal.parts[i].material for i in np.argsort(-part_areas(normal), kind="stable")]
    order = np.argsort(-part_areas(other), kind="stable")
    material_of = {int(part): by_area[rank % len(by_area)] for rank, part in enumerate(order)}
    rotation = yaw(angle)
    parts = [Part(part.name, trimesh.Trimesh(np.asarray(part.mesh.vertices) @ rotation.T,
                                             np.asarray(part.mesh.faces), process=False), material_of[i])
             for i, part in enumerate(other.parts)]
    return dataclasses.replace(normal, parts=parts)
