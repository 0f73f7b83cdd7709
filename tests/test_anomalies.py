"""The two anomaly types of the scene factory on built-in shapes."""

import numpy as np
import pytest
import trimesh

from generation.anomalies import AnomalyRejected, get_generator
from generation.anomalies.missing import _connected, _distance_to
from generation.shapes.builtin import PART_CATEGORIES, TOY_CATEGORIES, builtin_shape
from generation.shapes.types import MaterialSpec, Part, Shape

CATEGORIES = TOY_CATEGORIES + PART_CATEGORIES


@pytest.mark.parametrize("category", CATEGORIES)
def test_material_anomaly_recolours_exactly_one_part(category):
    shape = builtin_shape(category, 1)
    result = get_generator("material").apply(shape, np.random.default_rng(0))
    changed = [i for i, (a, b) in enumerate(zip(shape.parts, result.shape.parts, strict=True))
               if a.material != b.material]
    assert len(changed) == 1
    i = changed[0]
    old, new = shape.parts[i].material, result.shape.parts[i].material
    assert np.linalg.norm(np.subtract(new.base_color, old.base_color)) >= 0.2
    merged, part_index = result.shape.merged()
    np.testing.assert_array_equal(result.anomalous_faces, part_index == i)  # the region is that part
    np.testing.assert_array_equal(merged.vertices, shape.merged()[0].vertices)  # geometry untouched
    assert result.params["part"] == shape.parts[i].name


@pytest.mark.parametrize("category", CATEGORIES)
def test_missing_part_removes_one_part_and_marks_where_it_was(category):
    shape = builtin_shape(category, 2)
    result = get_generator("missing").apply(shape, np.random.default_rng(1))
    names = {p.name for p in shape.parts} - {p.name for p in result.shape.parts}
    assert names == {result.params["part"]}
    assert len(result.shape.parts) == len(shape.parts) - 1
    assert _connected(result.shape)  # what is left is still one object
    removed = next(p.mesh for p in shape.parts if p.name == result.params["part"])
    merged, _ = result.shape.merged()
    assert result.anomalous_faces.shape == (len(merged.faces),) and result.anomalous_faces.any()
    # every marked face reaches to within the contact radius of the removed part
    steps = np.linspace(0, 1, 12)
    bary = np.array([(a, b, 1 - a - b) for a in steps for b in steps if a + b <= 1 + 1e-9])
    triangles = merged.triangles[result.anomalous_faces]
    points = np.einsum("kj,fjd->fkd", bary, triangles)
    distance = _distance_to(removed, points.reshape(-1, 3))
    assert np.all(distance.reshape(len(triangles), -1).min(axis=1) <= result.params["contact_radius"] + 0.01)
    # the variant keeps the normal copy's frame: the remaining parts did not move
    kept = [p for p in shape.parts if p.name != result.params["part"]]
    for a, b in zip(kept, result.shape.parts, strict=True):
        np.testing.assert_array_equal(a.mesh.vertices, b.mesh.vertices)


def test_single_part_shape_cannot_lose_a_part():
    lone = Shape("ball_0000", "ball", "test", [Part("body", trimesh.creation.icosphere(),
                                                      MaterialSpec("m", (0.5, 0.5, 0.5), 0.5, 0.0))])
    with pytest.raises(AnomalyRejected, match="single part"):
        get_generator("missing").apply(lone, np.random.default_rng(0))


def test_unknown_type_names_the_known_ones():
    with pytest.raises(ValueError, match="material"):
        get_generator("melted")


def test_generator_settings_from_the_config_change_the_generator_and_reject_typos():
    from generation.config import load_config

    config = load_config(None, ["anomalies.params={material={min_area_share=0.3}}"])
    strict = get_generator("material", config.anomalies.params["material"])
    assert strict.min_area_share == 0.3 and get_generator("material").min_area_share == 0.03
    shape = builtin_shape("mug", 0)
    result = strict.apply(shape, np.random.default_rng(0))
    share = np.array([p.mesh.area for p in shape.parts]) / sum(p.mesh.area for p in shape.parts)
    recoloured = [p.name for p in shape.parts].index(result.params["part"])
    assert share[recoloured] >= 0.3
    with pytest.raises(ValueError, match="has no setting 'colour'"):
        load_config(None, ["anomalies.params={material={colour=1}}"])


def test_a_type_that_fails_every_try_reports_each_distinct_reason_once():
    strict = get_generator("fracture", {"volume_share": [0.999, 1.0], "tries": 4})
    with pytest.raises(AnomalyRejected) as caught:
        strict.apply(builtin_shape("bracket", 0), np.random.default_rng(0))
    message = str(caught.value)
    assert message.startswith("fracture: removed ") and "of the volume" in message
    reasons = message.removeprefix("fracture: ").split("; ")
    assert len(reasons) == len(set(reasons)) and 1 <= len(reasons) <= 4
