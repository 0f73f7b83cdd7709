"""User meshes from a folder tree (Toys4K OBJs, ABC chunks, anything trimesh reads) as normalized shapes.

Each file is checked (a file that cannot be used raises ShapeError with the reason, so a run can skip it and
say why), repaired where that is safe, decimated when huge, and split into parts: its connected components
when there are a few sizeable ones, else one part. Colours come from the file when it has them.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import trimesh

from generation.open3d_import import open3d as o3d
from generation.shapes.builtin import random_material, srgb_to_linear
from generation.shapes.types import MaterialSpec, Part, Shape, ShapeError, normalize

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf", ".off")
MAX_PARTS = 12  # more sizeable components than this reads as one fragmented object, not an assembly
MIN_PART_AREA_SHARE = 0.01  # smaller components (crumbs, screws, decals) join the largest part
COLOR_SAMPLES = 2000  # faces per part looked up in the original mesh to read the part's colour
Y_UP_SUFFIXES = (".glb", ".gltf")  # y up by the glTF specification; shapes are z up
Y_UP_TO_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])


def scan_folder(root) -> list[Path]:
    """Every mesh file under `root`, recursively, sorted. Hidden files and folders are skipped (".git",
    and the "._x.obj" metadata files macOS leaves on shared drives, which are not meshes)."""
    root = Path(root)
    return sorted(
        path for path in root.rglob("*")
        if path.suffix.lower() in MESH_SUFFIXES and path.is_file()
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    )


def folder_shape_id(path, root=None) -> str:
    """`<parent folder>_<file stem>`, or with `root` every folder below it and the stem (`a_b_model` for
    `root/a/b/model.obj`), with everything but letters, digits, '_' and '-' replaced by '_'."""
    path = Path(path)
    names = [*path.relative_to(root).parent.parts, path.stem] if root is not None else [path.parent.name, path.stem]
    return re.sub(r"[^A-Za-z0-9_-]", "_", "_".join(names))


def load_mesh_file(path, max_faces: int = 200_000, seed: int = 0) -> tuple[Shape, list[str]]:
    """The normalized shape in `path` and notes on what was repaired; ShapeError if it cannot be used."""
    path = Path(path)
    if not path.is_file():
        raise ShapeError(path, "file not found")
    if path.suffix.lower() not in MESH_SUFFIXES:
        raise ShapeError(path, f"unsupported file type {path.suffix!r}; expected one of "
                               f"{', '.join(MESH_SUFFIXES)}")
    if path.stat().st_size == 0:
        raise ShapeError(path, "empty file")
    original, appearance = _read(path)
    mesh, notes = _repaired(path, original, max_faces)
    shape_id = folder_shape_id(path)
    named_meshes = [(name, mesh.submesh([faces], append=True)) for name, faces in _part_faces(mesh)]
    from_file = _file_materials(original, appearance, named_meshes)
    rng = np.random.default_rng([seed, zlib.crc32(shape_id.encode())])
    parts = [Part(name, part_mesh, material or random_material(rng, f"{name}_material"))
             for (name, part_mesh), material in zip(named_meshes, from_file, strict=True)]
    if len(parts) > 1:
        notes.append(f"split into {len(parts)} parts (connected components)")
    return normalize(Shape(shape_id, path.parent.name, str(path), parts)), notes


def _read(path: Path) -> tuple[trimesh.Trimesh, np.ndarray | None]:
    """All triangles of the file in one mesh (scene transforms applied, glTF turned z up), and per face
    (r, g, b, roughness, metallic) from the file's colours and materials, NaN where the file says nothing;
    None without colours. Other formats have no up axis of their own and are taken as z up."""
    try:
        scene = trimesh.load_scene(path, file_type=path.suffix.lower()[1:], process=False)
    except Exception as err:  # noqa: BLE001 - every parser failure means the same thing to the user
        raise ShapeError(path, f"could not be parsed as {path.suffix.lower()[1:].upper()}: "
                               f"{type(err).__name__}: {err}") from err
    up = Y_UP_TO_Z_UP if path.suffix.lower() in Y_UP_SUFFIXES else np.eye(4)
    meshes, appearances = [], []
    for node in scene.graph.nodes_geometry:
        transform, geometry_name = scene.graph[node]
        geometry = scene.geometry[geometry_name]
        if not isinstance(geometry, trimesh.Trimesh) or len(geometry.faces) == 0:
            continue
        transform = up @ transform
        vertices = np.asarray(geometry.vertices, dtype=np.float64) @ transform[:3, :3].T + transform[:3, 3]
        meshes.append(trimesh.Trimesh(vertices, np.asarray(geometry.faces), process=False))
        appearances.append(_face_appearance(geometry))
    if not meshes:
        raise ShapeError(path, "no faces: not a mesh (points or lines only, or text the parser did not "
                               "recognise)")
    mesh = meshes[0] if len(meshes) == 1 else trimesh.util.concatenate(meshes)
    if all(a is None for a in appearances):
        return mesh, None
    filled = [np.full((len(m.faces), 5), np.nan) if a is None else a
              for m, a in zip(meshes, appearances, strict=True)]
    return mesh, np.concatenate(filled)


def _face_appearance(geometry: trimesh.Trimesh) -> np.ndarray | None:
    """Per face (r, g, b, roughness, metallic), NaN where the file leaves a value open; None without colour."""
    rgb = _face_rgb(geometry.visual, np.asarray(geometry.faces))
    if rgb is None:
        return None
    material = getattr(geometry.visual, "material", None)
    factors = [getattr(material, "roughnessFactor", None), getattr(material, "metallicFactor", None)]
    factors = [np.nan if value is None else float(value) for value in factors]
    return np.column_stack([rgb, np.tile(factors, (len(rgb), 1))])


def _face_rgb(visual, faces: np.ndarray) -> np.ndarray | None:
    """sRGB colour (0..1) of each face from the file's face or vertex colours, texture or material colour."""
    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = visual.material
        is_pbr = isinstance(material, trimesh.visual.material.PBRMaterial)
        texture = material.baseColorTexture if is_pbr else getattr(material, "image", None)
        if texture is None or visual.uv is None:
            if not _has_own_color(material):
                return None
            return np.tile(np.asarray(material.main_color[:3], dtype=np.float64) / 255, (len(faces), 1))
        try:
            visual = visual.to_color()  # samples the texture at every vertex's UV
        except Exception:  # noqa: BLE001 - an unreadable texture costs the colour, not the shape
            return None
    if visual.kind == "face":
        return np.asarray(visual.face_colors[:, :3], dtype=np.float64) / 255
    if visual.kind == "vertex":
        return np.asarray(visual.vertex_colors[:, :3], dtype=np.float64)[faces].mean(axis=1) / 255
    return None


