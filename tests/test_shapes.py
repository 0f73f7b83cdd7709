"""The shape library on real meshes: built-in generators, the mesh-folder loader and the source interface."""

import time

import numpy as np
import pytest
import trimesh
from scipy.spatial import ConvexHull

from generation.shapes.builtin import PART_CATEGORIES, TOY_CATEGORIES, builtin_shape
from generation.shapes.folder import load_mesh_file, scan_folder
from generation.shapes.sources import BuiltinSource, FolderSource, make_source
from generation.shapes.types import MaterialSpec, Part, Shape, ShapeError, normalize

ALL_CATEGORIES = TOY_CATEGORIES + PART_CATEGORIES


def _support_margin(solid: trimesh.Trimesh) -> float:
    """How far inside the footprint (the hull of the vertices touching the floor) the centre of mass lies,
    in object units; negative when the object would tip over."""
    vertices = np.asarray(solid.vertices)
    floor = vertices[:, 2].min()
    footprint = ConvexHull(vertices[vertices[:, 2] <= floor + 1e-3][:, :2])
    return float(-(footprint.equations[:, :2] @ solid.center_mass[:2] + footprint.equations[:, 2]).max())


def _union(shape: Shape) -> trimesh.Trimesh:
    return trimesh.boolean.union([part.mesh for part in shape.parts], engine="manifold")


# ---- built-in shapes ---------------------------------------------------------------------------------------
def test_category_lists_cover_the_published_benchmark_kinds():
    assert {"mug", "cup", "bottle", "bowl", "donut", "chess_piece", "hammer", "car", "robot", "snowman", "key",
            "plate"} <= set(TOY_CATEGORIES)
    assert {"bracket", "flange", "gear", "bolt", "nut", "bushing", "pipe_elbow", "keyed_shaft"} <= set(PART_CATEGORIES)
    assert not set(TOY_CATEGORIES) & set(PART_CATEGORIES)


@pytest.mark.parametrize("category", ALL_CATEGORIES)
def test_builtin_shape_is_one_stable_normalized_object_of_closed_parts(category):
    for instance in range(3):
        shape = builtin_shape(category, instance)
        assert (shape.shape_id, shape.category, shape.source) == (f"{category}_{instance:04d}", category, "builtin")
        names = [part.name for part in shape.parts]
        assert len(names) >= 2 and len(set(names)) == len(names) and not any("." in n for n in names)
        for part in shape.parts:
            assert part.mesh.is_watertight and part.mesh.is_winding_consistent, part.name
            assert part.mesh.volume > 0, part.name
            material = part.material
            assert all(0 <= c <= 1 for c in material.base_color) and 0 <= material.roughness <= 1
            assert 0 <= material.metallic <= 1

        merged, part_index = shape.merged()
        assert 50 <= len(merged.faces) <= 20_000
        assert part_index.dtype == np.int32 and len(part_index) == len(merged.faces)
        np.testing.assert_array_equal(np.bincount(part_index), [len(p.mesh.faces) for p in shape.parts])
        assert np.abs(merged.vertices).max() == pytest.approx(0.5, abs=1e-6)
        np.testing.assert_allclose(merged.bounds.mean(axis=0), 0.0, atol=1e-9)

        solid = _union(shape)
        bodies = [body for body in solid.split(only_watertight=False) if body.volume > 1e-9]
        assert len(bodies) == 1, f"{shape.shape_id}: parts form {len(bodies)} separate bodies"
        assert _support_margin(solid) >= 0.02, f"{shape.shape_id} would tip over on the floor"


