"""`validate`: check a generated variant against the scene contract (docs/scene-format.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from generation.cameras import project
from generation.safefiles import inside
from generation.scenefile import Scene, box_corners, read_scene

MIN_MASK_IN_BOX = 0.99  # pooled share of instance pixels inside their projected box rectangle


@dataclass
class BoxStats:
    """Pooled over objects and views: how many instance pixels fall inside the projected 3D box."""

    inside: int = 0
    total: int = 0

    @property
    def share(self) -> float:
        return self.inside / self.total if self.total else 1.0


@dataclass
class ValidationReport:
    scenes: int = 0
    problems: list[str] = field(default_factory=list)
    boxes: BoxStats = field(default_factory=BoxStats)
    without_checksums: int = 0  # scenes of schema version 1, written before checksums were recorded

    @property
    def ok(self) -> bool:
        return not self.problems and self.boxes.share >= MIN_MASK_IN_BOX


def check_scene(scene: Scene, expected_views: int | None, boxes: BoxStats) -> list[str]:
    """Problems with one scene (empty list when it satisfies the contract); accumulates box statistics."""
    sid, problems = scene.scene_id, []
    V, H, W = scene.instance.shape
    if expected_views is not None and expected_views != V:
        problems.append(f"{sid}: {V} views, config asks for {expected_views}")
    for name, array in (("rgb", scene.rgb[..., 0]), ("depth", scene.depth), ("anomaly", scene.anomaly)):
        if array.shape != (V, H, W):
            problems.append(f"{sid}: views/{name} has shape {array.shape}, expected {(V, H, W)}")
    if scene.intrinsics.shape != (V, 3, 3) or scene.world_to_camera.shape != (V, 4, 4):
        problems.append(f"{sid}: camera arrays do not match {V} views")
        return problems
    n, n_anomalous = scene.n_objects, int(scene.labels.sum())
    if not 2 * n_anomalous < n:
        problems.append(f"{sid}: {n_anomalous} of {n} objects anomalous, not a strict minority")
    for i in range(n):
        is_anomalous = bool(scene.labels[i])
        if is_anomalous == (scene.anomaly_types[i] == "none"):
            problems.append(f"{sid}: object {i} label {scene.labels[i]} contradicts type {scene.anomaly_types[i]}")
    if scene.instance.max() > n:
        problems.append(f"{sid}: instance id {scene.instance.max()} but only {n} objects")
    anomalous_ids = np.flatnonzero(scene.labels) + 1
    on_anomalous = np.isin(scene.instance, anomalous_ids)
    if np.any(scene.anomaly.astype(bool) & ~on_anomalous):
        problems.append(f"{sid}: anomaly mask pixels outside the anomalous objects")
    for i in np.flatnonzero(scene.labels):
        if not np.any(scene.anomaly.astype(bool) & (scene.instance == i + 1)):
            problems.append(f"{sid}: anomalous object {i} has no anomaly pixel in any view")
    if np.any(scene.depth[scene.instance > 0] <= 0):
        problems.append(f"{sid}: object pixels without a positive depth")
    normal = scene.labels == 0
    if not (np.allclose(scene.box_min[normal], scene.mesh_box_min[normal], atol=1e-6)
            and np.allclose(scene.box_max[normal], scene.mesh_box_max[normal], atol=1e-6)):
        problems.append(f"{sid}: a normal object's box differs from the box of its mesh")
    rotation = scene.world_to_camera[:, :3, :3]
    if not np.allclose(rotation @ rotation.transpose(0, 2, 1), np.eye(3), atol=1e-6):
        problems.append(f"{sid}: world_to_camera rotations are not orthonormal")
    for v in range(V):
        for i in range(n):
            uv, z = project(scene.intrinsics[v], scene.world_to_camera[v],
                            box_corners(scene.mesh_box_min[i], scene.mesh_box_max[i]))
            if np.any(z <= 0):
                problems.append(f"{sid}: view {v}: box of object {i} is behind the camera")
                continue
            if uv.min() < 0 or uv[:, 0].max() > W or uv[:, 1].max() > H:
                problems.append(f"{sid}: view {v}: box of object {i} projects outside the image")
            rows, cols = np.nonzero(scene.instance[v] == i + 1)
            u, vv = cols + 0.5, rows + 0.5
            inside = (u >= uv[:, 0].min()) & (u <= uv[:, 0].max()) & (vv >= uv[:, 1].min()) & (vv <= uv[:, 1].max())
            boxes.inside += int(inside.sum())
            boxes.total += int(inside.size)
    return problems


def validate_variant(variant: Path) -> ValidationReport:
    variant = Path(variant)
    report = ValidationReport()
    index_path = variant / "index.json"
    if not index_path.exists():
        report.problems.append(f"{index_path}: missing (run `python -m generation index {variant}`)")
        return report
    try:
        index = json.loads(index_path.read_text())
    except json.JSONDecodeError as err:
        report.problems.append(f"{index_path}: not valid JSON ({err})")
        return report
    expected_views = index.get("config", {}).get("cameras", {}).get("views")
    for row in index["scenes"]:
        try:
            path = inside(variant, row.get("file"), index_path)
        except ValueError as err:
            report.problems.append(str(err))
            continue
        try:
            scene = read_scene(path)
        except (ValueError, OSError) as err:  # read_scene names the file and says what is wrong
            report.problems.append(str(err) if str(path) in str(err) else f"{path}: unreadable ({err})")
            continue
        if scene.schema_version < 2:
            report.without_checksums += 1
        if scene.split != row["split"]:
            report.problems.append(f"{path}: split {scene.split!r}, index says {row['split']!r}")
        report.problems.extend(check_scene(scene, expected_views, report.boxes))
        report.scenes += 1
    if report.boxes.share < MIN_MASK_IN_BOX:
        report.problems.append(f"only {report.boxes.share:.2%} of instance pixels inside their projected boxes")
    return report
