"""The `ooo` export, read back by an independent reader written from the release description alone
(../shared/reference/FACTS.md section 1): file layout, labels, boxes, cameras and depth, as released loaders see them.

Nothing from generation.export is imported here except through the CLI, so the reader cannot share a mistake
with the writer.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from generation.cli import main
from generation.scenefile import read_scene

# our type names with a release code, and the new tags of types the release lacks
CODES_OF_TYPES = {"fracture": "frac", "crack": "crack", "discoloration": "disc", "bump": "bump", "deformation": "defr",
                  "bend": "bend", "twist": "twist", "missing": "miss", "part_translation": "tran",
                  "part_rotation": "rota", "part_scale": "scal", "material_swap": "mats",
                  "material": "pcol", "patch_added": "padd", "patch_removed": "prem"}
SEGMENTATION_THRESHOLD = 127
BACKGROUND_DEPTH = 1e10


def run_export(*args: str) -> str:
    result = CliRunner().invoke(main, ["export", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def export(export_variant, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ooo")
    run_export("--format", "ooo", "--variant", str(export_variant), "--out", str(out))
    return out


# ---- the independent reader ----------------------------------------------------------------------------------
def read_split_file(root: Path) -> dict[str, list[str]]:
    return json.loads((root / "splits.json").read_text())


def read_release_scene(folder: Path) -> dict:
    """What the released training loader takes from a scene folder."""
    meta = json.loads((folder / "scene3d.metadata.json").read_text())
    K = np.array(meta["camera"]["K"])
    poses = [np.array(pose["rotation"]) for pose in meta["camera"]["poses"]]
    return {
        "meta": meta,
        "K": K,
        "poses": poses,
        "projections": [K @ pose[:3] for pose in poses],
        "boxes": np.array([np.ravel(obj["bbox"]) for obj in meta["objects"]]),
        "labels": [int("-" in os.path.basename(obj["path"])) for obj in meta["objects"]],
        "rgb": sorted((folder / "RGB").iterdir()),
        "masks": sorted((folder / "masks").iterdir()),
    }


def segmentation(folder: Path, name: str, view: int) -> np.ndarray:
    pixels = np.array(Image.open(folder / "segmentations" / name / f"{name}_{view:04d}.png"))
    assert pixels.ndim == 3 and pixels.shape[2] == 4 and set(np.unique(pixels[..., :3])) <= {0, 205}
    return pixels[..., 0] > SEGMENTATION_THRESHOLD


def exr_channel_types(path: Path) -> dict[str, int]:
    """Channel name -> pixel type (0 uint, 1 half, 2 float) from an OpenEXR header's `chlist` attribute."""
    data = path.read_bytes()
    start = data.index(b"channels\x00chlist\x00") + len(b"channels\x00chlist\x00")
    size = struct.unpack("<i", data[start:start + 4])[0]
    entries, channels = data[start + 4:start + 4 + size], {}
    while entries[:1] != b"\x00":
        name, entries = entries.split(b"\x00", 1)
        channels[name.decode()] = struct.unpack("<i", entries[:4])[0]
        entries = entries[16:]
    return channels


def read_exr(path: Path) -> np.ndarray:
    import bpy

    image = bpy.data.images.load(str(path))
    width, height = image.size
    pixels = np.empty(width * height * image.channels, np.float32)
    image.pixels.foreach_get(pixels)
    bpy.data.images.remove(image)
    return np.flipud(pixels.reshape(height, width, -1))


def project(P: np.ndarray, point) -> tuple[float, float, float]:
    u, v, w = P @ np.append(point, 1.0)
    return u / w, v / w, w


def source_scene(variant: Path, folder: Path):
    """Folder `<shape>-<NNN>`: NNN is the scene index (docs/exports.md)."""
    index = int(folder.name.rsplit("-", 1)[1])
    return read_scene(variant / "scenes" / f"scene_{index:06d}.h5")