@pytest.mark.parametrize("category", ALL_CATEGORIES)
def test_builtin_shapes_are_reproducible_and_every_instance_differs(category):
    first, again = builtin_shape(category, 0), builtin_shape(category, 0)
    for a, b in zip(first.parts, again.parts, strict=True):
        assert a.name == b.name and a.material == b.material
        np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    variants = [first.merged()[0].vertices] + [builtin_shape(category, i).merged()[0].vertices for i in (1, 2, 3)]
    variants.append(builtin_shape(category, 0, seed=1).merged()[0].vertices)
    for i in range(len(variants)):
        for j in range(i):
            same = variants[i].shape == variants[j].shape and np.allclose(variants[i], variants[j], atol=1e-4)
            assert not same, f"{category}: variants {j} and {i} have the same geometry"


def test_unknown_builtin_category_names_the_known_ones():
    with pytest.raises(ValueError, match="teapot.*known:.*mug.*") as err:
        builtin_shape("teapot", 0)
    assert "gear" in str(err.value)


def test_normalize_centres_the_box_and_scales_max_coordinate_to_half():
    material = MaterialSpec("grey", (0.5, 0.5, 0.5), 0.5, 0.0)
    big = trimesh.creation.box(bounds=[(1, 1, 1), (5, 3, 2)])
    small = trimesh.creation.box(bounds=[(5, 1, 1), (6, 2, 4)])
    shape = normalize(Shape("s", "c", "builtin", [Part("a", big, material), Part("b", small, material)]))
    merged, part_index = shape.merged()
    np.testing.assert_allclose(merged.bounds, [[-0.5, -0.2, -0.3], [0.5, 0.2, 0.3]], atol=1e-12)
    np.testing.assert_array_equal(part_index, [0] * 12 + [1] * 12)
    assert big.bounds[0, 0] == 1  # the input is not modified
    flat = trimesh.Trimesh([[0, 0, 0], [0, 0, 0], [0, 0, 0]], [[0, 1, 2]], process=False)
    with pytest.raises(ShapeError, match="zero extent"):
        normalize(Shape("s", "c", "dots.obj", [Part("a", flat, material)]))


def test_shape_error_message_is_path_then_reason():
    err = ShapeError("/data/a.obj", "empty file")
    assert (str(err), err.path, err.reason) == ("/data/a.obj: empty file", "/data/a.obj", "empty file")


# ---- the mesh-folder loader ----------------------------------------------------------------------------------
def _torus_grid(rings: int, segments: int) -> trimesh.Trimesh:
    """A closed torus of 2 * rings * segments faces, built directly (subdividing is slow at millions)."""
    u = np.linspace(0, 2 * np.pi, rings, endpoint=False)[:, None]
    v = np.linspace(0, 2 * np.pi, segments, endpoint=False)[None, :]
    vertices = np.stack(np.broadcast_arrays((1 + 0.3 * np.cos(v)) * np.cos(u), (1 + 0.3 * np.cos(v)) * np.sin(u),
                                            0.3 * np.sin(v)), axis=-1).reshape(-1, 3)
    i, j = np.meshgrid(np.arange(rings), np.arange(segments), indexing="ij")
    a, b = i * segments + j, (i + 1) % rings * segments + j
    c, d = (i + 1) % rings * segments + (j + 1) % segments, i * segments + (j + 1) % segments
    faces = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
    return trimesh.Trimesh(vertices, faces, process=False)


def _three_blocks() -> trimesh.Trimesh:
    return trimesh.util.concatenate([trimesh.creation.box(bounds=[(3 * i, 0, 0), (3 * i + 1 + i, 1, 1)])
                                     for i in range(3)])