def _has_own_color(material) -> bool:
    """False for the grey placeholder trimesh gives a material the file did not colour."""
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        return material.baseColorFactor is not None
    return not np.array_equal(np.asarray(material.main_color), trimesh.visual.color.DEFAULT_COLOR)


def _repaired(path: Path, mesh: trimesh.Trimesh, max_faces: int) -> tuple[trimesh.Trimesh, list[str]]:
    """Checked, decimated, cleaned and consistently wound copy of `mesh`, with notes on what changed."""
    used = np.unique(mesh.faces)  # vertices no face uses (NaN or not) are dropped, not held against the file
    vertices, faces = np.asarray(mesh.vertices)[used], np.searchsorted(used, np.asarray(mesh.faces))
    if not np.isfinite(vertices).all():
        raise ShapeError(path, "non-finite vertex coordinates (NaN or inf)")
    size = np.ptp(vertices, axis=0).max()
    if not size > 0:
        raise ShapeError(path, "degenerate: zero extent (all vertices at one point)")
    vertices = vertices / size  # trimesh's merge and area tolerances are absolute: a 1e-9 m part would vanish
    notes = []
    if len(faces) > max_faces:
        vertices, faces = _decimated(vertices, faces, max_faces)
        notes.append(f"decimated from {len(mesh.faces):,} to {len(faces):,} faces (vertex clustering)")
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    mesh.remove_unreferenced_vertices()
    vertex_count = len(mesh.vertices)
    mesh.merge_vertices()
    if len(mesh.vertices) < vertex_count:
        notes.append(f"merged {vertex_count - len(mesh.vertices):,} duplicate vertices")
    face_count = len(mesh.faces)
    mesh.update_faces(mesh.nondegenerate_faces() & mesh.unique_faces())
    if len(mesh.faces) == 0:
        raise ShapeError(path, "degenerate: every face has zero area")
    if len(mesh.faces) < face_count:
        notes.append(f"removed {face_count - len(mesh.faces):,} degenerate or duplicate faces")
    mesh.remove_unreferenced_vertices()
    wound = mesh.faces.copy()
    trimesh.repair.fix_normals(mesh, multibody=True)
    if not np.array_equal(wound, mesh.faces):
        notes.append("fixed face winding so normals point outwards")
    mesh.apply_scale(size)  # back to the file's units: parts of one file keep their relative size and place
    return mesh, notes


