"""Export a variant as single-object crops in the MVTec 3D-AD layout (docs/exports.md).

Every visible object in every view becomes one sample: a square crop around its instance mask, resized to a fixed
size, with an organised point cloud (`xyz`, camera frame, metres) back-projected from the rendered depth and, for
test samples, the object's per-pixel anomaly mask (`gt`). Single-object methods (CFM, 3DzAL, M3DM, ...) then train on
normal crops and are tested on anomalous ones.

A scene is finished once `<category>/crops/<scene_id>.json` (what was written and what was skipped, and why) exists;
sample files have names fixed by (scene, object, view), so a rerun overwrites whatever an interrupted scene left.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from generation.cameras import project
from generation.export.common import ExportReport, export_scenes, guard_settings, published_code
from generation.runner import write_json
from generation.scenefile import Scene, box_corners

DEFAULT_CROP_SIZE = 256
CROP_MARGIN = 0.1  # added on each side of the mask's bounding square, as a share of its side
MIN_VISIBLE_SHARE = 0.5  # skip a view where possibly-occluding pixels outnumber the object's visible pixels
MIN_VISIBLE_AREA = 0.002  # ... or where the object covers less than this share of the image
MIN_VISIBLE_PIXELS = 16
# An anomalous crop needs this much visible anomaly, the generator's own visibility rule (scene_task.py).
MIN_ANOMALY_AREA, MIN_ANOMALY_PIXELS = 2e-4, 3
PNG_COMPRESS_LEVEL = 1  # renders barely compress further, and level 6 made PNG encoding most of the export time


def category_folder(category: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", category)


def sample_stem(scene_id: str, object_index: int, view: int) -> str:
    return f"{scene_id}_obj{object_index:02d}_view{view:02d}"


def is_test_split(split: str) -> bool:
    """The release loaders' rule: a split whose name contains `test` is evaluated, any other is trained on."""
    return "test" in split