@pytest.fixture(scope="module")
def mesh_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("meshes")
    for folder in ("broken", "mugs", "blocks", "toys", ".cache"):
        (root / folder).mkdir()
    (root / "broken" / "empty.obj").write_bytes(b"")
    (root / "broken" / "garbage.obj").write_text("this is not a mesh\nat all, just 3 words and numbers 1 2\n")
    (root / "broken" / "nan_vertex.obj").write_text("v 0 0 0\nv 1 0 0\nv nan 1 0\nv 0 0 1\n"
                                                    "f 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    (root / "broken" / "one_point.obj").write_text("v 1 2 3\nv 1 2 3\nv 1 2 3\nf 1 2 3\n")
    builtin_shape("mug", 0).merged()[0].export(root / "mugs" / "mug.v2.obj")
    _three_blocks().export(root / "blocks" / "three_blocks.ply")
    trimesh.creation.box().export(root / "blocks" / "box.stl")
    red = trimesh.creation.box(bounds=[(0, 0, 0), (2, 1, 1)])
    red.visual.face_colors = [255, 0, 0, 255]
    blue = trimesh.creation.icosphere(radius=0.5)
    blue.visual.face_colors = [0, 0, 255, 255]
    scene = trimesh.Scene()
    scene.add_geometry(red, node_name="brick")
    scene.add_geometry(blue, node_name="ball", transform=trimesh.transformations.translation_matrix([4, 0, 0]))
    scene.export(root / "toys" / "coloured.glb")
    (root / "toys" / "readme.txt").write_text("not a mesh")
    trimesh.creation.box().export(root / ".cache" / "hidden.obj")
    return root


def test_scan_folder_finds_mesh_files_recursively_in_sorted_order(mesh_folder):
    found = [p.relative_to(mesh_folder).as_posix() for p in scan_folder(mesh_folder)]
    assert found == ["blocks/box.stl", "blocks/three_blocks.ply", "broken/empty.obj", "broken/garbage.obj",
                     "broken/nan_vertex.obj", "broken/one_point.obj", "mugs/mug.v2.obj", "toys/coloured.glb"]


@pytest.mark.parametrize(("name", "reason"), [
    ("empty.obj", "empty file"),
    ("garbage.obj", "no faces: not a mesh"),
    ("nan_vertex.obj", "non-finite vertex coordinates"),
    ("one_point.obj", "degenerate: zero extent"),
])
def test_unusable_files_raise_shape_error_naming_file_and_reason(mesh_folder, name, reason):
    path = mesh_folder / "broken" / name
    with pytest.raises(ShapeError) as err:
        load_mesh_file(path)
    assert str(err.value).startswith(f"{path}: ") and reason in err.value.reason


def test_unsupported_suffix_and_unparsable_binary_are_rejected(tmp_path):
    (tmp_path / "notes.txt").write_text("v 0 0 0")
    with pytest.raises(ShapeError, match="unsupported file type"):
        load_mesh_file(tmp_path / "notes.txt")
    (tmp_path / "noise.ply").write_bytes(np.random.default_rng(0).bytes(2000))
    with pytest.raises(ShapeError, match=r"noise\.ply: could not be parsed as PLY"):
        load_mesh_file(tmp_path / "noise.ply")


def test_a_good_mesh_loads_normalized_with_its_folder_as_category(mesh_folder):
    path = mesh_folder / "mugs" / "mug.v2.obj"
    shape, notes = load_mesh_file(path)
    assert (shape.shape_id, shape.category, shape.source) == ("mugs_mug_v2", "mugs", str(path))
    merged, _ = shape.merged()
    assert np.abs(merged.vertices).max() == pytest.approx(0.5, abs=1e-6)
    np.testing.assert_allclose(merged.bounds.mean(axis=0), 0.0, atol=1e-9)
    assert [p.name for p in shape.parts] == ["part_00", "part_01"]  # the mug's body and handle
    assert all(isinstance(note, str) for note in notes)


def test_separate_components_become_parts_and_duplicate_vertices_are_merged(mesh_folder):
    shape, notes = load_mesh_file(mesh_folder / "blocks" / "three_blocks.ply")
    assert [p.name for p in shape.parts] == ["part_00", "part_01", "part_02"]
    volumes = [p.mesh.volume for p in shape.parts]
    assert volumes == sorted(volumes, reverse=True) and all(p.mesh.is_watertight for p in shape.parts)
    _, notes = load_mesh_file(mesh_folder / "blocks" / "box.stl")  # STL stores every triangle's own corners
    assert any(note.startswith("merged") and "duplicate vertices" in note for note in notes)


def test_crumbs_join_the_largest_part(tmp_path):
    crumb = trimesh.creation.box(bounds=[(5, 5, 5), (5.01, 5.01, 5.01)])
    trimesh.util.concatenate([trimesh.creation.icosphere(), crumb]).export(tmp_path / "ball.obj")
    shape, _ = load_mesh_file(tmp_path / "ball.obj")
    assert [p.name for p in shape.parts] == ["body"] and len(shape.parts[0].mesh.faces) == 1280 + 12


def test_glb_scene_is_concatenated_with_transforms_and_keeps_file_colours(mesh_folder):
    shape, _ = load_mesh_file(mesh_folder / "toys" / "coloured.glb")
    merged, _ = shape.merged()
    assert merged.extents[0] == pytest.approx(1.0)  # brick [0, 2] and ball [3.5, 4.5] placed by the scene
    colours = {p.name: np.round(p.material.base_color, 3).tolist() for p in shape.parts}
    assert colours == {"part_00": [1.0, 0.0, 0.0], "part_01": [0.0, 0.0, 1.0]}


def test_gltf_files_are_turned_from_y_up_to_z_up(tmp_path):
    tower = trimesh.creation.box(bounds=[(0, 0, 0), (1, 3, 1)])  # tall along y, glTF's up axis
    tower.export(tmp_path / "tower.glb")
    shape, _ = load_mesh_file(tmp_path / "tower.glb")
    np.testing.assert_allclose(shape.merged()[0].extents, [1 / 3, 1 / 3, 1.0], atol=1e-9)
    assert shape.parts[0].mesh.volume > 0


def test_uncoloured_files_get_a_material_drawn_from_the_seed(mesh_folder):
    path = mesh_folder / "blocks" / "three_blocks.ply"
    first, again, other = (load_mesh_file(path, seed=s)[0] for s in (0, 0, 1))
    assert [p.material for p in first.parts] == [p.material for p in again.parts]
    assert [p.material for p in first.parts] != [p.material for p in other.parts]


def test_a_huge_mesh_is_decimated_within_seconds(tmp_path):
    _torus_grid(1280, 1024).export(tmp_path / "scan.ply")  # 2,621,440 faces, binary PLY
    start = time.perf_counter()
    shape, notes = load_mesh_file(tmp_path / "scan.ply", max_faces=200_000)
    elapsed = time.perf_counter() - start
    faces = len(shape.merged()[0].faces)
    assert 100_000 <= faces <= 200_000
    assert any(note.startswith("decimated from 2,621,440 to") for note in notes)
    assert elapsed < 30, f"loading took {elapsed:.1f} s"
    extents = shape.merged()[0].extents
    np.testing.assert_allclose(extents, [1.0, 1.0, 0.6 / 2.6], atol=0.01)  # still the same torus


# ---- sources -------------------------------------------------------------------------------------------------
def test_builtin_source_round_trips_through_make_source():
    source = make_source({"kind": "builtin", "categories": ["pipe_elbow", "mug"], "instances_per_category": 3,
                          "seed": 4})
    ids = source.shape_ids()
    assert ids == sorted(ids) and len(ids) == 6 and ids[0] == "mug_0000" and ids[-1] == "pipe_elbow_0002"
    assert source.category("pipe_elbow_0001") == "pipe_elbow"
    shape = source.load("pipe_elbow_0001")
    assert shape.shape_id == "pipe_elbow_0001" and shape.category == "pipe_elbow"
    np.testing.assert_array_equal(shape.merged()[0].vertices,
                                  builtin_shape("pipe_elbow", 1, seed=4).merged()[0].vertices)
    with pytest.raises(KeyError):
        source.load("mug_0003")
    everything = make_source({"kind": "builtin", "categories": [], "instances_per_category": 2})
    assert len(everything.shape_ids()) == 2 * len(ALL_CATEGORIES)
    with pytest.raises(ValueError, match="teapot"):
        BuiltinSource(["teapot"])


def test_folder_source_round_trips_through_make_source(mesh_folder):
    source = make_source({"kind": "folder", "root": str(mesh_folder), "max_faces": 5000})
    assert isinstance(source, FolderSource)
    ids = source.shape_ids()
    assert ids == ["blocks_box", "blocks_three_blocks", "broken_empty", "broken_garbage", "broken_nan_vertex",
                   "broken_one_point", "mugs_mug_v2", "toys_coloured"]
    assert [source.category(i) for i in ids] == ["blocks"] * 2 + ["broken"] * 4 + ["mugs", "toys"]
    shape = source.load("mugs_mug_v2")
    assert shape.shape_id == "mugs_mug_v2" and shape.category == "mugs"
    assert source.notes["mugs_mug_v2"] == load_mesh_file(mesh_folder / "mugs" / "mug.v2.obj", 5000)[1]
    with pytest.raises(ShapeError, match="empty file"):
        source.load("broken_empty")


def test_folder_source_keeps_ids_unique_when_sanitised_names_collide(tmp_path):
    (tmp_path / "set").mkdir()
    for name in ("a.b.obj", "a_b.obj", "a_b.ply"):
        trimesh.creation.box().export(tmp_path / "set" / name)
    source = FolderSource(tmp_path)
    assert source.shape_ids() == ["set_a_b", "set_a_b-2", "set_a_b-3"]
    assert {source.load(i).shape_id for i in source.shape_ids()} == set(source.shape_ids())


def test_make_source_rejects_unknown_kinds_and_options(tmp_path):
    with pytest.raises(ValueError, match="unknown shape source kind 'blend'"):
        make_source({"kind": "blend"})
    with pytest.raises(ValueError, match="unexpected options \\['colour'\\]"):
        make_source({"kind": "builtin", "colour": "red"})
    with pytest.raises(ValueError, match="does not exist"):
        make_source({"kind": "folder", "root": str(tmp_path / "missing")})
    with pytest.raises(ValueError, match="the abc shape source needs its folder: set shapes.root"):
        make_source({"kind": "abc", "root": ""})
    with pytest.raises(ValueError, match="no mesh files"):
        make_source({"kind": "folder", "root": str(tmp_path)})


def test_folder_source_takes_the_category_from_a_chosen_level_for_folder_per_instance_layouts(tmp_path):
    """ShapeNet-like `<synset>/<model>/models/model_normalized.obj`: the category is the first folder below root."""
    for synset, model in (("02691156", "1a04"), ("02691156", "2b17"), ("03001627", "9c3e")):
        folder = tmp_path / synset / model / "models"
        folder.mkdir(parents=True)
        trimesh.creation.box().export(folder / "model_normalized.obj")
    trimesh.creation.box().export(tmp_path / "stray.obj")  # at the top: no category at level 0
    parent = FolderSource(tmp_path)
    assert {parent.category(i) for i in parent.shape_ids() if not i.endswith("stray")} == {"models"}
    source = make_source({"kind": "folder", "root": str(tmp_path), "category_level": 0})
    ids = [i for i in source.shape_ids() if i != "stray"]
    assert ids == ["02691156_1a04_models_model_normalized", "02691156_2b17_models_model_normalized",
                   "03001627_9c3e_models_model_normalized"]
    assert [source.category(i) for i in ids] == ["02691156", "02691156", "03001627"]
    assert source.load(ids[2]).category == "03001627"
    with pytest.raises(ShapeError, match="no category at shapes.category_level = 0"):
        source.load("stray")
    assert [FolderSource(tmp_path, category_level=1).category(i) for i in ids] == ["1a04", "2b17", "9c3e"]
