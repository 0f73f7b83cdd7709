"""Every anomaly type on built-in shapes: the property that makes it that type, and a mask that covers the change."""

import numpy as np
import pytest
import trimesh

from generation.anomalies import GENERATORS, PUBLISHED_CODES, TYPE_CODES, get_generator
from generation.anomalies.fracture import SCENE_SCALE
from generation.anomalies.geometry import (
    MIN_SURFACE_CHANGE,
    TOUCH,
    distance_to,
    gap,
    is_one_object,
    raycasting_scene,
    union_volume,
)
from generation.shapes.builtin import builtin_shape

SHAPES = ["mug", "car", "bracket"]  # a toy with a handle, a toy of many parts, a CAD part


def _apply(name: str, category: str, seed: int = 0):
    shape = builtin_shape(category, 1)
    return shape, get_generator(name).apply(shape, np.random.default_rng(seed))


def _face_points(mesh: trimesh.Trimesh, faces: np.ndarray) -> np.ndarray:
    """Centres and corners of the chosen faces."""
    return np.concatenate([mesh.triangles_center[faces], mesh.triangles[faces].reshape(-1, 3)])


def _rotation(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Best rotation taking the centred `source` points onto the centred `target` points (Kabsch)."""
    a, b = source - source.mean(axis=0), target - target.mean(axis=0)
    u, _, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(vt.T @ u.T))
    return vt.T @ np.diag([1, 1, d]) @ u.T


def _angle(rotation: np.ndarray) -> float:
    return float(np.arccos(np.clip((np.trace(rotation) - 1) / 2, -1, 1)))


def test_every_published_type_has_its_code_and_a_generator():
    assert set(PUBLISHED_CODES.values()) == {"frac", "crack", "disc", "bump", "defr", "bend", "twist", "miss",
                                             "tran", "rota", "scal", "mats", "diff"}
    assert len(set(TYPE_CODES.values())) == len(TYPE_CODES)
    assert set(GENERATORS) <= set(TYPE_CODES)


@pytest.mark.parametrize("name", sorted(set(GENERATORS) - {"similar_shape"}))
@pytest.mark.parametrize("category", SHAPES)
def test_faces_outside_the_anomaly_keep_the_normal_surface(name, category):
    """The anomalous faces cover every change: the rest of the variant lies on the normal shape's surface, in
    the normal shape's frame (no re-normalisation), and the variant is a new object, not a copy."""
    shape, result = _apply(name, category)
    merged, part_index = result.shape.merged()
    assert result.anomalous_faces.dtype == bool and result.anomalous_faces.shape == (len(merged.faces),)
    assert result.anomalous_faces.any()
    assert result.anomaly_type == name and len(part_index) == len(merged.faces)
    unchanged = np.flatnonzero(~result.anomalous_faces)
    if len(unchanged):
        assert distance_to([p.mesh for p in shape.parts], _face_points(merged, unchanged)).max() < MIN_SURFACE_CHANGE
    for part in shape.parts:  # the input shape is not modified
        assert part.mesh.vertices.flags.writeable


@pytest.mark.parametrize("category", SHAPES)
def test_fracture_removes_10_to_90_percent_and_leaves_one_object(category):
    shape, result = _apply("fracture", category)
    removed = 1 - union_volume([p.mesh for p in result.shape.parts]) / union_volume([p.mesh for p in shape.parts])
    assert 0.1 <= removed <= 0.9
    assert removed == pytest.approx(result.params["volume_removed"], abs=1e-3)
    assert is_one_object([p.mesh for p in result.shape.parts])
    merged, _ = result.shape.merged()  # the marked faces are the new break surface, inside the old solid
    inside = distance_to([p.mesh for p in shape.parts], merged.triangles_center[result.anomalous_faces])
    assert np.median(inside) > 1e-4


@pytest.mark.parametrize("category", SHAPES)
def test_crack_puts_the_piece_back_shifted_and_turned(category):
    shape, result = _apply("crack", category)
    assert 0.02 <= result.params["shift"] * SCENE_SCALE <= 0.04
    assert 7 <= abs(result.params["turn_deg"]) <= 10
    pieces = [p for p in result.shape.parts if p.name.endswith("_piece")]
    rest = [p for p in result.shape.parts if not p.name.endswith("_piece")]
    assert pieces and rest
    # nothing is lost: the piece is put back, not removed (rest + piece = the normal parts' volume)
    assert sum(p.mesh.volume for p in result.shape.parts) == pytest.approx(sum(p.mesh.volume for p in shape.parts),
                                                                          rel=0.02)
    piece = trimesh.util.concatenate([p.mesh for p in pieces])
    assert min(gap(p.mesh, piece) for p in rest) <= TOUCH
    assert distance_to([p.mesh for p in shape.parts], piece.vertices).max() > 0.01  # it moved


@pytest.mark.parametrize("category", SHAPES)
def test_discoloration_changes_colour_only_inside_its_faces(category):
    shape, result = _apply("discoloration", category)
    merged, part_index = result.shape.merged()
    normal, _ = shape.merged()
    closest = raycasting_scene([normal]).compute_closest_points(
        __import__("open3d").core.Tensor(merged.triangles_center.astype(np.float32)))
    assert np.abs(closest["points"].numpy() - merged.triangles_center).max() < 1e-3  # geometry unchanged (float32)
    original = {p.name: p.material.base_color for p in shape.parts}
    before = np.array([original[result.shape.parts[i].name.removesuffix("_stain")] for i in part_index])
    after = np.array([result.shape.parts[i].material.base_color for i in part_index])
    changed = np.linalg.norm(after - before, axis=1) > 1e-6
    np.testing.assert_array_equal(changed, result.anomalous_faces)
    share = merged.area_faces[result.anomalous_faces].sum() / merged.area
    assert 0.05 <= share <= 0.45


@pytest.mark.parametrize("category", SHAPES)
def test_bump_pushes_the_surface_out_by_its_height(category):
    shape, result = _apply("bump", category)
    center, normal, height = (np.array(result.params[k]) for k in ("center", "normal", "height"))
    top = center + height * normal
    merged, _ = result.shape.merged()
    assert distance_to([merged], top[None])[0] < 0.15 * height  # the variant surface reaches the top
    assert distance_to([p.mesh for p in shape.parts], top[None])[0] > 0.8 * height  # the normal one did not
    far = np.linalg.norm(merged.vertices - center, axis=1) > result.params["radius"]
    assert distance_to([p.mesh for p in shape.parts], merged.vertices[far]).max() < 1e-3  # nothing moved there
    moved = np.unique(merged.faces[result.anomalous_faces])
    assert np.linalg.norm(merged.vertices[moved] - center, axis=1).max() < 1.2 * result.params["radius"]


@pytest.mark.parametrize("category", SHAPES)
def test_free_deformation_moves_a_region_around_the_hook(category):
    shape, result = _apply("deformation", category)
    assert abs(result.params["turn_deg"]) <= 30
    assert result.params["surface_change"] >= 0.01
    merged, _ = result.shape.merged()
    marked = merged.triangles_center[result.anomalous_faces]
    reach = result.params["radius"] + np.linalg.norm(result.params["offset"]) + 0.05
    assert np.linalg.norm(marked - result.params["center"], axis=1).max() <= reach


def _slab_rotation(shape, variant, axis: int, share: float = 0.1):
    """Relative rotation between the two end slabs along `axis`, from corresponding vertices (re-meshing keeps
    the original vertices first), and how far apart the slabs' centres are as a share of the extent."""
    normal = np.concatenate([p.mesh.vertices for p in shape.parts])
    moved = np.concatenate([v.mesh.vertices[:len(p.mesh.vertices)] for p, v in zip(shape.parts, variant.parts,
                                                                                   strict=True)])
    u = normal[:, axis]
    low, high = u <= np.quantile(u, share), u >= np.quantile(u, 1 - share)
    relative = _rotation(normal[high], moved[high]) @ _rotation(normal[low], moved[low]).T
    return relative, (u[high].mean() - u[low].mean()) / np.ptp(u)


@pytest.mark.parametrize("name", ["bend", "twist"])
@pytest.mark.parametrize("category", ["bottle", "hammer", "keyed_shaft"])
def test_bend_and_twist_turn_the_ends_by_the_requested_angle(name, category):
    shape, result = _apply(name, category)
    angle = np.deg2rad(abs(result.params["angle_deg"]))
    assert np.deg2rad(30) <= angle <= np.deg2rad(40)
    axis = "xyz".index(result.params["axis"])
    relative, span = _slab_rotation(shape, result.shape, axis)
    assert _angle(relative) == pytest.approx(angle * span, rel=0.15)
    rotation_axis = np.abs(trimesh.transformations.rotation_from_matrix(np.pad(relative, (0, 1)) + np.diag(
        [0, 0, 0, 1]))[1])
    if name == "twist":  # about the deformation axis; a bend turns about the axis across both
        assert rotation_axis[axis] > 0.95
    else:
        assert rotation_axis[axis] < 0.1 and rotation_axis["xyz".index(result.params["toward"])] < 0.1


@pytest.mark.parametrize("name", ["part_translation", "part_rotation", "part_scale"])
@pytest.mark.parametrize("category", SHAPES)
def test_moved_part_stays_attached_and_moves_rigidly(name, category):
    shape, result = _apply(name, category)
    index = next(i for i, p in enumerate(shape.parts) if p.name == result.params["part"])
    before, after = shape.parts[index].mesh, result.shape.parts[index].mesh
    others = [p.mesh for i, p in enumerate(result.shape.parts) if i != index]
    assert min(gap(o, after) for o in others) <= TOUCH  # still touching the body
    for i, (a, b) in enumerate(zip(shape.parts, result.shape.parts, strict=True)):
        if i != index:
            np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)
    if name == "part_translation":
        offset = after.vertices - before.vertices
        np.testing.assert_allclose(offset, np.broadcast_to(result.params["offset"], offset.shape), atol=1e-9)
        size = np.ptp(before.vertices, axis=0).max()
        assert 0.1 * size <= np.linalg.norm(result.params["offset"]) <= 0.4 * size + 1e-9
    elif name == "part_rotation":
        assert _angle(_rotation(before.vertices, after.vertices)) == pytest.approx(
            abs(result.params["angle_rad"]), abs=1e-6)
        assert 0.3 <= abs(result.params["angle_rad"]) <= 0.4
    else:
        ratio = np.ptp(after.vertices, axis=0) / np.ptp(before.vertices, axis=0)
        np.testing.assert_allclose(ratio, result.params["factor"], rtol=1e-6)
        assert 0.7 <= result.params["factor"] <= 0.8


