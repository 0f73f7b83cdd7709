"""Scene planning and the scene file, without Blender."""

import h5py
import numpy as np
import pytest

from generation import layout
from generation.config import load_config
from generation.scenefile import Scene, read_scene, write_scene


def test_plans_are_reproducible_and_anomalies_a_strict_minority():
    config = load_config(None, ["scene.objects=[3,12]", "scene.normal_scene_fraction=0.1"])
    pools = {"train": ["a_0000", "a_0001"], "test": ["b_0000"]}
    plans = [layout.plan_scene(config, i, 0, pools) for i in range(300)]
    again = [layout.plan_scene(config, i, 0, pools) for i in range(300)]
    assert [p.anomaly_types for p in plans] == [p.anomaly_types for p in again]
    n_anomalous = np.array([sum(t != "none" for t in p.anomaly_types) for p in plans])
    n_objects = np.array([p.n_objects for p in plans])
    assert np.all(2 * n_anomalous < n_objects)
    assert 0.03 < np.mean(n_anomalous == 0) < 0.2
    assert {t for p in plans for t in p.anomaly_types} == {"none", "material", "missing"}
    assert all(p.shape_id.startswith("b") == (p.split == "test") for p in plans)


def test_split_fraction_holds_for_short_runs():
    splits = [layout.scene_split(i, 0.3) for i in range(10)]
    assert splits.count("test") == 3
    assert 0.28 < [layout.scene_split(i, 0.3) for i in range(1000)].count("test") / 1000 < 0.32


def test_three_way_split_holds_out_categories_and_instances():
    config = load_config(None, ["split.by='category+instance'", "split.test_fraction=0.3",
                                "split.test_categories=['mug']"])
    shapes = {f"{c}_{k:03d}": c for c in ("mug", "robot", "train") for k in range(40)}
    splits = {s: layout.shape_split(s, c, config) for s, c in shapes.items()}
    assert {s for s, split in splits.items() if split == "unseen-test"} == {s for s in shapes if s.startswith("mug")}
    seen = [split for s, split in splits.items() if not s.startswith("mug")]
    assert set(seen) == {"seen-test", "train"} and 0.2 < seen.count("seen-test") / len(seen) < 0.4
    pools = {}
    for shape_id, split in sorted(splits.items()):
        pools.setdefault(split, []).append(shape_id)
    plans = [layout.plan_scene(config, i, 0, pools) for i in range(600)]
    for name, pool in pools.items():  # scene shares follow the pool sizes; shapes never leave their split
        share = sum(p.split == name for p in plans) / len(plans)
        assert abs(share - len(pool) / len(shapes)) < 0.01
        assert all(p.shape_id in pool for p in plans if p.split == name)
    # the two-way splits are unchanged by the generalisation
    assert [layout.split_by_shares(i, [("test", 0.3), ("train", 0.7)]) for i in range(50)] == [
        "test" if ((i + 1) * layout.GOLDEN) % 1.0 < 0.3 else "train" for i in range(50)]


def test_footprints_do_not_overlap():
    rng = np.random.default_rng(3)
    radii = np.full(12, 0.15)
    xy = layout.place_footprints(rng, radii, gap=0.04)
    distance = np.linalg.norm(xy[:, None] - xy[None], axis=-1) + np.eye(12) * 10
    assert distance.min() >= 0.34 - 1e-9
    np.testing.assert_allclose(xy.mean(axis=0), 0.0, atol=1e-9)


def _scene() -> Scene:
    V, H, W, N = 2, 4, 5, 3
    rng = np.random.default_rng(0)
    return Scene(
        scene_id="scene_000007", split="test", seed=5, scene_index=7,
        rgb=rng.integers(0, 255, (V, H, W, 3), dtype=np.uint8), depth=rng.random((V, H, W), dtype=np.float32),
        instance=rng.integers(0, 4, (V, H, W), dtype=np.uint8), anomaly=np.zeros((V, H, W), np.uint8),
        intrinsics=np.stack([np.eye(3)] * V), world_to_camera=np.stack([np.eye(4)] * V),
        labels=np.array([0, 1, 0], np.int8), anomaly_types=["none", "material", "none"],
        source_ids=["mug_0001"] * N, categories=["mug"] * N, object_to_world=np.stack([np.eye(4)] * N),
        box_min=np.zeros((N, 3)), box_max=np.ones((N, 3)), local_extents=np.ones((N, 3)),
        anomaly_params=[{}, {"part": "handle"}, {}], attrs={"config": {"seed": 5}, "versions": {"x": "1"}},
    )


def test_scene_file_round_trip_and_schema_refusal(tmp_path):
    path = tmp_path / "scene_000007.h5"
    write_scene(path, _scene())
    back = read_scene(path)
    original = _scene()
    for name in ("rgb", "depth", "instance", "labels", "box_max", "world_to_camera"):
        np.testing.assert_array_equal(getattr(back, name), getattr(original, name))
    assert back.anomaly_types == original.anomaly_types and back.anomaly_params[1] == {"part": "handle"}
    assert back.attrs == original.attrs and back.split == "test" and back.scene_index == 7
    assert not list(tmp_path.glob("*.tmp"))
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(ValueError, match="scene_000007.h5: scene schema version 99"):
        read_scene(path)
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="broken.h5: cannot open"):
        read_scene(tmp_path / "broken.h5")


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ValueError, match="unknown key 'colour'"):
        load_config(None, ["cameras.colour=1"])
    with pytest.raises(ValueError, match="render.preset"):
        load_config(None, ["render.preset='ultra'"])
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = [")
    with pytest.raises(ValueError, match="bad.toml: cannot read config"):
        load_config(bad)
