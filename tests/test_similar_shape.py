"""`similar_shape` (`diff`): a look-alike found by multi-view DINOv2 descriptors, accepted under a Chamfer threshold."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from generation.anomalies import AnomalyRejected
from generation.bank import AnomalyBank
from generation.config import load_config
from generation.scenefile import read_scene
from generation.shape_index import INDEX_FILE, SimilarShapes, build_shape_index, render_views
from generation.shapes.sources import BuiltinSource, FolderSource
from tests.fixtures_scenes import save_tiny_dinov2
from tests.test_presets import REPO

PARTS = ["bolt", "keyed_shaft", "nut", "gear"]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return str(save_tiny_dinov2(tmp_path_factory.mktemp("dinov2")))


@pytest.fixture(scope="module")
def parts(tmp_path_factory, encoder):
    """Built-in parts split in two pools, with their shape index."""
    source = BuiltinSource(PARTS, 4)
    ids = source.shape_ids()
    pools = {"train": [s for s in ids if not s.endswith("3")], "test": [s for s in ids if s.endswith("3")]}
    root = tmp_path_factory.mktemp("bank")
    index = build_shape_index(root, source, ids, encoder, views=4, image_size=56, progress=False)
    return source, pools, SimilarShapes(index, source, pools), root


def _independent_chamfer(a: trimesh.Trimesh, b: trimesh.Trimesh) -> float:
    """Chamfer distance from other samples than the generator's, with no turning (the variant is turned already)."""
    pa = trimesh.sample.sample_surface(a, 4000, seed=7)[0]
    pb = trimesh.sample.sample_surface(b, 4000, seed=8)[0]
    return (cKDTree(pa).query(pb)[0].mean() + cKDTree(pb).query(pa)[0].mean()) / 2


def test_variants_are_distinct_look_alikes_within_the_chamfer_range(parts, tmp_path):
    source, pools, similar, _ = parts
    bank = AnomalyBank(tmp_path, seed=0, similar=similar)
    normal = source.load("bolt_0000")
    low, high = 0.01, 0.05
    replacements = []
    for k in range(2):
        result = bank.get(normal, "similar_shape", k)
        replacement = result.params["replacement"]
        replacements.append(replacement)
        assert replacement in pools["train"] and replacement != "bolt_0000"  # never a test shape in training
        assert result.anomalous_faces.all() and result.anomaly_type == "similar_shape"
        distance = _independent_chamfer(normal.merged()[0], result.shape.merged()[0])
        assert low * 0.8 <= distance <= high * 1.2, distance
        assert {p.material for p in result.shape.parts} <= {p.material for p in normal.parts}  # same look
        assert result.shape.shape_id == "bolt_0000"
    assert replacements[0] != replacements[1]
    # variant 0 is the nearest accepted neighbour: every shape ranked before it failed the Chamfer range
    ranked = [s for s, _ in similar.ranked("bolt_0000", 10)]
    assert ranked.index(replacements[0]) <= ranked.index(replacements[1])


def test_an_identical_copy_ranks_first(tmp_path, encoder):
    """Descriptors see geometry: the same mesh under two file names are each other's nearest neighbour."""
    builtin = BuiltinSource(PARTS, 2)
    folder = tmp_path / "meshes" / "parts"
    folder.mkdir(parents=True)
    for shape_id in builtin.shape_ids():
        builtin.load(shape_id).merged()[0].export(folder / f"{shape_id}.ply")
    shutil.copy(folder / "gear_0001.ply", folder / "gear_copy.ply")
    source = FolderSource(tmp_path / "meshes")
    ids = source.shape_ids()
    index = build_shape_index(tmp_path / "bank", source, ids, encoder, views=4, image_size=56, progress=False)
    ranked = SimilarShapes(index, source, {"train": ids}).ranked("parts_gear_copy", 3)
    assert ranked[0][0] == "parts_gear_0001" and ranked[0][1] == pytest.approx(1.0, abs=1e-5)
    assert ranked[1][1] < ranked[0][1]


def test_no_look_alike_in_range_is_rejected_with_the_distances_and_banked(parts, tmp_path):
    source, _, similar, _ = parts
    bank = AnomalyBank(tmp_path, seed=0, settings={"similar_shape": {"chamfer": [0.0, 0.001]}}, similar=similar)
    for _ in range(2):  # the second call reads the banked rejection
        with pytest.raises(AnomalyRejected, match=r"Chamfer distance in \[0.0, 0.001\].*bolt_00"):
            bank.get(source.load("bolt_0001"), "similar_shape", 0)
    assert bank.path("bolt_0001", "similar_shape", 0).name == "bolt_0001-diff-000.npz"


