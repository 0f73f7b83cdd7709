"""Floors and HDRI lighting, checked with real Cycles renders kept tiny (32 x 32 px, 64 samples, CPU)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from collections import Counter
from contextlib import contextmanager

import bpy
import numpy as np
import pytest
from PIL import Image

from generation.blender import backgrounds

FAMILY_SEED = 7
LIGHTING_HDRI = "courtyard"


@contextmanager
def _stdout_silenced():
    """Cycles prints its progress straight to file descriptor 1, past Python's sys.stdout."""
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def _empty_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _render(path) -> np.ndarray:
    """Renders the floor seen from 1 m above (an even light, so a plain floor renders flat); RGB in 0..1."""
    scene = bpy.context.scene
    camera = bpy.data.objects.new("camera", bpy.data.cameras.new("camera"))
    camera.data.lens, camera.data.sensor_width = 30.0, 36.0
    scene.collection.objects.link(camera)
    camera.location = (0.0, -0.2, 1.0)
    camera.rotation_euler = (-camera.location).to_track_quat("-Z", "Y").to_euler()
    scene.camera = camera
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = 64
    scene.cycles.use_denoising = False
    scene.render.resolution_x = scene.render.resolution_y = 32
    scene.render.resolution_percentage = 100
    scene.render.filepath = str(path)
    scene.render.image_settings.file_format = "PNG"
    with _stdout_silenced():
        bpy.ops.render.render(write_still=True)
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def _render_floor(path, family: str | None, seed: int = FAMILY_SEED) -> tuple[dict, np.ndarray]:
    _empty_scene()
    record = backgrounds.add_floor(np.random.default_rng(seed), family)
    backgrounds.add_environment(np.random.default_rng(0), hdri=LIGHTING_HDRI)
    return record, _render(path)


def _node_kinds(tree) -> Counter:
    return Counter(node.bl_idname for node in tree.nodes)


@pytest.fixture(scope="module")
def family_renders(tmp_path_factory):
    """Per family: (record, node kinds of its material, render), all in one Blender session."""
    folder = tmp_path_factory.mktemp("families")
    renders = {}
    for family in backgrounds.FLOOR_FAMILIES:
        record, image = _render_floor(folder / f"{family}.png", family)
        renders[family] = (record, _node_kinds(bpy.data.materials["floor_material"].node_tree), image)
    return renders


@pytest.fixture(scope="module")
def plain_floor_render(tmp_path_factory):
    """An untextured grey floor under the same light: what 'flat' looks like, sampling noise included."""
    _empty_scene()
    bpy.ops.mesh.primitive_plane_add(size=10.0)
    backgrounds.add_environment(np.random.default_rng(0), hdri=LIGHTING_HDRI)
    return _render(tmp_path_factory.mktemp("plain") / "plain.png")


def _write_png(path, pixels) -> None:
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(path)


def _checker(size: int, cell: int, a, b) -> np.ndarray:
    rows, cols = np.indices((size, size)) // cell
    return np.where(((rows + cols) % 2 == 0)[..., None], np.array(a), np.array(b))


@pytest.mark.slow
def test_every_family_renders_a_textured_floor(family_renders, plain_floor_render):
    flat = plain_floor_render.std(axis=(0, 1)).max()
    for family, (record, _, image) in family_renders.items():
        assert record["kind"] == "procedural" and record["family"] == family
        assert json.loads(json.dumps(record)) == record
        assert image.std(axis=(0, 1)).max() > 2.0 * flat, f"{family} renders as flat as a plain floor"
        assert 0.02 < image.mean() < 0.98, f"{family} renders black or blown out"


@pytest.mark.slow
def test_families_are_different_materials(family_renders):
    for (a, (_, kinds_a, image_a)), (b, (_, kinds_b, image_b)) in itertools.combinations(
            family_renders.items(), 2):
        assert kinds_a != kinds_b, f"{a} and {b} build the same node graph"
        assert np.abs(image_a - image_b).mean() > 0.02, f"{a} and {b} render alike"


@pytest.mark.slow
def test_same_seed_gives_same_record_and_image(family_renders, tmp_path):
    record, image = _render_floor(tmp_path / "again.png", "wood")
    assert record == family_renders["wood"][0]
    np.testing.assert_array_equal(image, family_renders["wood"][2])

    _empty_scene()
    first = backgrounds.add_floor(np.random.default_rng(3))
    _empty_scene()
    assert backgrounds.add_floor(np.random.default_rng(3)) == first
    assert first["family"] in backgrounds.FLOOR_FAMILIES


def test_floor_is_a_named_10m_plane_facing_up():
    _empty_scene()
    for _ in range(2):  # a second floor replaces the first instead of becoming 'floor.001'
        backgrounds.add_floor(np.random.default_rng(0), "plastic")
    floor = bpy.data.objects["floor"]
    assert [o.name for o in bpy.data.objects] == ["floor"]
    assert floor.material_slots[0].material.name == "floor_material"
    corners = np.array([v.co for v in floor.data.vertices])
    np.testing.assert_allclose(corners.min(axis=0), [-5.0, -5.0, 0.0])
    np.testing.assert_allclose(corners.max(axis=0), [5.0, 5.0, 0.0])
    assert tuple(floor.data.polygons[0].normal) == pytest.approx((0.0, 0.0, 1.0))


def test_bad_family_arguments_raise():
    _empty_scene()
    with pytest.raises(ValueError, match="granite"):
        backgrounds.add_floor(np.random.default_rng(0), "granite")
    with pytest.raises(ValueError, match="not both"):
        backgrounds.add_floor(np.random.default_rng(0), "wood", texture_dir="/nowhere")


