"""One scene = one seeded, independent task: plan, build, drop, render, ground truth, write.

Runs inside a worker process that owns a Blender session; the Blender state is reset at the start of every
attempt, so nothing leaks from one scene into the next.
"""

from __future__ import annotations

import resource
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from generation import cameras, layout
from generation.anomalies import AnomalyRejected
from generation.bank import AnomalyBank
from generation.config import GenerationConfig
from generation.preview import write_preview
from generation.scenefile import Scene, box_corners, write_scene
from generation.shape_index import SimilarShapes
from generation.shapes.sources import ShapeSource
from generation.shapes.types import Shape, ShapeError

# independent random streams of one attempt
STREAM_PLAN, STREAM_ANOMALY, STREAM_LAYOUT, STREAM_BACKGROUND, STREAM_CAMERAS = range(5)


class SceneRejected(Exception):
    """This attempt failed a check; the reason is recorded and the scene is re-sampled."""


@dataclass
class SceneOutcome:
    scene_id: str
    status: str  # done | rejected
    split: str = ""
    reasons: list[str] | None = None
    render_seconds: float = 0.0
    scene_seconds: float = 0.0
    n_views: int = 0
    n_objects: int = 0
    n_anomalous: int = 0
    worker_peak_rss_mb: float = 0.0  # of the worker process so far: shows whether memory creeps up


def scene_id(index: int) -> str:
    return f"scene_{index:06d}"


def versions() -> dict:
    import bpy

    names = ["oddbench", "numpy", "trimesh", "manifold3d", "open3d", "h5py"]
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["blender"] = bpy.app.version_string
    return found


def generate_scene(
    config: GenerationConfig,
    index: int,
    out_dir: Path,
    source: ShapeSource,
    pools: dict[str, list[str]],
    threads: int = 0,
    similar: SimilarShapes | None = None,
    on_view: Callable[[], None] | None = None,
) -> SceneOutcome:
    """Try up to `scene.max_attempts` times; write the scene file (and preview) or return the reasons.
    `on_view` is called after each rendered view (progress reporting)."""
    sid = scene_id(index)
    reasons = []
    bank = AnomalyBank(out_dir / "bank", config.seed, config.anomalies.params, similar)
    for attempt in range(config.scene.max_attempts):
        start = time.perf_counter()
        workdir = out_dir / ".work" / sid
        try:
            staged = stage_scene(config, index, attempt, source, pools, bank)
            scene, render_seconds = _render(config, staged, workdir, threads, on_view)
        except (SceneRejected, AnomalyRejected, ShapeError) as err:
            reasons.append(f"attempt {attempt}: {err}")
            continue
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        scene.attrs["generation"]["rejected_attempts"] = reasons
        write_preview(out_dir / "previews" / f"{sid}.jpg", scene)
        write_scene(out_dir / "scenes" / f"{sid}.h5", scene)
        return SceneOutcome(
            sid, "done", scene.split, reasons, float(sum(render_seconds)), time.perf_counter() - start,
            scene.n_views, scene.n_objects, int(scene.labels.sum()),
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        )
    return SceneOutcome(sid, "rejected", reasons=reasons)


@dataclass
class StagedScene:
    """One attempt at a scene, built in the Blender session and checked, up to the Cycles render: what the
    render step needs, and what the render benchmark re-renders at other quality settings."""

    index: int
    attempt: int
    plan: layout.ScenePlan
    normal: Shape
    shapes: list[Shape]
    params: list[dict]
    camera: object  # the Blender camera object
    world_to_camera: np.ndarray
    intrinsics: np.ndarray
    truth: dict[str, np.ndarray]
    labels: np.ndarray
    poses: list[np.ndarray]
    box_min: np.ndarray  # the normal counterpart's box at each object's pose: no label cue
    box_max: np.ndarray
    mesh_box_min: np.ndarray  # the tight box of each mesh as rendered
    mesh_box_max: np.ndarray
    local_extents: np.ndarray
    records: dict  # background, physics and camera records for the scene file