def test_without_an_index_nothing_is_banked(parts, tmp_path):
    source = parts[0]
    bank = AnomalyBank(tmp_path, seed=0)
    with pytest.raises(AnomalyRejected, match="no shape index"):
        bank.get(source.load("bolt_0000"), "similar_shape", 0)
    assert not bank.path("bolt_0000", "similar_shape", 0).exists()


def test_index_resumes_and_a_rerun_does_not_load_the_encoder(parts, tmp_path, encoder, monkeypatch):
    source, _, _, root = parts
    ids = source.shape_ids()
    path = build_shape_index(tmp_path, source, ids[:5], encoder, views=4, image_size=56, progress=False)
    first = dict(np.load(path))
    path = build_shape_index(tmp_path, source, ids, encoder, views=4, image_size=56, progress=False)
    resumed = dict(np.load(path))
    with np.load(root / INDEX_FILE) as whole:  # built in one go
        np.testing.assert_allclose(resumed["descriptors"], whole["descriptors"], atol=1e-6)
    rows = [resumed["shape_ids"].tolist().index(s) for s in first["shape_ids"]]
    np.testing.assert_array_equal(resumed["descriptors"][rows], first["descriptors"])
    assert json.loads(str(resumed["meta"]))["encoder"]["hidden_size"] == 32
    monkeypatch.setattr("generation.shape_index.ViewDescriber", lambda *a: pytest.fail("loaded the encoder"))
    build_shape_index(tmp_path, source, ids, encoder, views=4, image_size=56, progress=False)
    # other render settings are another index: the stale table is not used
    monkeypatch.undo()
    build_shape_index(tmp_path, source, ids[:2], encoder, views=2, image_size=56, progress=False)
    with np.load(path) as other:
        assert other["shape_ids"].tolist() == sorted(ids[:2]) and other["descriptors"].shape[1] == 2 * 32


def test_views_show_the_whole_shape_on_a_white_background():
    views = render_views(BuiltinSource(["gear"], 1).load("gear_0000"), 3, 64)
    assert views.shape == (3, 64, 64, 3) and views.dtype == np.uint8
    covered = views[..., 0] < 255
    assert (views[:, [0, -1], :] == 255).all() and (views[:, :, [0, -1]] == 255).all()  # nothing cut by the frame
    assert 0.15 < covered.mean() < 0.9
    assert not np.array_equal(views[0], views[1])  # distinct azimuths


def test_scenes_with_similar_shapes_mark_the_whole_replacement(tmp_path, encoder):
    """Through the runner: the index is built before the workers, the odd object is a banked look-alike, and its
    anomaly mask is the whole object in every view."""
    from generation.runner import run_scenes

    config = load_config(REPO / "assets/configs/demo.toml", [
        "n_scenes=1", "cameras.views=3", "cameras.width=48", "cameras.height=48", "render.samples=2",
        "scene.objects=[3,3]", "scene.normal_scene_fraction=0.0", "split.test_fraction=0.0",
        "shapes.categories=['bolt','keyed_shaft']", "shapes.instances_per_category=3",
        "anomalies.weights={similar_shape=1.0}", "anomalies.variants_per_shape=1",
        f"anomalies.params.similar_shape={{encoder='{encoder}', views=4, image_size=56}}",
    ])
    report = run_scenes(config, tmp_path, workers=1, progress=False)
    assert report["done_this_run"] == 1, report["rejected_this_run"]
    assert (tmp_path / "bank" / INDEX_FILE).exists()
    scene = read_scene(tmp_path / "scenes/scene_000000.h5")
    odd = int(np.flatnonzero(scene.labels)[0])
    params = scene.anomaly_params[odd]
    assert scene.anomaly_types[odd] == "similar_shape" and params["replacement"] != scene.source_ids[odd]
    assert params["variant"] == f"{scene.source_ids[odd]}-diff-000"
    own = scene.instance == odd + 1
    assert own.any() and np.array_equal(scene.anomaly == 1, own)


def test_a_missing_encoder_folder_is_named_with_its_config_key(tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "generation", "scenes", "--config", str(REPO / "assets/configs/demo.toml"),
               "--out", str(out)]
    for item in ("n_scenes=1", "shapes.categories=['bolt']", "shapes.instances_per_category=2",
                 "anomalies.weights={similar_shape=1.0}",
                 f"anomalies.params.similar_shape={{encoder='{tmp_path}/nowhere'}}"):
        command += ["--set", item]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "anomalies.params.similar_shape.encoder" in done.stderr and "nowhere does not exist" in done.stderr
    assert not list(out.glob("scenes/*.h5"))