def test_every_builtin_hdri_loads_with_its_rotation_and_strength():
    hdris = backgrounds.builtin_hdris()
    assert len(hdris) == 8
    for path in hdris:
        _empty_scene()
        record = backgrounds.add_environment(np.random.default_rng(1), hdri=path.stem)
        nodes = bpy.context.scene.world.node_tree.nodes
        assert bpy.context.scene.world.name == "world"
        assert record["hdri"] == path.stem and record["path"] == str(path)
        assert all(size > 0 for size in nodes["hdri"].image.size), f"{path.name} did not load"
        rotation = nodes["hdri_rotation"].inputs["Rotation"].default_value
        assert tuple(rotation) == pytest.approx((0.0, 0.0, record["rotation_z"]))
        assert nodes["background"].inputs["Strength"].default_value == pytest.approx(record["strength"])
        assert 0.7 <= record["strength"] <= 0.9
        assert json.loads(json.dumps(record)) == record


def test_user_hdri_folder(tmp_path):
    empty = tmp_path / "my_hdris"
    empty.mkdir()
    with pytest.raises(ValueError, match="my_hdris"):
        backgrounds.add_environment(np.random.default_rng(0), hdri_dir=str(empty))

    shutil.copy(backgrounds.builtin_hdris()[0], empty / "dusk.exr")
    _empty_scene()
    record = backgrounds.add_environment(np.random.default_rng(0), hdri_dir=str(empty), strength=(2.0, 3.0))
    assert record["hdri"] == "dusk" and 2.0 <= record["strength"] <= 3.0
    with pytest.raises(ValueError, match="noon"):
        backgrounds.add_environment(np.random.default_rng(0), hdri_dir=str(empty), hdri="noon")


@pytest.mark.slow
def test_user_texture_set_is_rendered(tmp_path):
    blue_tiles = tmp_path / "textures" / "blue_tiles"
    blue_tiles.mkdir(parents=True)
    (tmp_path / "textures" / "notes").mkdir()  # a subfolder without images is ignored
    _write_png(blue_tiles / "blue_tiles_basecolor.png", _checker(16, 4, (20, 40, 230), (10, 10, 90)))
    _write_png(blue_tiles / "blue_tiles_roughness.png", np.full((16, 16), 150))
    _write_png(blue_tiles / "blue_tiles_nor_gl.png", np.full((16, 16, 3), (128, 128, 255)))
    _write_png(blue_tiles / "blue_tiles_height.png", _checker(16, 4, 255, 0)[..., 0])

    _empty_scene()
    record = backgrounds.add_floor(np.random.default_rng(0), texture_dir=str(tmp_path / "textures"))
    backgrounds.add_environment(np.random.default_rng(0), hdri=LIGHTING_HDRI)
    assert record["kind"] == "texture_set" and record["name"] == "blue_tiles"
    assert set(record["maps"]) == {"base_color", "roughness", "normal", "displacement"}
    assert 0.5 <= record["tile_size_m"] <= 2.0
    assert json.loads(json.dumps(record)) == record
    images = {node.image.filepath: node.image for node in bpy.data.materials["floor_material"].node_tree.nodes
              if node.bl_idname == "ShaderNodeTexImage"}
    assert set(images) == set(record["maps"].values())
    assert images[record["maps"]["roughness"]].colorspace_settings.name == "Non-Color"

    image = _render(tmp_path / "textured.png")
    red, green, blue = image.mean(axis=(0, 1))
    assert blue > 1.5 * max(red, green), "the base-colour map does not reach the render"
    assert image.std(axis=(0, 1)).max() > 0.01


def test_texture_folder_without_a_usable_set_raises(tmp_path):
    empty = tmp_path / "my_textures"
    (empty / "only_roughness").mkdir(parents=True)
    _write_png(empty / "only_roughness" / "stone_roughness.png", np.zeros((4, 4)))
    with pytest.raises(ValueError, match="my_textures.*basecolor"):
        backgrounds.scan_texture_sets(empty)
    with pytest.raises(ValueError, match="does not exist"):
        backgrounds.scan_texture_sets(tmp_path / "missing")


def test_unreadable_texture_raises_naming_the_file(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "broken_albedo.png").write_bytes(b"not a png")
    _empty_scene()
    with pytest.raises(ValueError, match="broken_albedo.png"):
        backgrounds.add_floor(np.random.default_rng(0), texture_dir=str(tmp_path))


def test_map_names_from_common_pbr_sources(tmp_path):
    sets = {  # Poly Haven and ambientCG spellings; a set's own name may contain a keyword ("metal")
        "metal_plate": {
            "metal_plate_diff_1k.jpg": "base_color", "metal_plate_metal_1k.png": "metallic",
            "metal_plate_nor_dx_1k.png": None, "metal_plate_nor_gl_1k.png": "normal",
            "metal_plate_rough_1k.png": "roughness", "metal_plate_disp_1k.png": "displacement",
            "metal_plate_arm_1k.png": None,
        },
        "WoodFloor041": {
            "WoodFloor041_1K-PNG_Color.png": "base_color", "WoodFloor041_1K-PNG_NormalDX.png": None,
            "WoodFloor041_1K-PNG_NormalGL.png": "normal", "WoodFloor041_1K-PNG_Roughness.png": "roughness",
            "WoodFloor041_1K-PNG_AmbientOcclusion.png": None,
        },
    }
    for set_name, files in sets.items():
        (tmp_path / set_name).mkdir()
        for file_name in files:
            (tmp_path / set_name / file_name).touch()
    found = {found_set["name"]: found_set["maps"] for found_set in backgrounds.scan_texture_sets(tmp_path)}
    assert found == {
        set_name: {kind: str(tmp_path / set_name / name) for name, kind in files.items() if kind}
        for set_name, files in sets.items()
    }