@pytest.mark.parametrize("category", SHAPES)
def test_material_swap_takes_another_parts_material(category):
    shape, result = _apply("material_swap", category)
    index = next(i for i, p in enumerate(shape.parts) if p.name == result.params["part"])
    new = result.shape.parts[index].material
    assert new != shape.parts[index].material
    if result.params["material_from"].startswith("part "):
        donor = result.params["material_from"].removeprefix("part ")
        assert new == next(p.material for p in shape.parts if p.name == donor)
    np.testing.assert_array_equal(result.shape.merged()[0].vertices, shape.merged()[0].vertices)


@pytest.mark.parametrize("category", SHAPES)
def test_added_patch_is_attached_foreign_geometry(category):
    shape, result = _apply("patch_added", category)
    patch = result.shape.parts[-1]
    assert patch.name == "patch" and len(result.shape.parts) == len(shape.parts) + 1
    assert min(gap(p.mesh, patch.mesh) for p in shape.parts) <= TOUCH
    assert distance_to([p.mesh for p in shape.parts], patch.mesh.vertices).max() >= 0.01  # it sticks out
    merged, part_index = result.shape.merged()
    np.testing.assert_array_equal(result.anomalous_faces, part_index == len(shape.parts))


@pytest.mark.parametrize("category", SHAPES)
def test_removed_patch_is_a_dent_in_one_object(category):
    shape, result = _apply("patch_removed", category)
    before = union_volume([p.mesh for p in shape.parts])
    removed = 1 - union_volume([p.mesh for p in result.shape.parts]) / before
    assert 0 < removed < 0.1  # a local dent or hole, not a fracture
    assert is_one_object([p.mesh for p in result.shape.parts])
    assert [p.name for p in result.shape.parts] == [p.name for p in shape.parts]
    assert result.params["surface_change"] >= 0.01
