"""ABC CAD models from the released OBJ chunks: `<8-digit id>_<32-hex hash>_trimesh_<NNN>.obj` anywhere under a
root folder (v/vn/f only: no materials, no groups). Parts are connected components (as in the folder loader);
each part gets a plausible machined finish (mostly bare metal, sometimes paint), drawn per shape so it is stable.
"""

from __future__ import annotations

import dataclasses
import re
import zlib
from pathlib import Path

import numpy as np

from generation.shapes.builtin import machine_finish
from generation.shapes.folder import FileShapeIndex, load_mesh_file
from generation.shapes.types import Part, Shape

ABC_NAME = re.compile(r"^(?P<id>\d{8})_(?P<hash>[0-9a-f]{32})_trimesh_(?P<chunk>\d{3})\.obj$")
CATEGORY = "abc"  # ABC has no categories; splits go by shape (sorted ids), as PartsAD's did


def abc_shape_id(path: Path) -> str:
    match = ABC_NAME.match(path.name)
    return f"{match['id']}_{match['chunk']}"


def scan_abc(root: Path) -> dict[str, Path]:
    return {abc_shape_id(p): p for p in sorted(root.rglob("*.obj")) if ABC_NAME.match(p.name)}


class AbcSource(FileShapeIndex):
    def __init__(self, root, max_faces: int = 200_000):
        super().__init__(root, max_faces, "abc", scan_abc, "ABC files (<8-digit id>_<32-hex>_trimesh_<NNN>.obj)")

    def category(self, shape_id: str) -> str:
        self.path(shape_id)
        return CATEGORY

    def load(self, shape_id: str) -> Shape:
        shape, notes = load_mesh_file(self.path(shape_id), self.max_faces)
        self.notes[shape_id] = notes
        rng = np.random.default_rng(zlib.crc32(shape_id.encode()))
        parts = [Part(p.name, p.mesh, machine_finish(rng, f"{p.name}_finish")) for p in shape.parts]
        return dataclasses.replace(shape, shape_id=shape_id, category=CATEGORY, parts=parts)
