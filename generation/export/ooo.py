"""Export a variant in the layout of the published ToysAD-8K / PartsAD-15K release (docs/exports.md).

Loaders written for that release read the result unchanged, so the release's conventions are kept on purpose,
including its inverted `anomaly_labels` field and labels carried by `-<code>-<k>` tags in object file names.
Each scene folder is written under `<name>.tmp` and renamed when complete: a folder that exists is finished.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from generation.export.common import ExportReport, export_scenes, guard_settings, published_code
from generation.runner import write_json
from generation.scenefile import Scene

BACKGROUND_DEPTH = 1e10  # what the release's depth_exr holds where no surface is hit
SEGMENTATION_GREY = 205  # object pixels of the release's segmentation PNGs (its loaders threshold at 127)
FLOOR_NAME = "floor"  # the floor's Blender object name in our scenes
PREVIEW_VIEWS = 5  # scene.jpg: views 0, 4, 8, 12, 16 of 20, spread the same way over other view counts
EXR_SCENE = "oddbench_exr_writer"


def object_name(i: int) -> str:
    """The Blender object name the generator gave object i."""
    return f"object_{i:02d}"


def release_id(shape_id: str) -> str:
    """A shape id without '-', which the release reserves for the anomaly tag (loaders test `'-' in name`)."""
    return shape_id.replace("-", "_")


def scene_folder_name(shape_id: str, scene_index: int) -> str:
    """`<shape id>-<NNN>` as the release's Toys folders (`banana_028-001`); NNN is our scene index, so unique."""
    return f"{release_id(shape_id)}-{scene_index:03d}"


def object_paths(scene: Scene) -> list[str]:
    """Virtual source paths: normal copies `<shape>.obj`, anomalous ones `<shape>-<code>-<k>.obj` (k per code)."""
    shape, category = release_id(scene.source_ids[0]), scene.categories[0]
    counts: dict[str, int] = {}
    paths = []
    for label, anomaly_type in zip(scene.labels, scene.anomaly_types, strict=True):
        stem = shape
        if label:
            code = published_code(anomaly_type)
            counts[code] = counts.get(code, 0) + 1
            stem = f"{shape}-{code}-{counts[code]:03d}"
        paths.append(f"{category}/{shape}/{stem}.obj")
    return paths


def euler_xyz(rotation: np.ndarray) -> list[float]:
    """Blender's 'XYZ' Euler angles (R = Rz @ Ry @ Rx) of a rotation matrix."""
    y = float(np.arcsin(np.clip(-rotation[2, 0], -1.0, 1.0)))
    if abs(np.cos(y)) > 1e-6:
        return [float(np.arctan2(rotation[2, 1], rotation[2, 2])), y, float(np.arctan2(rotation[1, 0], rotation[0, 0]))]
    return [float(np.arctan2(-rotation[1, 2], rotation[1, 1])), y, 0.0]


def scene3d_metadata(scene: Scene) -> dict:
    """Objects as Blender reports them (matrix_world, location, Euler, scale, dimensions) and OpenCV cameras."""
    objects = []
    for i, path in enumerate(object_paths(scene)):
        matrix = scene.object_to_world[i]
        scale = np.linalg.norm(matrix[:3, :3], axis=0)
        location = matrix[:3, 3].tolist()
        objects.append({
            "name": object_name(i),
            "path": path,
            "rotation_matrix": matrix.tolist(),
            "rotation_euler": euler_xyz(matrix[:3, :3] / scale),
            "location": location,
            "scale": scale.tolist(),
            "bbox": [location, scene.local_extents[i].tolist()],
        })
    background = scene.attrs.get("background", {})
    floor, environment = background.get("floor", {}), background.get("environment", {})
    return {
        "objects": objects,
        "camera": {
            "K": shared_intrinsics(scene).tolist(),
            "poses": [{"rotation": w2c.tolist()} for w2c in scene.world_to_camera],
        },
        "scene": {
            "floor_pbr": floor.get("path") or f"procedural:{floor.get('family')}",
            "background_hdr": environment.get("path"),
            "floor": floor,
            "environment": environment,
        },
        "source": scene.attrs.get("shape", {}),
    }


def shared_intrinsics(scene: Scene) -> np.ndarray:
    """The release has one `camera.K` per scene; refuse scenes whose views differ."""
    K = scene.intrinsics[0]
    if not np.allclose(scene.intrinsics, K[None]):
        raise ValueError(f"{scene.scene_id}: views have different intrinsics; the release layout holds one K")
    return K


def pixel_box(mask: np.ndarray) -> list[int] | None:
    """[x_min, y_min, x_max, y_max] in pixel-corner coordinates (max exclusive), None when nothing is visible."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    return [int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1]


def scene2d_metadata(scene: Scene) -> dict:
    boxes = {}
    for v in range(scene.n_views):
        in_view = {object_name(i): pixel_box(scene.instance[v] == i + 1) for i in np.flatnonzero(scene.labels)}
        boxes[f"{v:04d}"] = {name: box for name, box in in_view.items() if box is not None}
    return {
        "blend_paths": object_paths(scene),
        "anomaly_labels": [int(1 - label) for label in scene.labels],
        "anomaly_labels_convention": "inverted as in the published release: 1 = normal, 0 = anomalous",
        "anomalous_boxes_2d": boxes,
        "anomalous_boxes_2d_convention": "per view, per anomalous object: tight box of its visible pixels, "
                                         "[x_min, y_min, x_max, y_max], pixel corners, max exclusive",
    }


def depth_png(depth: np.ndarray) -> np.ndarray:
    """uint16, min-max normalised over the surface pixels; no surface maps to 65535 (far), as Blender's Normalize."""
    surface = depth > 0
    out = np.full(depth.shape, 65535, np.uint16)
    if surface.any():
        low, high = depth[surface].min(), depth[surface].max()
        out[surface] = np.round((depth[surface] - low) / max(high - low, 1e-12) * 65535).astype(np.uint16)
    return out