def stage_scene(cfg: GenerationConfig, index: int, attempt: int, source: ShapeSource, pools: dict[str, list[str]],
                bank: AnomalyBank) -> StagedScene:
    """Plan, build, drop and check one attempt; raises SceneRejected (or a shape/anomaly error) when a check
    fails. Leaves the Blender session holding the finished scene and its camera."""
    import bpy

    from generation.blender import backgrounds, objects, physics, render

    plan = layout.plan_scene(cfg, index, attempt, pools)
    normal = source.load(plan.shape_id)
    shapes, faces, params = _variants(normal, plan.anomaly_types, layout.scene_rng(cfg.seed, index, attempt,
                                                                                   STREAM_ANOMALY),
                                      bank, cfg.anomalies.variants_per_shape)
    footprint = max(_xy_radius(s) for s in shapes) * plan.scale
    xy = layout.place_footprints(layout.scene_rng(cfg.seed, index, attempt, STREAM_LAYOUT),
                                 np.full(plan.n_objects, footprint), cfg.scene.min_gap)

    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.data.orphans_purge(do_recursive=True)
    background_rng = layout.scene_rng(cfg.seed, index, attempt, STREAM_BACKGROUND)
    floor = backgrounds.add_floor(background_rng, family=_pick(background_rng, cfg.background.floor_families),
                                  texture_dir=cfg.background.texture_dir or None)
    environment = backgrounds.add_environment(background_rng, hdri_dir=cfg.background.hdri_dir or None,
                                              strength=tuple(cfg.background.hdri_strength))
    blender_objects = []
    for i, shape in enumerate(shapes):
        obj = objects.add_shape_object(f"object_{i:02d}", shape, plan.scale)
        vertices = np.asarray(shape.merged()[0].vertices) * plan.scale
        rotation = _yaw_matrix(plan.yaw[i])
        lowest = (vertices @ rotation[:3, :3].T)[:, 2].min()
        pose = rotation @ np.diag([plan.scale] * 3 + [1.0])
        pose[:3, 3] = [xy[i, 0], xy[i, 1], cfg.scene.drop_height - lowest]
        objects.set_pose(obj, pose)
        blender_objects.append(obj)
    drop = physics.simulate_drop(blender_objects)
    if not drop["settled"]:
        raise SceneRejected("objects did not come to rest")

    meshes, poses = [], []
    for obj, shape in zip(blender_objects, shapes, strict=True):
        pose = objects.world_matrix(obj)
        merged = shape.merged()[0]
        world = np.asarray(merged.vertices) @ pose[:3, :3].T + pose[:3, 3]
        pose[2, 3] -= world[:, 2].min()  # remove the solver's contact margin: objects sit on z = 0
        world[:, 2] -= world[:, 2].min()
        objects.set_pose(obj, pose)
        meshes.append((world, np.asarray(merged.faces)))
        poses.append(pose)
    _check_apart(meshes, cfg.scene.min_gap / 4)

    mesh_min = np.stack([m[0].min(axis=0) for m in meshes])
    mesh_max = np.stack([m[0].max(axis=0) for m in meshes])
    # the box of every object is its normal counterpart's at the same pose: box size and centre carry no label
    normal_vertices = np.asarray(normal.merged()[0].vertices)
    normal_world = [normal_vertices @ pose[:3, :3].T + pose[:3, 3] for pose in poses]
    box_min = np.stack([w.min(axis=0) for w in normal_world])
    box_max = np.stack([w.max(axis=0) for w in normal_world])
    cam = cfg.cameras
    K = cameras.intrinsics(cam.width, cam.height, cam.focal_mm, cam.sensor_mm)
    target = np.append((box_min[:, :2] + box_max[:, :2]).mean(axis=0) / 2, (box_max[:, 2]).mean() / 2)
    corners = np.concatenate([box_corners(lo, hi) for lo, hi in zip(np.concatenate([box_min, mesh_min]),
                                                                     np.concatenate([box_max, mesh_max]), strict=True)])
    w2c, orbit = cameras.orbit_views(layout.scene_rng(cfg.seed, index, attempt, STREAM_CAMERAS), cam.views,
                                     target, cam.radius, cam.elevation_deg, K, cam.width, cam.height,
                                     corners, cam.margin_px)
    intrinsics = np.repeat(K[None], cam.views, axis=0)

    from generation.groundtruth import cast_ground_truth

    truth = cast_ground_truth(meshes, faces, intrinsics, w2c, cam.width, cam.height)
    labels = np.array([t != "none" for t in plan.anomaly_types], dtype=np.int8)
    min_pixels = max(3, int(2e-4 * cam.width * cam.height))
    for i in np.flatnonzero(labels):
        visible = ((truth["anomaly"] == 1) & (truth["instance"] == i + 1)).sum(axis=(1, 2))
        if visible.max() < min_pixels:
            raise SceneRejected(f"the {plan.anomaly_types[i]} anomaly of object {i} is not visible in any view")

    camera = render.add_camera(K, cam.width, cam.height, cam.sensor_mm)
    return StagedScene(
        index=index, attempt=attempt, plan=plan, normal=normal, shapes=shapes, params=params, camera=camera,
        world_to_camera=w2c, intrinsics=intrinsics, truth=truth, labels=labels, poses=poses, box_min=box_min,
        box_max=box_max, mesh_box_min=mesh_min, mesh_box_max=mesh_max,
        local_extents=np.repeat(np.ptp(normal_vertices, axis=0)[None] * plan.scale, plan.n_objects, axis=0),
        records={"background": {"floor": floor, "environment": environment},
                 "generation": {"attempt": attempt, "scale": plan.scale, "physics": drop, "cameras": orbit}},
    )