def _decimated(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex clustering on a voxel grid, the voxel grown until at most `max_faces` faces are left.

    Each pass is a few numpy sorts (about half a second for millions of faces), where quadric decimation
    (open3d) takes half a minute on such meshes, and a huge mesh is loaded again for every scene.
    """
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    area = np.linalg.norm(normals, axis=1).sum() / 2
    voxel = np.sqrt(area / (max_faces / 2))  # a closed surface has about two faces per vertex
    clustered = faces
    while len(clustered) > max_faces:
        cells = np.floor((vertices - vertices.min(axis=0)) / voxel).astype(np.int64)
        span = cells.max(axis=0) + 1
        keys = (cells[:, 0] * span[1] + cells[:, 1]) * span[2] + cells[:, 2]
        _, cluster_of, counts = np.unique(keys, return_inverse=True, return_counts=True)
        centers = np.column_stack([np.bincount(cluster_of, weights=vertices[:, k]) for k in range(3)])
        centers /= counts[:, None]
        clustered = cluster_of[faces]
        clustered = clustered[(clustered[:, 0] != clustered[:, 1]) & (clustered[:, 1] != clustered[:, 2])
                              & (clustered[:, 0] != clustered[:, 2])]
        _, first = np.unique(np.sort(clustered, axis=1), axis=0, return_index=True)
        clustered = clustered[np.sort(first)]
        voxel *= 1.03 * np.sqrt(max(len(clustered) / max_faces, 1.0))
    return centers, clustered


def _part_faces(mesh: trimesh.Trimesh) -> list[tuple[str, np.ndarray]]:
    """Face indices of each part: connected components when 2..MAX_PARTS of them hold at least
    MIN_PART_AREA_SHARE of the area each (crumbs join the largest), else everything as "body"."""
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, node_count=len(mesh.faces))
    area = np.bincount(labels, weights=mesh.area_faces)
    sizeable = np.flatnonzero(area >= MIN_PART_AREA_SHARE * area.sum())
    if not 2 <= len(sizeable) <= MAX_PARTS:
        return [("body", np.arange(len(mesh.faces)))]
    _, first_face = np.unique(labels, return_index=True)
    order = sizeable[np.lexsort((first_face[sizeable], -area[sizeable]))]  # largest first, ties in file order
    part_of_label = np.full(len(area), 0)
    part_of_label[order] = np.arange(len(order))
    part = part_of_label[labels]
    return [(f"part_{i:02d}", np.flatnonzero(part == i)) for i in range(len(order))]


def _file_materials(original: trimesh.Trimesh, appearance: np.ndarray | None,
                    named_meshes: list[tuple[str, trimesh.Trimesh]]) -> list[MaterialSpec | None]:
    """Each part's material from the file: the median appearance of the original faces nearest to (a sample
    of) the part's faces, which survives any repair and decimation; None where the file has no colour."""
    if appearance is None:
        return [None] * len(named_meshes)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(original.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(original.faces, dtype=np.uint32)))
    materials = []
    for name, mesh in named_meshes:
        centers = mesh.triangles_center
        if len(centers) > COLOR_SAMPLES:
            centers = centers[np.linspace(0, len(centers) - 1, COLOR_SAMPLES).astype(int)]
        closest = scene.compute_closest_points(o3d.core.Tensor(centers.astype(np.float32)))
        samples = appearance[closest["primitive_ids"].numpy()]
        if np.isnan(samples[:, 0]).all():
            materials.append(None)
            continue
        roughness, metallic = samples[:, 3], samples[:, 4]
        materials.append(MaterialSpec(
            name=f"{name}_file_color",
            base_color=srgb_to_linear(np.nanmedian(samples[:, :3], axis=0)),
            roughness=float(np.nanmedian(roughness)) if np.isfinite(roughness).any() else 0.5,
            metallic=float(np.nanmedian(metallic)) if np.isfinite(metallic).any() else 0.0,
        ))
    return materials


class FileShapeIndex:
    """Shape ids mapped to the files they load from: the part every file-backed shape source shares.

    `kind` names the source ("abc", "toys4k", "folder"); `expected` says in an error what files were looked for."""

    def __init__(self, root, max_faces: int, kind: str, paths: Callable[[Path], dict[str, Path]], expected: str):
        if not str(root):  # Path("") would be the working directory
            raise ValueError(f"the {kind} shape source needs its folder: set shapes.root (--set shapes.root=/path)")
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{kind} shape folder {self.root} does not exist")
        self.max_faces = max_faces
        self.name = f"{kind}:{self.root}"
        self.notes: dict[str, list[str]] = {}  # what the last load of each shape repaired
        self._paths = paths(self.root)
        if not self._paths:
            raise ValueError(f"no {expected} under {self.root}")

    def shape_ids(self) -> list[str]:
        return sorted(self._paths)

    def path(self, shape_id: str) -> Path:
        if shape_id not in self._paths:
            raise KeyError(f"{shape_id!r} is not a shape id of {self.name}")
        return self._paths[shape_id]
