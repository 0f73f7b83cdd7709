"""The `mvtec3d` export: MVTec 3D-AD layout, xyz points on the rendered surface, gt inside the object, clean train."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from PIL import Image

from generation.cli import main
from generation.export.common import published_code
from generation.export.mvtec3d import MIN_VISIBLE_SHARE
from generation.scenefile import read_scene

CROP_SIZE = 96
STEM = re.compile(r"(scene_\d+)_obj(\d+)_view(\d+)")
DEPTH_TOLERANCE_M = 0.003


def run_export(variant: Path, out: Path) -> str:
    args = ["export", "--format", "mvtec3d", "--variant", str(variant), "--out", str(out),
            "--crop-size", str(CROP_SIZE)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def export(export_variant, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mvtec3d")
    run_export(export_variant, out)
    return out


@pytest.fixture(scope="module")
def scenes(export_variant) -> dict:
    return {path.stem: read_scene(path) for path in sorted((export_variant / "scenes").glob("*.h5"))}


def samples(export: Path):
    """(category, folder such as 'train/good', stem) of every sample, found as MVTec 3D-AD loaders find them."""
    for rgb in sorted(export.glob("*/*/*/rgb/*.png")):
        yield rgb.parents[3].name, f"{rgb.parents[2].name}/{rgb.parents[1].name}", rgb.stem


def test_layout_is_mvtec3d(export):
    found = list(samples(export))
    assert found
    folders = {folder for _, folder, _ in found}
    assert "train/good" in folders and "test/good" in folders and any(f.startswith("test/") and f != "test/good"
                                                                      for f in folders)
    for category, folder, stem in found:
        base = export / category / folder
        subfolders = sorted(p.name for p in base.iterdir())
        assert subfolders == (["rgb", "xyz"] if folder == "train/good" else ["gt", "rgb", "xyz"])
        rgb = Image.open(base / "rgb" / f"{stem}.png")
        assert rgb.mode == "RGB" and rgb.size == (CROP_SIZE, CROP_SIZE)
        xyz = tifffile.imread(base / "xyz" / f"{stem}.tiff")
        assert xyz.dtype == np.float32 and xyz.shape == (CROP_SIZE, CROP_SIZE, 3)
        if folder != "train/good":
            gt = np.array(Image.open(base / "gt" / f"{stem}.png"))
            assert gt.shape == (CROP_SIZE, CROP_SIZE) and set(np.unique(gt)) <= {0, 255}
            assert gt.any() == (folder != "test/good")


def test_train_holds_only_normal_objects_of_training_scenes(export, scenes):
    for category, folder, stem in samples(export):
        scene_id, obj, _ = STEM.fullmatch(stem).groups()
        scene, i = scenes[scene_id], int(obj)
        assert scene.categories[i] == category
        if folder == "train/good":
            assert scene.labels[i] == 0 and scene.split == "train"
        elif folder == "test/good":
            assert scene.labels[i] == 0 and scene.split == "test"
        else:
            assert scene.labels[i] == 1 and scene.split == "test"
            assert folder == f"test/{published_code(scene.anomaly_types[i])}"


def test_xyz_lies_on_the_rendered_surface_and_gt_on_the_object(export, scenes):
    object_points = 0
    for category, folder, stem in samples(export):
        scene_id, obj, view = STEM.fullmatch(stem).groups()
        scene, i, v = scenes[scene_id], int(obj), int(view)
        xyz = tifffile.imread(export / category / folder / "xyz" / f"{stem}.tiff").reshape(-1, 3)
        has_point = np.any(xyz != 0, axis=1)
        points = xyz[has_point].astype(np.float64)
        # xyz is in the view's OpenCV camera frame: project with K, look the depth up at that pixel
        uvw = points @ scene.intrinsics[v].T
        cols, rows = (uvw[:, :2] / uvw[:, 2:]).astype(int).T
        H, W = scene.depth.shape[1:]
        assert (cols >= 0).all() and (cols < W).all() and (rows >= 0).all() and (rows < H).all()
        assert np.abs(scene.depth[v][rows, cols] - points[:, 2]).max() < DEPTH_TOLERANCE_M
        owner = scene.instance[v][rows, cols]
        assert set(np.unique(owner)) <= {0, i + 1}  # the object and the floor only; other objects are zeroed
        on_object = owner == i + 1
        assert on_object.sum() >= 16
        world = (points[on_object] - scene.world_to_camera[v][:3, 3]) @ scene.world_to_camera[v][:3, :3]
        assert (world >= scene.mesh_box_min[i] - 1e-3).all() and (world <= scene.mesh_box_max[i] + 1e-3).all()
        object_points += int(on_object.sum())
        if folder != "train/good":
            gt = np.array(Image.open(export / category / folder / "gt" / f"{stem}.png")).reshape(-1) == 255
            assert (gt <= has_point).all()
            gt_rows, gt_cols = rows[gt[has_point]], cols[gt[has_point]]
            assert (scene.instance[v][gt_rows, gt_cols] == i + 1).all()
            assert (scene.anomaly[v][gt_rows, gt_cols] == 1).all()
    assert object_points > 1000


def test_every_object_view_is_written_or_skipped_for_a_reason(export, scenes):
    for marker in export.glob("*/crops/*.json"):
        record = json.loads(marker.read_text())
        scene = scenes[record["scene_id"]]
        used = [i for i in range(scene.n_objects) if not (scene.labels[i] and scene.split == "train")]
        pairs = sorted((r["object"], r["view"]) for r in record["written"] + record["skipped"])
        assert pairs == sorted((i, v) for i in used for v in range(scene.n_views))
        assert all(r["visible_share"] >= MIN_VISIBLE_SHARE for r in record["written"])
        for r in record["written"]:
            assert (export / marker.parents[1].name / r["folder"] / "rgb" / f"{r['stem']}.png").exists()


def test_rerun_skips_finished_scenes_and_redoes_a_missing_one(export_variant, tmp_path):
    out = tmp_path / "copy"
    run_export(export_variant, out)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    n = len(list(out.glob("*/crops/*.json")))
    assert f"exported 0 scenes (already done {n})" in run_export(export_variant, out)
    marker = next(out.glob("*/crops/*.json"))
    marker.unlink()
    assert f"exported 1 scenes (already done {n - 1})" in run_export(export_variant, out)
    assert sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files


def test_crop_intrinsics_map_points_to_their_crop_pixels(export):
    for marker in export.glob("*/crops/*.json"):
        for record in json.loads(marker.read_text())["written"]:
            xyz = tifffile.imread(export / marker.parents[1].name / record["folder"] / "xyz" / f"{record['stem']}.tiff")
            rows, cols = np.nonzero(np.any(xyz != 0, axis=2))
            uvw = xyz[rows, cols].astype(np.float64) @ np.array(record["crop_K"]).T
            half_source_pixel = 0.5 * CROP_SIZE / record["crop_box_xy_side"][2]
            assert np.abs(uvw[:, 0] / uvw[:, 2] - (cols + 0.5)).max() <= half_source_pixel + 1e-3
            assert np.abs(uvw[:, 1] / uvw[:, 2] - (rows + 0.5)).max() <= half_source_pixel + 1e-3