def camera_xyz(depth: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(H, W, 3) camera-frame points of the pixel centres at their planar depth; 0 where depth is 0."""
    height, width = depth.shape
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(K).T  # camera-frame z = 1
    return (rays * depth[..., None]).astype(np.float32)


def visible_share(scene: Scene, view: int, i: int) -> tuple[int, float]:
    """Visible pixels of object i and a lower bound of its unoccluded share: any other object seen inside its
    projected box and nearer than the box's far corner is counted as hiding object i."""
    instance, depth = scene.instance[view], scene.depth[view]
    visible = int((instance == i + 1).sum())
    uv, z = project(scene.intrinsics[view], scene.world_to_camera[view],
                    box_corners(scene.mesh_box_min[i], scene.mesh_box_max[i]))
    height, width = instance.shape
    u0, v0 = np.clip(np.floor(uv.min(axis=0)).astype(int), 0, [width, height])
    u1, v1 = np.clip(np.ceil(uv.max(axis=0)).astype(int), 0, [width, height])
    window_ids, window_depth = instance[v0:v1, u0:u1], depth[v0:v1, u0:u1]
    hiding = int(((window_ids > 0) & (window_ids != i + 1) & (window_depth < z.max())).sum())
    return visible, visible / max(visible + hiding, 1)


def crop_square(mask: np.ndarray) -> tuple[int, int, int]:
    """(x0, y0, side) in source pixels: the mask's bounding square plus the margin; may extend past the image."""
    rows, cols = np.nonzero(mask)
    y_low, y_high, x_low, x_high = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    side = int(np.ceil(max(y_high - y_low, x_high - x_low) * (1 + 2 * CROP_MARGIN)))
    x0 = int(np.floor((x_low + x_high - side) / 2))
    y0 = int(np.floor((y_low + y_high - side) / 2))
    return x0, y0, side


def source_indices(start: int, side: int, size: int, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Source pixel of each output pixel (nearest, by pixel centres) and whether it lies inside the image."""
    index = start + np.floor((np.arange(size) + 0.5) * side / size).astype(int)
    return np.clip(index, 0, limit - 1), (index >= 0) & (index < limit)


def resample_nearest(image: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """Crop and resize without mixing values (points stay on the surface, masks stay binary); 0 outside."""
    x0, y0, side = box
    cols, cols_inside = source_indices(x0, side, size, image.shape[1])
    rows, rows_inside = source_indices(y0, side, size, image.shape[0])
    out = image[rows[:, None], cols[None, :]]
    out[~(rows_inside[:, None] & cols_inside[None, :])] = 0
    return out


def resample_rgb(rgb: np.ndarray, box: tuple[int, int, int], size: int) -> Image.Image:
    """Bilinear crop and resize of the photo; the area outside the image is black."""
    x0, y0, side = box
    height, width = rgb.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    padded = Image.fromarray(np.pad(rgb, ((pad, pad), (pad, pad), (0, 0))))
    return padded.resize((size, size), Image.BILINEAR, box=(x0 + pad, y0 + pad, x0 + pad + side, y0 + pad + side))


def crop_intrinsics(K: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """K of the crop: the crop is a shift and a uniform scale of pixel coordinates."""
    x0, y0, side = box
    scale = size / side
    return np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale], [0, 0, 1]]) @ K


def sample_folder(split: str, label: int, anomaly_type: str) -> str | None:
    """Where an object goes: train normals -> train/good, test normals -> test/good, test anomalies ->
    test/<code>; anomalous objects of training scenes are left out, so training sees no anomaly."""
    if not is_test_split(split):
        return None if label else "train/good"
    return f"test/{published_code(anomaly_type)}" if label else "test/good"


def write_sample(root: Path, folder: str, stem: str, rgb: Image.Image, xyz: np.ndarray, gt: np.ndarray) -> None:
    base = root / folder
    rgb.save(base / "rgb" / f"{stem}.png", compress_level=PNG_COMPRESS_LEVEL)
    tifffile.imwrite(base / "xyz" / f"{stem}.tiff", xyz)
    if folder.startswith("test/"):
        Image.fromarray(np.where(gt, 255, 0).astype(np.uint8), mode="L").save(base / "gt" / f"{stem}.png",
                                                                              compress_level=PNG_COMPRESS_LEVEL)


def export_scene_crops(scene: Scene, out: Path, size: int) -> None:
    root = out / category_folder(scene.categories[0])
    height, width = scene.instance.shape[1:]
    min_visible = max(MIN_VISIBLE_PIXELS, int(MIN_VISIBLE_AREA * height * width))
    min_anomaly = max(MIN_ANOMALY_PIXELS, int(MIN_ANOMALY_AREA * height * width))
    folders = {i: folder for i in range(scene.n_objects)
               if (folder := sample_folder(scene.split, int(scene.labels[i]), scene.anomaly_types[i]))}
    for folder in set(folders.values()):
        for sub in ("rgb", "xyz", "gt") if folder.startswith("test/") else ("rgb", "xyz"):
            (root / folder / sub).mkdir(parents=True, exist_ok=True)
    written, skipped = [], []
    for v in range(scene.n_views):
        instance, depth = scene.instance[v], scene.depth[v]
        view_xyz = camera_xyz(depth, scene.intrinsics[v])
        floor = (instance == 0) & (depth > 0)
        for i, folder in folders.items():
            record = {"object": i, "view": v, "stem": sample_stem(scene.scene_id, i, v)}
            mask = instance == i + 1
            visible, share = visible_share(scene, v, i)
            anomaly = mask & (scene.anomaly[v] > 0)
            if visible < min_visible or share < MIN_VISIBLE_SHARE:
                reason = "too small" if visible < min_visible else "mostly occluded"
                skipped.append({**record, "reason": reason, "visible_pixels": visible, "visible_share": share})
                continue
            if scene.labels[i] and anomaly.sum() < min_anomaly:
                skipped.append({**record, "reason": "anomaly not visible in this view",
                                "anomaly_pixels": int(anomaly.sum())})
                continue
            box = crop_square(mask)
            # the object and the floor keep their points (plane fitting needs the floor); other objects are zeroed
            xyz = np.where((mask | floor)[..., None], view_xyz, np.float32(0))
            write_sample(root, folder, record["stem"], resample_rgb(scene.rgb[v], box, size),
                         resample_nearest(xyz, box, size), resample_nearest(anomaly, box, size))
            written.append({**record, "folder": folder, "crop_box_xy_side": list(box), "visible_pixels": visible,
                            "visible_share": share, "crop_K": crop_intrinsics(scene.intrinsics[v], box, size).tolist(),
                            "world_to_camera": scene.world_to_camera[v].tolist()})
    (root / "crops").mkdir(parents=True, exist_ok=True)
    write_json(root / "crops" / f"{scene.scene_id}.json", {
        "scene_id": scene.scene_id, "split": scene.split, "shape_id": scene.source_ids[0],
        "labels": scene.labels.tolist(), "anomaly_types": scene.anomaly_types, "written": written,
        "skipped": skipped,
    })


def export_mvtec3d(variant: Path, out: Path, size: int = DEFAULT_CROP_SIZE, progress: bool = True) -> ExportReport:
    """Write (or resume) per-category MVTec 3D-AD folders of object crops of `variant` under `out`."""
    variant, out = Path(variant), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    settings = {"format": "mvtec3d", "size": size, "margin": CROP_MARGIN, "min_visible_share": MIN_VISIBLE_SHARE,
                "min_visible_area": MIN_VISIBLE_AREA, "min_visible_pixels": MIN_VISIBLE_PIXELS,
                "min_anomaly_area": MIN_ANOMALY_AREA, "min_anomaly_pixels": MIN_ANOMALY_PIXELS}
    guard_settings(out, variant, settings)

    def marker(scene: Scene) -> Path:
        return out / category_folder(scene.categories[0]) / "crops" / f"{scene.scene_id}.json"

    return export_scenes(variant, marker, lambda scene: export_scene_crops(scene, out, size), out,
                         "export mvtec3d", progress)
