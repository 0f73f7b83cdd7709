"""Geometry shared by the anomaly generators: jagged cutters, booleans that keep parts and mark the cut,
surface sampling on the outside of an assembly, re-meshing before smooth deformations, and the checks
(volume removed, surface moved, still one object) that decide whether a variant is kept.

Shapes are normalised to max |v| = 0.5 (about 0.4 m in a scene), so 0.01 object units is about 4 mm.
"""

from __future__ import annotations

import numpy as np
import trimesh

from generation.anomalies.base import AnomalyRejected
from generation.open3d_import import open3d as o3d
from generation.shapes.types import Part, Shape

MAX_FACES = 60_000  # face budget of a re-meshed variant: keeps Blender and the ray caster fast
MIN_SURFACE_CHANGE = 0.01  # object units (~4 mm): a variant must move some surface at least this far
TOUCH = 0.01  # object units: parts closer than this count as attached
CUT_TOLERANCE = 1e-5  # a result face whose centre lies this close to the cutter surface is a cut face


def raycasting_scene(meshes: list[trimesh.Trimesh]) -> o3d.t.geometry.RaycastingScene:
    scene = o3d.t.geometry.RaycastingScene()
    for mesh in meshes:
        scene.add_triangles(o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
                            o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    return scene


def distance_to(meshes: list[trimesh.Trimesh], points: np.ndarray) -> np.ndarray:
    scene = raycasting_scene(meshes)
    return scene.compute_distance(o3d.core.Tensor(np.asarray(points, dtype=np.float32))).numpy()


def exposed_surface_point(shape: Shape, rng: np.random.Generator, min_normal_z: float = -0.3
                          ) -> tuple[np.ndarray, np.ndarray]:
    """A random point of the assembly's outer surface (not buried inside another part) and its outward normal.

    Points on faces turned towards the floor (normal z below `min_normal_z`) are passed over: an anomaly on the
    underside would rest on the floor, unseen by every camera.
    """
    merged, _ = shape.merged()
    points, face = trimesh.sample.sample_surface(merged, 400, seed=int(rng.integers(2**31)))
    normals = merged.face_normals[face]
    probe = (points + 2e-3 * normals).astype(np.float32)
    buried = np.zeros(len(points), dtype=bool)
    for part in shape.parts:
        if part.mesh.is_watertight:
            occupancy = raycasting_scene([part.mesh]).compute_occupancy(o3d.core.Tensor(probe)).numpy()
            buried |= occupancy > 0
    good = np.flatnonzero(~buried & (normals[:, 2] >= min_normal_z))
    if len(good) == 0:
        raise AnomalyRejected("no exposed surface point found")
    pick = int(good[rng.integers(len(good))])
    return points[pick], normals[pick]


def random_direction(rng: np.random.Generator, min_z: float = -1.0) -> np.ndarray:
    while True:
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        if direction[2] >= min_z:
            return direction


def frame_of(normal: np.ndarray) -> np.ndarray:
    """Rows: two tangents and the normal, a right-handed orthonormal frame."""
    helper = np.array([1.0, 0, 0]) if abs(normal[0]) < 0.9 else np.array([0, 1.0, 0])
    first = np.cross(normal, helper)
    first /= np.linalg.norm(first)
    return np.stack([first, np.cross(normal, first), normal])


def jagged_halfspace(normal: np.ndarray, offset: float, rng: np.random.Generator,
                     amplitude: float = 0.03, resolution: int = 40, size: float = 1.2) -> trimesh.Trimesh:
    """A closed solid covering everything beyond a rough break surface: {x : n·x > offset + h(x)}, within reach
    of a normalised shape. h is a few random waves plus per-vertex jitter, so cut faces look broken, not sawn."""
    u = np.linspace(-size, size, resolution)
    grid_u, grid_v = np.meshgrid(u, u, indexing="ij")
    height = np.zeros_like(grid_u)
    for _ in range(4):
        frequency = rng.uniform(2.0, 7.0, size=2)
        height += rng.uniform(0.3, 1.0) * np.sin(frequency[0] * grid_u + frequency[1] * grid_v + rng.uniform(0, 6.3))
    height = amplitude * height / 2.0 + rng.uniform(-0.3, 0.3, size=height.shape) * amplitude
    low = np.column_stack([grid_u.ravel(), grid_v.ravel(), height.ravel()])
    high = low.copy()
    high[:, 2] = size
    index = np.arange(resolution * resolution).reshape(resolution, resolution)
    a, b = index[:-1, :-1].ravel(), index[1:, :-1].ravel()
    c, d = index[1:, 1:].ravel(), index[:-1, 1:].ravel()
    n = resolution * resolution
    faces = [np.column_stack([a, c, b]), np.column_stack([a, d, c]),  # break surface
             np.column_stack([a, b, c]) + n, np.column_stack([a, c, d]) + n]  # far cap
    ring = np.concatenate([index[:-1, 0], index[-1, :-1], index[:0:-1, -1], index[0, :0:-1]])
    following = np.roll(ring, -1)
    faces += [np.column_stack([ring, following, following + n]), np.column_stack([ring, following + n, ring + n])]
    local = trimesh.Trimesh(np.vstack([low, high]), np.vstack(faces), process=True)
    trimesh.repair.fix_normals(local)
    rotation = frame_of(normal)
    local.apply_transform(np.vstack([np.column_stack([rotation.T, normal * offset]), [0, 0, 0, 1]]))
    return local


def jagged_blob(center: np.ndarray, radius: float, rng: np.random.Generator, roughness: float = 0.25
                ) -> trimesh.Trimesh:
    """A closed, lumpy, star-shaped solid: an icosphere with a smooth random radius per direction."""
    sphere = trimesh.creation.icosphere(subdivisions=3)
    directions = np.asarray(sphere.vertices)
    scale = np.ones(len(directions))
    for _ in range(5):
        axis = random_direction(rng)
        wave = np.cos(rng.uniform(1.5, 4.0) * directions @ axis + rng.uniform(0, 6.3))
        scale += roughness * rng.uniform(-1, 1) * wave
    scale = np.clip(scale, 0.4, None)
    return trimesh.Trimesh(center + radius * directions * scale[:, None], sphere.faces, process=False)


def boolean(kind: str, mesh: trimesh.Trimesh, cutter: trimesh.Trimesh) -> trimesh.Trimesh:
    operation = trimesh.boolean.difference if kind == "difference" else trimesh.boolean.intersection
    return operation([mesh, cutter], engine="manifold")


def on_surface(mesh: trimesh.Trimesh, surface: trimesh.Trimesh) -> np.ndarray:
    """Per face of `mesh`: whether it lies on `surface` (a cut face made by a boolean with that cutter)."""
    if len(mesh.faces) == 0:
        return np.zeros(0, dtype=bool)
    return distance_to([surface], mesh.triangles_center) < CUT_TOLERANCE


def cut_parts(shape: Shape, cutter: trimesh.Trimesh, kind: str) -> list[tuple[Part, np.ndarray]]:
    """Each part cut by `cutter` ("difference" keeps what lies outside it, "intersection" what lies inside), with
    its cut faces marked; parts that vanish are dropped. Parts the cutter misses are kept as they are."""
    low, high = cutter.bounds
    results = []
    for part in shape.parts:
        part_low, part_high = part.mesh.bounds
        if np.any(part_low > high) or np.any(part_high < low):
            if kind == "difference":
                results.append((part, np.zeros(len(part.mesh.faces), dtype=bool)))
            continue
        if not part.mesh.is_volume:
            raise AnomalyRejected(f"part {part.name!r} is not a closed solid, so it cannot be cut")
        cut = boolean(kind, part.mesh, cutter)
        if len(cut.faces) and cut.volume > 1e-9:
            results.append((Part(part.name, cut, part.material), on_surface(cut, cutter)))
    return results


def union_volume(meshes: list[trimesh.Trimesh]) -> float:
    if not meshes:
        return 0.0
    return float(trimesh.boolean.union(meshes, engine="manifold").volume) if len(meshes) > 1 else meshes[0].volume


def gap(a: trimesh.Trimesh, b: trimesh.Trimesh) -> float:
    """Approximate distance between two closed meshes (0 where they overlap), from vertices and surface samples."""
    low = np.maximum(a.bounds[0], b.bounds[0])
    high = np.minimum(a.bounds[1], b.bounds[1])
    if np.any(low - high > TOUCH):
        return float(np.linalg.norm(np.maximum(low - high, 0)))
    points = np.concatenate([np.asarray(b.vertices), trimesh.sample.sample_surface(b, 1000, seed=0)[0]])
    scene = raycasting_scene([a])
    query = o3d.core.Tensor(points.astype(np.float32))
    if a.is_watertight and (scene.compute_occupancy(query).numpy() > 0).any():
        return 0.0
    return float(scene.compute_distance(query).numpy().min())


def connected_groups(meshes: list[trimesh.Trimesh]) -> list[list[int]]:
    """Indices of meshes that touch one another (within TOUCH), grouped; largest group by count first."""
    groups, seen = [], set()
    for start in range(len(meshes)):
        if start in seen:
            continue
        group, frontier = [start], [start]
        seen.add(start)
        while frontier:
            i = frontier.pop()
            for j in range(len(meshes)):
                if j not in seen and gap(meshes[i], meshes[j]) <= TOUCH:
                    seen.add(j)
                    group.append(j)
                    frontier.append(j)
        groups.append(sorted(group))
    return sorted(groups, key=len, reverse=True)


def keep_main_body(parts: list[tuple[Part, np.ndarray]]) -> tuple[list[tuple[Part, np.ndarray]], int]:
    """Split cut parts into their pieces and keep the pieces attached to the biggest one (what breaks off falls
    away); returns the kept parts (pieces of one part stay one part) and how many pieces were dropped."""
    pieces = []  # (part index, mesh, face mask)
    for index, (part, mask) in enumerate(parts):
        labels = trimesh.graph.connected_component_labels(part.mesh.face_adjacency, node_count=len(part.mesh.faces))
        for label in np.unique(labels):
            faces = np.flatnonzero(labels == label)
            piece = part.mesh.submesh([faces], append=True)
            if abs(piece.volume) > 1e-7:
                pieces.append((index, piece, mask[faces]))
    if not pieces:
        return [], 0
    meshes = [p[1] for p in pieces]
    groups = connected_groups(meshes)
    main = max(groups, key=lambda g: sum(abs(meshes[i].volume) for i in g))
    kept = []
    for index, (part, _) in enumerate(parts):
        mine = [pieces[i] for i in main if pieces[i][0] == index]
        if mine:
            mesh = trimesh.util.concatenate([p[1] for p in mine])
            kept.append((Part(part.name, mesh, part.material), np.concatenate([p[2] for p in mine])))
    return kept, len(pieces) - len(main)


def is_one_object(meshes: list[trimesh.Trimesh]) -> bool:
    return len(connected_groups(meshes)) == 1


def subdivided(mesh: trimesh.Trimesh, max_edge: float, max_faces: int = MAX_FACES) -> trimesh.Trimesh:
    """Split edges longer than `max_edge` (the edge grows until the face budget holds), so a smooth displacement
    bends the surface instead of moving a few big triangles. The original vertices keep their indices."""
    edge = max_edge
    while True:
        vertices, faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, edge, max_iter=12)
        if len(faces) <= max_faces or len(faces) <= len(mesh.faces):
            return trimesh.Trimesh(vertices, faces, process=False)
        edge *= 1.5


