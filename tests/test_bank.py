"""The anomaly bank: one variant per (shape, type, k), shared by scenes and workers, reloaded on a rerun."""

from __future__ import annotations

import numpy as np
import pytest

from generation.anomalies import AnomalyRejected
from generation.bank import AnomalyBank
from generation.scene_task import _variants
from generation.shapes.builtin import builtin_shape


def _same(a, b) -> None:
    assert [p.name for p in a.shape.parts] == [p.name for p in b.shape.parts]
    assert [p.material for p in a.shape.parts] == [p.material for p in b.shape.parts]
    for pa, pb in zip(a.shape.parts, b.shape.parts, strict=True):
        np.testing.assert_array_equal(pa.mesh.vertices, pb.mesh.vertices)
        np.testing.assert_array_equal(pa.mesh.faces, pb.mesh.faces)
    np.testing.assert_array_equal(a.anomalous_faces, b.anomalous_faces)
    assert a.params == b.params


def test_scenes_share_banked_variants_and_a_rerun_loads_them(tmp_path, monkeypatch):
    normal = builtin_shape("mug", 0, seed=0)
    bank = AnomalyBank(tmp_path / "bank", seed=0)
    # two scenes (different anomaly streams) of the same shape draw from the same variants_per_shape=1 bank entry
    first = _variants(normal, ["none", "bump", "none"], np.random.default_rng([0, 1]), bank, 1)
    second = _variants(normal, ["bump", "none", "none"], np.random.default_rng([0, 2]), bank, 1)
    assert first[2][1]["variant"] == second[2][0]["variant"] == "mug_0000-bump-000"
    stored = bank.path("mug_0000", "bump", 0)
    assert sorted(p.name for p in stored.parent.iterdir()) == [stored.name]  # made once, no .tmp left
    np.testing.assert_array_equal(first[1][1], second[1][0])
    # a rerun (a new bank object, as in another worker) loads the file instead of generating
    monkeypatch.setattr("generation.bank.get_generator", lambda name: pytest.fail("regenerated a banked variant"))
    again = AnomalyBank(tmp_path / "bank", seed=0)
    _same(again.get(normal, "bump", 0), bank.get(normal, "bump", 0))
    assert first[1][1].any() and len(first[0][1].merged()[0].faces) != len(normal.merged()[0].faces)


def test_a_rejected_variant_is_banked_with_its_reason(tmp_path):
    normal = builtin_shape("mug", 0, seed=0)
    single = type(normal)(normal.shape_id, normal.category, normal.source, normal.parts[:1])
    bank = AnomalyBank(tmp_path, seed=0)
    for _ in range(2):
        with pytest.raises(AnomalyRejected, match="single part"):
            bank.get(single, "missing", 2)
    assert bank.path(normal.shape_id, "missing", 2).exists()


def test_odd_copies_of_one_type_get_different_variants_while_the_bank_has_enough(tmp_path):
    normal = builtin_shape("mug", 0, seed=0)
    bank = AnomalyBank(tmp_path / "bank", seed=0)
    for seed in range(4):
        _, _, params = _variants(normal, ["material", "none", "material", "none", "none"],
                                 np.random.default_rng(seed), bank, 3)
        assert params[0]["variant"] != params[2]["variant"]
    _, _, params = _variants(normal, ["material", "material", "none", "none", "none"], np.random.default_rng(0),
                             bank, 1)
    assert params[0]["variant"] == params[1]["variant"] == "mug_0000-pcol-000"
