"""Anomaly masks against real renders, and the scene factory's visibility check on an anomaly nobody can see."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from generation import cameras
from generation.anomalies import GENERATORS, AnomalyResult, get_generator
from generation.config import load_config
from generation.groundtruth import cast_ground_truth
from generation.scene_task import generate_scene
from generation.shapes.builtin import builtin_shape
from generation.shapes.sources import BuiltinSource

REPO = Path(__file__).resolve().parents[1]
SIZE = 96
SCALE = 0.4
LIFT = 0.3  # metres: the object floats clear of the ground plane the ray caster adds
CHANGED = 0.03  # a pixel changed when a channel moved by more than this (render noise stays below)


def _render(shape, w2c: np.ndarray, K: np.ndarray, workdir: Path) -> np.ndarray:
    """One object under a fixed sun and sky, no floor, direct light only, the same seed every time."""
    import bpy

    from generation.blender import objects, render

    bpy.ops.wm.read_factory_settings(use_empty=True)
    obj = objects.add_shape_object("object", shape, SCALE)
    obj.location = (0.0, 0.0, LIFT)
    world = bpy.data.worlds.new("world")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs["Color"].default_value = (0.5, 0.5, 0.5, 1.0)
    bpy.context.scene.world = world
    sun = bpy.data.objects.new("sun", bpy.data.lights.new("sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (0.6, 0.2, 0.8)
    bpy.context.scene.collection.objects.link(sun)
    render.configure_cycles("draft", "CPU", samples=16, seed=0, threads=2, width=SIZE, height=SIZE)
    bpy.context.scene.cycles.max_bounces = 0  # no colour bleeding onto the neighbouring faces
    camera = render.add_camera(K, SIZE, SIZE)
    rgb, _ = render.render_views(camera, w2c[None], workdir)
    return rgb[0].astype(np.float64) / 255


def _mask(result: AnomalyResult, K: np.ndarray, w2c: np.ndarray) -> np.ndarray:
    merged, _ = result.shape.merged()
    truth = cast_ground_truth([(np.asarray(merged.vertices) * SCALE + [0, 0, LIFT], np.asarray(merged.faces))],
                              [result.anomalous_faces], K[None], w2c[None], SIZE, SIZE)
    return truth["anomaly"][0].astype(bool)


def _best_view(result: AnomalyResult, K: np.ndarray) -> np.ndarray:
    """Of cameras around the object, the one that sees most of the anomalous region."""
    views = []
    for azimuth in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        for elevation in np.deg2rad([15, 45, 70]):
            eye = 0.6 * np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
                                  np.sin(elevation)])
            views.append(cameras.look_at(eye + [0, 0, LIFT], np.array([0, 0, LIFT])))
    return max(views, key=lambda w2c: _mask(result, K, w2c).sum())


@pytest.mark.parametrize(("name", "category"), [("discoloration", "bottle"), ("bump", "mug"),
                                                ("material_swap", "car"), ("patch_added", "duck")])
def test_changed_pixels_lie_inside_the_mask(name, category, tmp_path):
    shape = builtin_shape(category, 0)
    result = get_generator(name).apply(shape, np.random.default_rng(3))
    K = cameras.intrinsics(SIZE, SIZE)
    w2c = _best_view(result, K)
    normal_rgb = _render(shape, w2c, K, tmp_path)
    anomalous_rgb = _render(result.shape, w2c, K, tmp_path)
    mask = _mask(result, K, w2c)
    assert mask.sum() >= 20, "the view should see the anomaly"
    changed = np.abs(normal_rgb - anomalous_rgb).max(axis=2) > CHANGED
    near_mask = ndimage.binary_dilation(mask, iterations=3)  # cast shadows, antialiasing
    assert (changed & ~near_mask).sum() <= 0.02 * changed.sum() + 3, "pixels changed away from the mask"
    assert (changed & mask).sum() > 0.5 * mask.sum(), "most of the mask should look different"


class _UndersideAnomaly:
    """Marks the faces the object stands on: a region no camera above the floor can see."""

    name = "underside"

    def apply(self, shape, rng):
        merged, _ = shape.merged()
        bottom = merged.vertices[:, 2].min()
        faces = (merged.face_normals[:, 2] < -0.9) & (merged.triangles_center[:, 2] < bottom + 1e-3)
        return AnomalyResult(shape, self.name, faces, {})


def _tiny_scene_config(tmp_name: str):
    return load_config(REPO / "assets/configs/demo.toml", [
        "cameras.views=4", "cameras.width=32", "cameras.height=32", "render.samples=2", "scene.objects=[3,3]",
        "scene.normal_scene_fraction=0.0", "scene.max_attempts=2", "split.test_fraction=0.0",
        f"anomalies.weights={{{tmp_name}=1.0}}",
    ])


def test_an_anomaly_facing_away_from_every_camera_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setitem(GENERATORS, "underside", _UndersideAnomaly())
    assert _UndersideAnomaly().apply(builtin_shape("mug", 0), None).anomalous_faces.any()
    outcome = generate_scene(_tiny_scene_config("underside"), 0, tmp_path, BuiltinSource(["mug"], 1),
                             {"train": ["mug_0000"]}, threads=1)
    assert outcome.status == "rejected"
    assert len(outcome.reasons) == 2
    assert all("underside anomaly of object" in r and "not visible in any view" in r for r in outcome.reasons)
    assert not list(tmp_path.glob("scenes/*.h5"))