# ---- tests ----------------------------------------------------------------------------------------------------
def test_splits_and_file_counts_follow_the_release(export_variant, export):
    splits = read_split_file(export)
    own_splits = json.loads((export_variant / "splits.json").read_text())
    assert {k: len(v) for k, v in splits.items()} == {k: len(v) for k, v in own_splits.items()}
    assert any("test" in key for key in splits) and any("test" not in key for key in splits)
    for key, names in splits.items():
        for name in names:
            folder = export / name
            assert re.fullmatch(r"[^-]+-\d{3,}", name)
            scene = source_scene(export_variant, folder)
            assert ("test" in key) == (scene.split == "test")
            V, H, W = scene.instance.shape
            for sub, suffix in (("RGB", "png"), ("depth_exr", "exr"), ("depth_png", "png"),
                                ("binary_labels", "png"), ("masks", "png")):
                assert sorted(p.name for p in (folder / sub).iterdir()) == [f"{v:04d}.{suffix}" for v in range(V)]
            objects = read_release_scene(folder)["meta"]["objects"]
            seg_folders = sorted(p.name for p in (folder / "segmentations").iterdir())
            assert seg_folders == sorted([obj["name"] for obj in objects] + ["floor"])
            for name in seg_folders:
                assert len(list((folder / "segmentations" / name).glob(f"{name}_*.png"))) == V
            rgba = np.array(Image.open(folder / "RGB" / "0000.png"))
            assert rgba.shape == (H, W, 4) and (rgba[..., 3] == 255).all()
            np.testing.assert_array_equal(rgba[..., :3], scene.rgb[0])
            preview = Image.open(folder / "scene.jpg")
            assert preview.height == H and preview.width % W == 0 and 1 <= preview.width // W <= 5


def test_labels_paths_and_masks_keep_the_release_conventions(export_variant, export):
    seen_codes = set()
    for folder in (export / name for names in read_split_file(export).values() for name in names):
        scene, release = source_scene(export_variant, folder), read_release_scene(folder)
        assert release["labels"] == scene.labels.tolist()
        scene2d = json.loads((folder / "scene2d.metadata.json").read_text())
        assert scene2d["anomaly_labels"] == [1 - label for label in scene.labels]  # inverted, as released
        assert scene2d["blend_paths"] == [obj["path"] for obj in release["meta"]["objects"]]
        for obj, label, anomaly_type in zip(release["meta"]["objects"], scene.labels, scene.anomaly_types,
                                            strict=True):
            tag = re.fullmatch(r"[^-]+-([a-z_]+)-(\d{3})\.\w+", os.path.basename(obj["path"]))
            assert (tag is not None) == bool(label)
            if tag and anomaly_type in CODES_OF_TYPES:
                assert tag.group(1) == CODES_OF_TYPES[anomaly_type]
                seen_codes.add(tag.group(1))
        objects = release["meta"]["objects"]
        for v in range(scene.n_views):
            masks = [segmentation(folder, obj["name"], v) for obj in objects]
            floor = segmentation(folder, "floor", v)
            assert sum(m.astype(int) for m in [*masks, floor]).max() <= 1  # one owner per pixel
            silhouette = np.array(Image.open(release["masks"][v]))
            np.testing.assert_array_equal(silhouette > 127, np.any(masks, axis=0))
            anomalous = [m for m, label in zip(masks, release["labels"], strict=True) if label]
            union = np.any(anomalous, axis=0) if anomalous else np.zeros_like(floor)
            binary = np.array(Image.open(folder / "binary_labels" / f"{v:04d}.png"))
            assert set(np.unique(binary)) <= {0, 255}
            np.testing.assert_array_equal(binary == 255, union)
            for name, box in scene2d["anomalous_boxes_2d"][f"{v:04d}"].items():
                rows, cols = np.nonzero(masks[[obj["name"] for obj in objects].index(name)])
                assert box == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
    assert seen_codes  # the fixture has anomalies


def test_cameras_are_opencv_world_to_camera_with_the_shared_K(export_variant, export):
    for folder in (export / name for names in read_split_file(export).values() for name in names):
        scene, release = source_scene(export_variant, folder), read_release_scene(folder)
        H, W = scene.instance.shape[1:]
        focal = 30.0 / 36.0 * W  # 30 mm lens on a 36 mm sensor, as released (213.33 at 256 px)
        np.testing.assert_allclose(release["K"], [[focal, 0, W / 2], [0, focal, H / 2], [0, 0, 1]])
        assert len(release["poses"]) == scene.n_views
        for pose, w2c in zip(release["poses"], scene.world_to_camera, strict=True):
            assert pose.shape == (4, 4)
            np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
            rotation = pose[:3, :3]
            np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-9)
            assert np.linalg.det(rotation) > 0
            np.testing.assert_allclose(pose, w2c)
            # OpenCV axes: the camera's +z looks down at the floor and +y points down in the image
            assert rotation[2, 2] < 0 and rotation[1, 2] < 0
            assert (-rotation.T @ pose[:3, 3])[2] > 0


