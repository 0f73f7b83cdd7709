"""Break-type anomalies made with a jagged cutter and exact booleans (manifold3d; no Cell Fracture add-on):

- `fracture`: everything beyond a rough break surface is removed; 10-90% of the volume must go.
- `crack`: the piece beyond the break surface is cut out and put back slid 2-4 cm along the break, turned 7-10 deg
  about the vertical.
- `discoloration`: the surface region beyond a break surface gets a new colour and roughness (its faces become
  their own part with their own material), the geometry is unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import trimesh

from generation.anomalies.base import AnomalyRejected, AnomalyResult, first_accepted
from generation.anomalies.geometry import (
    MAX_FACES,
    TOUCH,
    cut_parts,
    gap,
    jagged_halfspace,
    keep_main_body,
    random_direction,
    raycasting_scene,
    rotation_matrix,
    subdivided,
    union_volume,
)
from generation.anomalies.material import _distinct_color
from generation.open3d_import import open3d as o3d
from generation.shapes.types import MaterialSpec, Part, Shape

SCENE_SCALE = 0.4  # metres per object unit (shapes normalised to max |v| = 0.5 are scaled by ~0.4 m)


def _break_surface(shape: Shape, rng: np.random.Generator, beyond_share: tuple[float, float]
                   ) -> tuple[trimesh.Trimesh, dict]:
    """A jagged cutter whose plane leaves about `beyond_share` of the vertices beyond it. The break never faces
    the floor (the object keeps the base it stands on)."""
    merged, _ = shape.merged()
    normal = random_direction(rng, min_z=-0.3)
    projection = np.asarray(merged.vertices) @ normal
    share = rng.uniform(*beyond_share)
    offset = float(np.quantile(projection, 1.0 - share))
    amplitude = float(rng.uniform(0.015, 0.04))
    params = {"normal": normal.round(4).tolist(), "offset": round(offset, 4), "roughness": round(amplitude, 4)}
    return jagged_halfspace(normal, offset, rng, amplitude=amplitude), params


class FractureAnomaly:
    name = "fracture"
    volume_share = (0.10, 0.90)  # published check: a fracture removes 10-90% of the object
    tries = 6

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        before = union_volume([p.mesh for p in shape.parts])
        return first_accepted(self.name, self.tries, lambda: self._attempt(shape, rng, before))

    def _attempt(self, shape: Shape, rng: np.random.Generator, before: float) -> AnomalyResult:
        cutter, params = _break_surface(shape, rng, (0.12, 0.5))
        kept, dropped = keep_main_body(cut_parts(shape, cutter, "difference"))
        if not kept:
            raise AnomalyRejected("the cut removed everything")
        removed = 1.0 - union_volume([p.mesh for p, _ in kept]) / before
        if not self.volume_share[0] <= removed <= self.volume_share[1]:
            raise AnomalyRejected(f"removed {removed:.0%} of the volume")
        faces = np.concatenate([mask for _, mask in kept])
        if not faces.any():
            raise AnomalyRejected("no break surface left on the object")
        variant = dataclasses.replace(shape, parts=[p for p, _ in kept])
        return AnomalyResult(variant, self.name, faces,
                             {**params, "volume_removed": round(removed, 4), "pieces_dropped": dropped})


class CrackAnomaly:
    name = "crack"
    shift_m = (0.02, 0.04)  # as published, in metres at the scene scale
    turn_deg = (7.0, 10.0)
    tries = 6

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        return first_accepted(self.name, self.tries, lambda: self._attempt(shape, rng))

    def _attempt(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        cutter, params = _break_surface(shape, rng, (0.1, 0.4))
        rest, _ = keep_main_body(cut_parts(shape, cutter, "difference"))
        piece = cut_parts(shape, cutter, "intersection")
        if not rest or not piece:
            raise AnomalyRejected("the break surface misses the object")
        normal = np.asarray(params["normal"])
        tangent = np.cross(normal, random_direction(rng))
        tangent /= np.linalg.norm(tangent)
        shift = float(rng.uniform(*self.shift_m)) / SCENE_SCALE
        turn = float(np.deg2rad(rng.uniform(*self.turn_deg)) * rng.choice([-1, 1]))
        pivot = np.concatenate([p.mesh.vertices for p, _ in piece]).mean(axis=0)
        motion = np.eye(4)
        motion[:3, :3] = rotation_matrix([0, 0, 1], turn)
        motion[:3, 3] = pivot - motion[:3, :3] @ pivot + shift * tangent
        moved = []
        for part, _ in piece:
            mesh = part.mesh.copy()
            mesh.apply_transform(motion)
            moved.append(Part(f"{part.name}_piece", mesh, part.material))
        rest_meshes = [p.mesh for p, _ in rest]
        moved_mesh = trimesh.util.concatenate([p.mesh for p in moved])
        if min(gap(mesh, moved_mesh) for mesh in rest_meshes) > TOUCH:
            raise AnomalyRejected("the moved piece came off the object")
        variant = dataclasses.replace(shape, parts=[p for p, _ in rest] + moved)
        faces = np.concatenate([mask for _, mask in rest] + [np.ones(len(p.mesh.faces), bool) for p in moved])
        return AnomalyResult(variant, self.name, faces,
                             {**params, "shift": round(shift, 4), "turn_deg": round(float(np.rad2deg(turn)), 2),
                              "direction": tangent.round(4).tolist()})


class DiscolorationAnomaly:
    name = "discoloration"
    area_share = (0.05, 0.45)  # of the whole surface; the region must be seen but not be the whole object
    max_edge = 0.02  # faces are split first, so the region's border follows the break line closely
    tries = 6

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        area = sum(p.mesh.area for p in shape.parts)
        fine = [Part(p.name, subdivided(p.mesh, self.max_edge, int(MAX_FACES * p.mesh.area / area)), p.material)
                for p in shape.parts]
        total_area = sum(p.mesh.area for p in fine)
        return first_accepted(self.name, self.tries, lambda: self._attempt(shape, fine, total_area, rng))

    def _attempt(self, shape: Shape, fine: list[Part], total_area: float, rng: np.random.Generator) -> AnomalyResult:
        cutter, params = _break_surface(dataclasses.replace(shape, parts=fine), rng, (0.1, 0.4))
        scene = raycasting_scene([cutter])
        inside = [scene.compute_occupancy(o3d.core.Tensor(p.mesh.triangles_center.astype(np.float32))).numpy()
                  > 0 for p in fine]
        share = sum(p.mesh.area_faces[mask].sum() for p, mask in zip(fine, inside, strict=True)) / total_area
        if not self.area_share[0] <= share <= self.area_share[1]:
            raise AnomalyRejected(f"the region covers {share:.0%} of the surface")
        most = int(np.argmax([p.mesh.area_faces[mask].sum() for p, mask in zip(fine, inside, strict=True)]))
        old = fine[most].material
        color = _distinct_color(rng, np.array(old.base_color), 0.2)
        stain = MaterialSpec(f"{old.name}_discoloured", tuple(float(c) for c in color),
                             float(rng.uniform(0.1, 0.9)), old.metallic)
        parts, faces = [], []
        for part, mask in zip(fine, inside, strict=True):
            for name, selection, material in ((part.name, ~mask, part.material),
                                              (f"{part.name}_stain", mask, stain)):
                if selection.any():
                    parts.append(Part(name, part.mesh.submesh([np.flatnonzero(selection)], append=True), material))
                    faces.append(np.full(int(selection.sum()), material is stain))
        variant = dataclasses.replace(shape, parts=parts)
        return AnomalyResult(variant, self.name, np.concatenate(faces),
                             {**params, "area_share": round(float(share), 4), "color": list(stain.base_color),
                              "roughness": stain.roughness})
