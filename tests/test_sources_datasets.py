"""Toys4K (.blend) and ABC (.obj) readers on tiny fixture files written in the datasets' own folder layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh

from generation.shapes.sources import make_source
from generation.shapes.types import ShapeError

RED, BLUE = (0.8, 0.05, 0.05), (0.05, 0.1, 0.7)


def write_toy_blend(path: Path, seed: int, textured: bool = False) -> None:
    """A body (two material slots: red bottom, blue top) and a separate handle object, saved as a .blend."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    rng = np.random.default_rng(seed)
    body = trimesh.creation.box(extents=[0.5 + 0.1 * rng.random(), 0.4, 0.6])
    handle = trimesh.creation.cylinder(radius=0.08, height=0.5)
    handle.apply_translation([0.3, 0.0, 0.1])
    materials = []
    for name, color in (("red_paint", RED), ("blue_paint", BLUE)):
        material = bpy.data.materials.new(name)
        material.use_nodes = True
        bsdf = material.node_tree.nodes["Principled BSDF"]
        bsdf.inputs["Base Color"].default_value = (*color, 1.0)
        bsdf.inputs["Roughness"].default_value = 0.3
        materials.append(material)
    if textured:  # the blue material takes its colour from a uniform green image instead
        image = bpy.data.images.new("green", 4, 4)
        image.pixels.foreach_set(np.tile([0.1, 0.6, 0.1, 1.0], 16).astype(np.float32))
        image.pack()
        tree = materials[1].node_tree
        texture = tree.nodes.new("ShaderNodeTexImage")
        texture.image = image
        tree.links.new(texture.outputs["Color"], tree.nodes["Principled BSDF"].inputs["Base Color"])
    objects = []
    for name, mesh, slots in (("body", body, materials), ("handle", handle, materials[:1])):
        data = bpy.data.meshes.new(name)
        data.from_pydata(mesh.vertices.tolist(), [], mesh.faces.tolist())
        for material in slots:
            data.materials.append(material)
        if len(slots) == 2:
            top = np.array([p.center.z > 0 for p in data.polygons], dtype=np.int32)
            data.polygons.foreach_set("material_index", top)
        obj = bpy.data.objects.new(name, data)
        bpy.context.scene.collection.objects.link(obj)
        objects.append(obj)
    objects[1].location = (0.0, 0.0, 0.05)
    bpy.context.view_layer.update()
    path.parent.mkdir(parents=True, exist_ok=True)
    bpy.data.libraries.write(str(path), set(objects), fake_user=True)


def make_toys4k(root: Path, categories=("mug", "robot"), per_category: int = 2) -> Path:
    for category in categories:
        for k in range(per_category):
            stem = f"{category}_{k:03d}"
            write_toy_blend(root / category / stem / f"{stem}.blend", seed=k, textured=k == 1)
    (root / "mug" / "notes.blend").write_text("not in the layout")  # ignored: not <category>_<NNN>/…
    return root


def make_abc(root: Path, count: int = 3) -> Path:
    chunk = root / "abc_0000_obj_v00"
    chunk.mkdir(parents=True)
    for k in range(count):
        plate = trimesh.creation.box(extents=[0.8, 0.5, 0.1])
        boss = trimesh.creation.cylinder(radius=0.1 + 0.02 * k, height=0.3)
        boss.apply_translation([0.1, 0.0, 0.2])
        mesh = trimesh.util.concatenate([plate, boss])
        name = f"{k:08d}_{'ab' * 16}_trimesh_{k:03d}.obj"
        (chunk / name).write_text(trimesh.exchange.obj.export_obj(mesh, include_normals=True, include_color=False))
    (chunk / "readme.obj").write_text("v 0 0 0\n")  # not an ABC name: ignored
    return root


@pytest.fixture(scope="module")
def toys4k(tmp_path_factory) -> Path:
    return make_toys4k(tmp_path_factory.mktemp("toys4k_blend_files"))


def test_toys4k_reader_keeps_objects_material_slots_and_colours(toys4k):
    source = make_source({"kind": "toys4k", "root": str(toys4k)})
    assert source.shape_ids() == ["mug_000", "mug_001", "robot_000", "robot_001"]
    assert source.category("robot_001") == "robot"
    shape = source.load("mug_000")
    names = sorted(p.name for p in shape.parts)
    assert names == ["body_blue_paint", "body_red_paint", "handle_red_paint"]
    colors = {p.name: p.material.base_color for p in shape.parts}
    np.testing.assert_allclose(colors["body_red_paint"], RED, atol=1e-3)
    np.testing.assert_allclose(colors["body_blue_paint"], BLUE, atol=1e-3)
    assert all(p.material.roughness == pytest.approx(0.3) for p in shape.parts)
    merged, _ = shape.merged()
    assert np.abs(merged.vertices).max() == pytest.approx(0.5)
    handle = next(p for p in shape.parts if p.name.startswith("handle"))
    body_top = max(p.mesh.vertices[:, 2].max() for p in shape.parts if p.name.startswith("body"))
    assert handle.mesh.vertices[:, 2].max() > body_top  # the object's own location was applied (z up kept)
    textured = source.load("mug_001")
    green = next(p for p in textured.parts if p.name == "body_blue_paint").material.base_color
    np.testing.assert_allclose(green, (0.1, 0.6, 0.1), atol=0.02)  # the image's mean colour


def test_toys4k_reader_names_a_broken_file(tmp_path):
    stem = tmp_path / "cup" / "cup_000"
    stem.mkdir(parents=True)
    (stem / "cup_000.blend").write_bytes(b"BLENDER-v405 but not really")
    source = make_source({"kind": "toys4k", "root": str(tmp_path)})
    with pytest.raises(ShapeError, match="cup_000.blend"):
        source.load("cup_000")


def test_abc_reader_takes_ids_from_names_and_parts_from_components(tmp_path):
    source = make_source({"kind": "abc", "root": str(make_abc(tmp_path / "abc"))})
    assert source.shape_ids() == ["00000000_000", "00000001_001", "00000002_002"]
    shape = source.load("00000001_001")
    assert shape.category == "abc" and shape.shape_id == "00000001_001"
    assert len(shape.parts) == 2  # plate and boss: two connected components
    again = source.load("00000001_001")
    assert [p.material for p in shape.parts] == [p.material for p in again.parts]  # stable per shape
    assert np.abs(shape.merged()[0].vertices).max() == pytest.approx(0.5)