def test_box_centres_project_inside_the_segmentations(export):
    on_mask, pairs, inside, total = 0, 0, 0, 0
    for folder in (export / name for names in read_split_file(export).values() for name in names):
        release = read_release_scene(folder)
        for v, P in enumerate(release["projections"]):
            for obj, box in zip(release["meta"]["objects"], release["boxes"], strict=True):
                mask = segmentation(folder, obj["name"], v)
                if not mask.any():
                    continue
                u, w, depth = project(P, box[:3])
                rows, cols = np.nonzero(mask)
                assert depth > 0
                assert cols.min() <= u <= cols.max() + 1 and rows.min() <= w <= rows.max() + 1
                on_mask += bool(mask[int(w), int(u)])
                pairs += 1
                # bbox = [location, dimensions]: the box of the dimensions, posed like the object, holds its pixels
                rotation = np.array(obj["rotation_matrix"])[:3, :3] / np.array(obj["scale"])
                euler = obj["rotation_euler"]
                np.testing.assert_allclose(rotation, rotation_xyz(*euler), atol=1e-6)
                np.testing.assert_allclose(box[:3], np.array(obj["rotation_matrix"])[:3, 3])
                corners = [box[:3] + rotation @ (box[3:] / 2 * np.array(s)) for s in itertools.product((-1, 1),
                                                                                                       repeat=3)]
                uv = np.array([project(P, c)[:2] for c in corners])
                u_pix, v_pix = cols + 0.5, rows + 0.5
                inside += int(((u_pix >= uv[:, 0].min()) & (u_pix <= uv[:, 0].max()) & (v_pix >= uv[:, 1].min())
                               & (v_pix <= uv[:, 1].max())).sum())
                total += rows.size
    assert pairs > 20
    assert on_mask / pairs >= 0.5  # on the object itself unless the shape is hollow there (a table's centre)
    assert inside / total >= 0.99


def rotation_xyz(x: float, y: float, z: float) -> np.ndarray:
    """Blender's XYZ Euler order: R = Rz @ Ry @ Rx."""
    cx, sx, cy, sy, cz, sz = np.cos(x), np.sin(x), np.cos(y), np.sin(y), np.cos(z), np.sin(z)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def test_depth_files_hold_float32_planar_depth(export_variant, export):
    folder = export / read_split_file(export)["test"][0]
    scene = source_scene(export_variant, folder)
    for v in range(scene.n_views):
        path = folder / "depth_exr" / f"{v:04d}.exr"
        assert exr_channel_types(path) == {"R": 2, "G": 2, "B": 2}
        depth = read_exr(path)
        np.testing.assert_array_equal(depth[..., 0], depth[..., 1])
        surface = scene.depth[v] > 0
        np.testing.assert_array_equal(depth[..., 0][surface], scene.depth[v][surface])
        assert (depth[..., 0][~surface] == BACKGROUND_DEPTH).all()
        png = Image.open(folder / "depth_png" / f"{v:04d}.png")
        scaled = np.array(png)
        assert png.mode.startswith("I;16") and scaled[surface].min() == 0 and scaled[surface].max() == 65535
        order = np.argsort(scene.depth[v][surface])
        assert (np.diff(scaled[surface][order].astype(int)) >= 0).all()


def test_rerun_skips_finished_scenes_and_redoes_a_missing_one(export_variant, export, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(export, out)
    n = sum(len(names) for names in read_split_file(export).values())
    again = ["--format", "ooo", "--variant", str(export_variant), "--out", str(out)]
    assert f"exported 0 scenes (already done {n})" in run_export(*again)
    name = read_split_file(out)["train"][0]
    before = (out / name / "scene3d.metadata.json").read_bytes()
    shutil.rmtree(out / name)
    (out / "left-by-a-killed-run.tmp").mkdir()
    assert f"exported 1 scenes (already done {n - 1})" in run_export(*again)
    assert (out / name / "scene3d.metadata.json").read_bytes() == before
    assert not list(out.glob("*.tmp"))
    refused = CliRunner().invoke(main, ["export", "--format", "mvtec3d", "--variant", str(export_variant),
                                        "--out", str(out)])
    assert refused.exit_code != 0 and "other settings" in refused.output