def smooth_falloff(distance: np.ndarray, radius: float) -> np.ndarray:
    """1 at the centre, 0 from `radius` on, with zero slope at both ends (no crease at the rim)."""
    t = np.clip(distance / radius, 0.0, 1.0)
    return (1.0 - t * t) ** 3


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return trimesh.transformations.rotation_matrix(angle, axis)[:3, :3]


def surface_change(normal: Shape, points: np.ndarray) -> float:
    """How far the given variant points lie from the normal shape's surface (the largest distance)."""
    if len(points) == 0:
        return 0.0
    return float(distance_to([p.mesh for p in normal.parts], points).max())


def require_change(normal: Shape, variant: Shape, faces: np.ndarray, what: str) -> float:
    """Reject a variant whose anomalous faces stay within MIN_SURFACE_CHANGE of the normal surface."""
    merged, _ = variant.merged()
    if not faces.any():
        raise AnomalyRejected(f"{what}: no anomalous faces")
    sub = merged.submesh([np.flatnonzero(faces)], append=True)
    points = np.concatenate([sub.vertices, trimesh.sample.sample_surface(sub, 2000, seed=0)[0]])
    change = surface_change(normal, points)
    if change < MIN_SURFACE_CHANGE:
        raise AnomalyRejected(f"{what}: the surface moves only {change:.4f} (< {MIN_SURFACE_CHANGE}) units")
    return change