def write_depth_exr(path: Path, depth: np.ndarray) -> None:
    """Float32 EXR with R = G = B = planar depth. Saved through a scene's render settings: `Image.save` on a
    float image does not round-trip the values, `save_render` with OPEN_EXR / 32 bit does (checked in tests)."""
    import bpy

    scene = bpy.data.scenes.get(EXR_SCENE) or bpy.data.scenes.new(EXR_SCENE)
    settings = scene.render.image_settings
    settings.file_format, settings.color_depth, settings.color_mode, settings.exr_codec = "OPEN_EXR", "32", "RGB", "ZIP"
    height, width = depth.shape
    image = bpy.data.images.new(EXR_SCENE, width, height, float_buffer=True, alpha=False)
    try:
        rgba = np.ones((height, width, 4), np.float32)
        rgba[..., :3] = depth[..., None]
        image.pixels.foreach_set(np.flipud(rgba).ravel())  # Blender stores rows bottom-up
        image.save_render(str(path), scene=scene)
    finally:
        bpy.data.images.remove(image)


def grey_rgba(mask: np.ndarray, value: int) -> Image.Image:
    grey = np.where(mask, value, 0).astype(np.uint8)
    return Image.fromarray(np.dstack([grey, grey, grey, np.full_like(grey, 255)]), mode="RGBA")


def binary_png(mask: np.ndarray) -> Image.Image:
    return Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L")


def preview_views(n_views: int) -> np.ndarray:
    return np.unique(np.linspace(0, n_views, PREVIEW_VIEWS, endpoint=False).astype(int))


def write_scene_folder(scene: Scene, folder: Path) -> None:
    names = [object_name(i) for i in range(scene.n_objects)]
    for sub in ("RGB", "depth_exr", "depth_png", "binary_labels", "masks", "anomaly_masks"):
        (folder / sub).mkdir(parents=True)
    for name in [*names, FLOOR_NAME]:
        (folder / "segmentations" / name).mkdir(parents=True)
    anomalous_ids = np.flatnonzero(scene.labels) + 1
    for v in range(scene.n_views):
        stem = f"{v:04d}"
        instance, depth = scene.instance[v], scene.depth[v]
        rgb = scene.rgb[v]
        Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), mode="RGBA").save(
            folder / "RGB" / f"{stem}.png")
        write_depth_exr(folder / "depth_exr" / f"{stem}.exr",
                        np.where(depth > 0, depth, BACKGROUND_DEPTH).astype(np.float32))
        Image.fromarray(depth_png(depth)).save(folder / "depth_png" / f"{stem}.png")
        for i, name in enumerate(names):
            grey_rgba(instance == i + 1, SEGMENTATION_GREY).save(
                folder / "segmentations" / name / f"{name}_{stem}.png")
        grey_rgba((instance == 0) & (depth > 0), SEGMENTATION_GREY).save(
            folder / "segmentations" / FLOOR_NAME / f"{FLOOR_NAME}_{stem}.png")
        binary_png(np.isin(instance, anomalous_ids)).save(folder / "binary_labels" / f"{stem}.png")
        binary_png(instance > 0).save(folder / "masks" / f"{stem}.png")
        binary_png(scene.anomaly[v] > 0).save(folder / "anomaly_masks" / f"{stem}.png")
    Image.fromarray(np.concatenate(list(scene.rgb[preview_views(scene.n_views)]), axis=1)).save(
        folder / "scene.jpg", quality=90)
    write_json(folder / "scene3d.metadata.json", scene3d_metadata(scene))
    write_json(folder / "scene2d.metadata.json", scene2d_metadata(scene))


def export_ooo(variant: Path, out: Path, progress: bool = True) -> ExportReport:
    """Write (or resume) the release layout of `variant` under `out`; `splits.json` lists the finished scenes."""
    variant, out = Path(variant), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    guard_settings(out, variant, {"format": "ooo"})
    for partial in out.glob("*.tmp"):
        shutil.rmtree(partial)

    def folder_of(scene: Scene) -> Path:
        return out / scene_folder_name(scene.source_ids[0], scene.scene_index)

    def export_one(scene: Scene) -> None:
        folder = folder_of(scene)
        partial = folder.with_name(folder.name + ".tmp")
        write_scene_folder(scene, partial)
        os.replace(partial, folder)

    report = export_scenes(variant, folder_of, export_one, out, "export ooo", progress)
    splits: dict[str, list[str]] = {}
    for row in report.scenes:
        splits.setdefault(row.split, []).append(scene_folder_name(row.shape_id, row.scene_index))
    write_json(out / "splits.json", {split: sorted(names) for split, names in sorted(splits.items())})
    return report
