"""Metrics on hand-computed cases, the clustering baselines on obvious scenes, and the config files."""

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from training.baselines import (
    METHODS,
    METRICS,
    SET_METRICS,
    box_only_scores,
    dbscan,
    distances,
    graph_cut,
    run_baselines,
    run_method,
    set_distances,
)
from training.config import Config, load_config, parse_set
from training.evaluate import summarise
from training.metrics import accuracy, adjusted_rand, auroc, auroc_per_scene
from training.train import eval_split_names, lr_factor

CONFIGS = Path(__file__).resolve().parents[1] / "assets" / "configs"


def test_auroc_hand_cases():
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auroc([0, 1], [0.5, 0.5]) == 0.5  # a tie counts one half
    assert auroc([0, 0, 1, 1], [0.2, 0.5, 0.5, 0.9]) == 3.5 / 4
    assert auroc([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0 and auroc([1, 0], [0.1, 0.9]) == 0.0
    assert np.isnan(auroc([0, 0], [0.1, 0.2]))


def test_auroc_per_scene_averages_scenes_with_both_classes():
    scenes = ["a", "a", "a", "b", "b", "c", "c"]
    labels = [1, 0, 0, 1, 0, 0, 0]  # scene c has no anomaly: it does not count
    scores = [0.9, 0.8, 0.1, 0.2, 0.3, 0.5, 0.6]
    assert auroc_per_scene(scenes, labels, scores) == (0.5, 2)  # scene a 1.0, scene b 0.0
    assert auroc(labels, scores) == pytest.approx(6 / 10)  # pooled: a different question


def test_box_only_scores_are_box_volume_outliers_within_the_scene():
    same = np.array([[0.2, 0.1, 0.3]] * 4)
    assert (box_only_scores(same) == 0).all()
    assert (box_only_scores(same + np.float32(1e-8)) == 0).all()  # float32 noise is no cue
    shrunk = same.copy()
    shrunk[2, 2] = 0.2  # a missing part in a tight box
    scores = box_only_scores(shrunk)
    assert scores.argmax() == 2 and scores[2] == pytest.approx(np.sqrt(3))


def test_accuracy_thresholds_at_one_half():
    assert accuracy([0, 1, 1, 0], [0.5, 0.51, 0.2, 0.1]) == 0.75  # 0.5 itself counts as normal


def test_adjusted_rand_hand_cases():
    assert adjusted_rand([0, 0, 1, 1], [1, 1, 0, 0]) == 1.0  # label names do not matter
    assert adjusted_rand([0, 0, 1, 2], [0, 0, 1, 1]) == pytest.approx(4 / 7)
    assert adjusted_rand([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(-0.5)
    assert adjusted_rand([0, 0, 0], [0, 0, 0]) == 1.0


def test_object_count_bins_and_types():
    pred = {
        "scene": np.array(["a"] * 3 + ["b"] * 5),
        "n_objects": np.array([3] * 3 + [5] * 5),
        "label": np.array([1, 0, 0, 1, 1, 0, 0, 0]),
        "type": np.array(["material", "none", "none", "missing", "material", "none", "none", "none"]),
        "score": np.array([0.9, 0.2, 0.1, 0.4, 0.8, 0.3, 0.6, 0.2]),
        "box_only": np.zeros(8),
    }
    r = summarise(pred, [(3, 4), (5, 6), (7, 8)])
    assert r["n_scenes"] == 2 and r["n_anomalous"] == 3 and r["accuracy"] == 6 / 8
    assert r["accuracy_by_type"]["material"] == {"accuracy": 1.0, "n_objects": 2}
    assert r["accuracy_by_type"]["missing"]["accuracy"] == 0.0
    assert r["by_object_count"]["3-4"]["auroc"] == 1.0 and "7-8" not in r["by_object_count"]
    assert r["by_object_count"]["5-6"]["auroc"] == pytest.approx(5 / 6)
    assert r["auroc_per_scene"] == pytest.approx((1.0 + 5 / 6) / 2) and r["n_scenes_per_scene"] == 2
    assert r["box_only"]["auroc"] == 0.5


def odd_scene(rng, n=6, odd=(0,), dim=8):
    x = np.ones((n, dim)) + 0.01 * rng.normal(size=(n, dim))
    x[list(odd), :4] = -1
    labels = np.zeros(n, int)
    labels[list(odd)] = 1
    return {"features": x, "labels": labels}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("metric", METRICS)
def test_every_baseline_finds_an_obvious_odd_one(method, metric):
    rng = np.random.default_rng(0)
    scene = odd_scene(rng, odd=(2,))
    scores, groups = run_method(method, scene["features"], metric)
    assert scores.argmax() == 2 and (scores[2] > 0.5) and (scores[np.arange(6) != 2] <= 0.5).all()
    assert adjusted_rand(scene["labels"], groups) == 1.0


def test_voxel_set_distances_hand_case():
    a = np.array([[[0.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.0], [3.0, 0.0]]])
    np.testing.assert_allclose(set_distances(a, "max")[0, 1], np.sqrt(2))
    np.testing.assert_allclose(set_distances(a, "min-max")[0, 1], 1.0)
    np.testing.assert_allclose(set_distances(a, "ot")[0, 1], 1.0)  # match (0,0)-(0,1) and (1,0)-(1,1)
    np.testing.assert_allclose(set_distances(a, "min-max")[0, 2], 2.0)  # (3,0) is 2 from its nearest in set 0
    np.testing.assert_allclose(set_distances(a, "ot")[0, 2], 1.0)  # (0,0)-(0,0) and (1,0)-(3,0): (0 + 2) / 2
    for metric in SET_METRICS:
        d = set_distances(a, metric)
        np.testing.assert_array_equal(d, d.T)
        assert (np.diag(d) == 0).all()


@pytest.mark.parametrize("method", [m for m in METHODS if m != "kmeans"])
@pytest.mark.parametrize("metric", SET_METRICS)
def test_voxel_set_baselines_find_an_obvious_odd_one(method, metric):
    rng = np.random.default_rng(0)
    voxels = np.ones((6, 8, 4)) + 0.01 * rng.normal(size=(6, 8, 4))
    voxels[2, :, :2] = -1
    labels = (np.arange(6) == 2).astype(int)
    scene = {"features": voxels.mean(1), "labels": labels, "distances": {metric: set_distances(voxels, metric)}}
    results = run_baselines([scene], methods=(method, "kmeans"), metrics=(metric,))
    assert list(results) == [f"{method}/{metric}"]  # k-means needs vectors: not run on voxel-set distances
    assert results[f"{method}/{metric}"]["auroc"] == 1.0


def test_baseline_results_pool_scenes():
    rng = np.random.default_rng(1)
    scenes = [odd_scene(rng, n=5, odd=(i % 5,)) for i in range(4)]
    results = run_baselines(scenes, methods=("kmeans", "mean-distance"), metrics=("euclidean",))
    assert set(results) == {"kmeans/euclidean", "mean-distance/euclidean"}
    for r in results.values():
        assert r["auroc"] == 1.0 and r["accuracy"] == 1.0 and r["ari_mean"] == 1.0 and r["n_objects"] == 20


def test_dbscan_noise_and_minimum_cut():
    d = distances(np.array([[0.0], [0.1], [0.2], [5.0]]), "euclidean")
    assert list(dbscan(d, eps=0.15)) == [0, 0, 0, 1]  # the far object is noise: a group of its own
    w = np.exp(-(d**2))
    np.fill_diagonal(w, 0)
    cut = graph_cut(w)
    assert cut[3] != cut[0] and len(set(cut[:3])) == 1


def test_default_config_file_is_the_code_default():
    assert load_config(CONFIGS / "train_default.toml") == Config()


def test_demo_config_and_overrides():
    cfg = load_config(CONFIGS / "train_demo.toml", ["model.head=context", "train.lr=1e-3", "model.grid=[48,48,8]"])
    assert cfg.model.head == "context" and cfg.train.lr == 1e-3 and cfg.model.grid == (48, 48, 8)
    assert cfg.eval.object_bins[0] == (3, 4)
    assert dataclasses.replace(cfg.model) == cfg.model
    assert parse_set(["data.features=/tmp/x"]) == {"data": {"features": "/tmp/x"}}
    with pytest.raises(ValueError, match="unknown key"):
        load_config(None, ["model.heads=residual"])
    with pytest.raises(ValueError, match="model.head must be one of"):
        load_config(None, ["model.head=transformer"])


def test_schedule_and_split_names():
    factors = [lr_factor(s, total=100, warmup=10, min_frac=0.0) for s in range(100)]
    assert factors[0] == 0.1 and factors[9] == 1.0 and factors[10] == 1.0
    assert all(a >= b for a, b in zip(factors[10:], factors[11:], strict=False)) and factors[-1] < 1e-3
    found = SimpleNamespace(samples={"train": 5, "seen-test": 2, "unseen-test": 3, "val": 1, "empty-test": 0})
    assert eval_split_names(found, "train") == ["seen-test", "unseen-test"]
    assert eval_split_names(SimpleNamespace(samples={"train": 5, "val": 1}), "train") == ["val"]
