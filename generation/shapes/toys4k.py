"""Toys4K from its `.blend` release: `<root>/<category>/<category>_<NNN>/<category>_<NNN>.blend`.

Every mesh object of a file is appended with bpy (world transforms applied, z up as Blender is), and split into
parts by material slot: one part per (object, material) that holds faces, so a toy keeps the parts its artist
coloured separately. Each material becomes a MaterialSpec: the Principled BSDF's base colour (the mean colour of
its image when a texture feeds it), roughness and metallic; the viewport colour when it has no node tree.
Loaded data is removed again, so a long catalogue check does not fill the Blender session.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

import numpy as np
import trimesh

from generation.shapes.builtin import random_material
from generation.shapes.folder import FileShapeIndex, _repaired
from generation.shapes.types import MaterialSpec, Part, Shape, ShapeError, normalize

TOYS4K_DIR = re.compile(r"^(?P<category>.+)_(?P<number>\d{3,})$")
MAX_PARTS = 12  # beyond this, the smallest parts join the largest one


def scan_toys4k(root: Path) -> dict[str, Path]:
    """shape id (`<category>_<NNN>`) → .blend path, for files in the release's folder layout."""
    found = {}
    for path in sorted(Path(root).glob("*/*/*.blend")):
        match = TOYS4K_DIR.match(path.parent.name)
        if match and path.stem == path.parent.name and match["category"] == path.parent.parent.name:
            found[path.stem] = path
    return found


class Toys4kSource(FileShapeIndex):
    def __init__(self, root, max_faces: int = 200_000):
        super().__init__(root, max_faces, "toys4k", scan_toys4k,
                         "Toys4K files (<category>/<category>_<NNN>/<category>_<NNN>.blend)")

    def category(self, shape_id: str) -> str:
        return self.path(shape_id).parent.parent.name

    def load(self, shape_id: str) -> Shape:
        path = self.path(shape_id)
        pieces = read_blend_parts(path)
        notes, parts = [], []
        keep = min(1.0, self.max_faces / sum(len(m.faces) for _, m, _ in pieces))  # decimation shared by parts
        rng = np.random.default_rng(zlib.crc32(shape_id.encode()))
        for name, mesh, material in pieces:
            repaired, part_notes = _repaired(path, mesh, max(200, int(len(mesh.faces) * keep)))
            notes += [f"{name}: {note}" for note in part_notes]
            parts.append(Part(name, repaired, material or random_material(rng, f"{name}_material")))
        parts = _merge_small_parts(parts)
        self.notes[shape_id] = notes
        return normalize(Shape(shape_id, self.category(shape_id), str(path), parts))


def read_blend_parts(path: Path) -> list[tuple[str, trimesh.Trimesh, MaterialSpec | None]]:
    """(part name, triangles in world coordinates, material) per mesh object and material slot of a .blend."""
    import bpy

    try:
        with bpy.data.libraries.load(str(path), link=False) as (source, target):
            names = [str(name) for name in source.objects]
            target.objects = list(names)
    except (OSError, RuntimeError) as err:
        raise ShapeError(path, f"could not be read as a .blend file: {err}") from err
    loaded = [(name, obj) for name, obj in zip(names, target.objects, strict=True) if obj is not None]
    try:
        pieces = []
        for object_name, obj in loaded:
            if obj.type != "MESH" or len(obj.data.polygons) == 0:
                continue
            mesh = obj.data
            mesh.calc_loop_triangles()
            count = len(mesh.loop_triangles)
            triangles = np.empty(count * 3, dtype=np.int32)
            mesh.loop_triangles.foreach_get("vertices", triangles)
            slots = np.empty(count, dtype=np.int32)
            mesh.loop_triangles.foreach_get("material_index", slots)
            vertices = np.empty(len(mesh.vertices) * 3, dtype=np.float64)
            mesh.vertices.foreach_get("co", vertices)
            matrix = np.array(obj.matrix_world)
            world = vertices.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]
            faces = triangles.reshape(-1, 3)
            for slot in np.unique(slots):
                material = obj.material_slots[slot].material if slot < len(obj.material_slots) else None
                name = _clean(f"{object_name}_{_file_name(material) if material else slot}")
                name = name if name not in {p[0] for p in pieces} else f"{name}_{len(pieces)}"
                pieces.append((name, trimesh.Trimesh(world, faces[slots == slot], process=False),
                               material_spec(material)))
    finally:
        _remove_loaded([obj for _, obj in loaded])
    if not pieces:
        raise ShapeError(path, "no mesh objects with faces in the .blend file")
    return pieces


def material_spec(material) -> MaterialSpec | None:
    """A Blender material as base colour, roughness and metallic (None without a material)."""
    if material is None:
        return None
    color, roughness, metallic = list(material.diffuse_color)[:3], material.roughness, material.metallic
    bsdf = next((n for n in material.node_tree.nodes if n.type == "BSDF_PRINCIPLED"), None) \
        if material.use_nodes and material.node_tree else None
    if bsdf is not None:
        base = bsdf.inputs["Base Color"]
        color = list(base.default_value)[:3]
        image = next((link.from_node.image for link in base.links if link.from_node.type == "TEX_IMAGE"), None)
        if image is not None and image.size[0] > 0:
            pixels = np.empty(image.size[0] * image.size[1] * image.channels, dtype=np.float32)
            image.pixels.foreach_get(pixels)
            color = pixels.reshape(-1, image.channels)[:, :3].mean(axis=0).tolist()  # linear for 8-bit sRGB images
        if not bsdf.inputs["Roughness"].is_linked:
            roughness = bsdf.inputs["Roughness"].default_value
        if not bsdf.inputs["Metallic"].is_linked:
            metallic = bsdf.inputs["Metallic"].default_value
    return MaterialSpec(_clean(_file_name(material)), tuple(float(np.clip(c, 0, 1)) for c in color),
                        float(np.clip(roughness, 0, 1)), float(np.clip(metallic, 0, 1)))


def _remove_loaded(objects) -> None:
    import bpy

    meshes = {obj.data for obj in objects if obj.type == "MESH"}
    materials = {slot.material for obj in objects for slot in obj.material_slots if slot.material}
    images = {node.image for m in materials if m.node_tree for node in m.node_tree.nodes
              if node.type == "TEX_IMAGE" and node.image}
    bpy.data.batch_remove([*objects, *meshes, *materials, *images])


def _merge_small_parts(parts: list[Part]) -> list[Part]:
    """At most MAX_PARTS parts: the smallest ones join the largest (keeping its material)."""
    if len(parts) <= MAX_PARTS:
        return parts
    order = sorted(range(len(parts)), key=lambda i: -parts[i].mesh.area)
    keep, merge = order[:MAX_PARTS - 1], order[MAX_PARTS - 1:]
    largest = parts[order[0]]
    joined = trimesh.util.concatenate([largest.mesh] + [parts[i].mesh for i in merge])
    return [Part(largest.name, joined, largest.material)] + [parts[i] for i in keep[1:]]


def _file_name(datablock) -> str:
    """The name as saved in the file, without the `.001` Blender adds when the session already holds one."""
    return re.sub(r"\.\d{3}$", "", datablock.name)


def _clean(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)