def _render(cfg: GenerationConfig, staged: StagedScene, workdir: Path, threads: int,
            on_view: Callable[[], None] | None) -> tuple[Scene, list[float]]:
    """Render every view of a staged scene with Cycles and assemble the scene record."""
    from generation.blender import render

    cam, plan, index = cfg.cameras, staged.plan, staged.index
    render_settings = render.configure_cycles(cfg.render.preset, cfg.render.device, cfg.render.samples,
                                              seed=render_seed(cfg.seed, index),
                                              threads=threads, width=cam.width, height=cam.height)
    workdir.mkdir(parents=True, exist_ok=True)
    rgb, seconds = render.render_views(staged.camera, staged.world_to_camera, workdir, on_view)
    truth = staged.truth
    scene = Scene(
        scene_id=scene_id(index), split=plan.split, seed=cfg.seed, scene_index=index,
        rgb=rgb, depth=truth["depth"], instance=truth["instance"], anomaly=truth["anomaly"],
        intrinsics=staged.intrinsics, world_to_camera=staged.world_to_camera, labels=staged.labels,
        anomaly_types=list(plan.anomaly_types), source_ids=[staged.normal.shape_id] * plan.n_objects,
        categories=[staged.normal.category] * plan.n_objects, object_to_world=np.stack(staged.poses),
        box_min=staged.box_min, box_max=staged.box_max, mesh_box_min=staged.mesh_box_min,
        mesh_box_max=staged.mesh_box_max, local_extents=staged.local_extents,
        anomaly_params=staged.params,
        attrs={
            "config": cfg.to_dict(),
            "versions": versions(),
            "background": staged.records["background"],
            "render": render_settings,
            "shape": {"shape_id": staged.normal.shape_id, "category": staged.normal.category,
                      "source": staged.normal.source},
            "generation": staged.records["generation"],
        },
    )
    return scene, seconds


def render_seed(seed: int, index: int) -> int:
    """Cycles' sampling seed of a scene: fixed by (seed, index), so a rerun renders the same pixels."""
    return int(layout.unit_hash(f"{seed}/{index}") * 2**31)


def _variants(normal: Shape, types: list[str], rng: np.random.Generator, bank: AnomalyBank, per_shape: int):
    """The normal shape for normal copies; for an anomalous copy one of the shape's `per_shape` banked variants,
    a different one for each copy of the same type while the bank has enough (odd objects need not be twins)."""
    shapes, faces, params = [], [], []
    used: dict[str, set[int]] = {}
    for anomaly_type in types:
        if anomaly_type == "none":
            shapes.append(normal)
            faces.append(None)
            params.append({})
            continue
        taken = used.setdefault(anomaly_type, set())
        free = [k for k in range(per_shape) if k not in taken] or list(range(per_shape))
        k = free[int(rng.integers(len(free)))]
        taken.add(k)
        result = bank.get(normal, anomaly_type, k)
        shapes.append(result.shape)
        faces.append(result.anomalous_faces)
        params.append({**result.params, "variant": bank.path(normal.shape_id, anomaly_type, k).stem})
    return shapes, faces, params


def _pick(rng: np.random.Generator, choices: list[str]) -> str | None:
    return choices[rng.integers(len(choices))] if choices else None


def _xy_radius(shape: Shape) -> float:
    vertices = np.asarray(shape.merged()[0].vertices)
    return float(np.linalg.norm(vertices[:, :2], axis=1).max())


def _yaw_matrix(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    matrix = np.eye(4)
    matrix[:2, :2] = [[c, -s], [s, c]]
    return matrix


def _check_apart(meshes: list[tuple[np.ndarray, np.ndarray]], min_distance: float) -> None:
    """Reject layouts where objects touch after the drop (compared on each other's surfaces)."""
    from generation.open3d_import import open3d as o3d

    for i, (vi, fi) in enumerate(meshes):
        scene = o3d.t.geometry.RaycastingScene()
        scene.add_triangles(o3d.core.Tensor(vi.astype(np.float32)), o3d.core.Tensor(fi.astype(np.uint32)))
        for j, (vj, _) in enumerate(meshes):
            if j == i:
                continue
            lo, hi = vi.min(axis=0), vi.max(axis=0)
            gap = np.maximum(0, np.maximum(lo - vj.max(axis=0), vj.min(axis=0) - hi))
            if np.linalg.norm(gap) > min_distance:
                continue
            distance = scene.compute_distance(o3d.core.Tensor(vj.astype(np.float32))).numpy().min()
            if distance < min_distance:
                raise SceneRejected(f"objects {i} and {j} touch after the drop ({distance * 1000:.1f} mm apart)")
