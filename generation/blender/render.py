"""Cycles set-up and the per-view render loop: one Blender session renders every view of a scene."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from pathlib import Path

import bpy
import numpy as np
from PIL import Image

from generation.cameras import blender_matrix_world
from generation.config import RENDER_PRESETS


def configure_cycles(preset: str, device: str, samples: int, seed: int, threads: int,
                     width: int, height: int) -> dict:
    """Apply a quality preset; returns the settings actually used (recorded in the scene file)."""
    scene = bpy.context.scene
    settings = dict(RENDER_PRESETS[preset])
    if samples:
        settings["samples"] = samples
    scene.render.engine = "CYCLES"
    scene.cycles.device = _select_device(device)
    scene.cycles.samples = settings["samples"]
    scene.cycles.use_adaptive_sampling = settings["adaptive_threshold"] > 0
    scene.cycles.adaptive_threshold = settings["adaptive_threshold"]
    scene.cycles.max_bounces = settings["max_bounces"]
    scene.cycles.diffuse_bounces = settings["diffuse_bounces"]
    scene.cycles.glossy_bounces = settings["glossy_bounces"]
    scene.cycles.transmission_bounces = settings["max_bounces"]
    # caustic paths (diffuse -> glossy -> light) converge slowly; the fast presets trade them for time (README)
    scene.cycles.caustics_reflective = scene.cycles.caustics_refractive = settings["caustics"]
    scene.cycles.use_denoising = settings["denoise"]
    scene.cycles.denoiser = "OPENIMAGEDENOISE"
    scene.cycles.denoising_input_passes = "RGB_ALBEDO_NORMAL"  # the albedo and normal guides keep edges sharp
    scene.cycles.denoising_prefilter = "ACCURATE"
    scene.cycles.denoising_quality = "HIGH"
    scene.cycles.use_auto_tile, scene.cycles.tile_size = True, 2048  # one tile: these views are small
    scene.cycles.use_light_tree = False  # one HDRI world lights the scene: the tree only pays off for many lights
    scene.cycles.seed = seed % (2**31)
    scene.cycles.use_animated_seed = False
    scene.render.use_persistent_data = True
    scene.render.resolution_x, scene.render.resolution_y = width, height
    scene.render.resolution_percentage = 100
    scene.render.film_transparent = False
    scene.render.threads_mode = "FIXED" if threads else "AUTO"
    if threads:
        scene.render.threads = threads
    scene.view_settings.view_transform = "Standard"
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGB"
    scene.render.image_settings.color_depth = "8"
    # not the thread count: the pixels do not depend on it, so a scene has the same bytes on any machine
    return {"preset": preset, "device": device, **settings}


def _select_device(device: str) -> str:
    device = device.upper()
    if device == "CPU":
        return "CPU"
    prefs = bpy.context.preferences.addons["cycles"].preferences
    prefs.compute_device_type = device
    prefs.get_devices()
    gpus = [d for d in prefs.devices if d.type == device]
    if not gpus:
        raise RuntimeError(f"render.device = {device}: no {device} device found by Cycles")
    for d in prefs.devices:
        d.use = d.type == device
    return "GPU"


def add_camera(K: np.ndarray, width: int, height: int, sensor_mm: float = 36.0) -> bpy.types.Object:
    centred = np.isclose(K[0, 2], width / 2) and np.isclose(K[1, 2], height / 2)
    if not (np.isclose(K[0, 0], K[1, 1]) and centred):
        raise ValueError("only square pixels with the principal point at the image centre are supported")
    data = bpy.data.cameras.new("camera")
    data.sensor_fit = "HORIZONTAL"
    data.sensor_width = sensor_mm
    data.lens = float(K[0, 0]) * sensor_mm / width
    data.clip_start, data.clip_end = 0.01, 100.0
    camera = bpy.data.objects.new("camera", data)
    bpy.context.scene.collection.objects.link(camera)
    bpy.context.scene.camera = camera
    return camera


@contextlib.contextmanager
def _quiet_stdout():
    """Cycles prints progress on file descriptor 1; keep it out of the logs and the progress bar."""
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(devnull)
        os.close(saved)


def render_views(camera: bpy.types.Object, world_to_cameras: np.ndarray, workdir: Path,
                 on_view: Callable[[], None] | None = None) -> tuple[np.ndarray, list]:
    """Render every view; returns RGB (V, H, W, 3) uint8 and the seconds spent in each render call.
    `on_view` is called after each view (progress reporting)."""
    from mathutils import Matrix

    scene = bpy.context.scene
    images, seconds = [], []
    for i, w2c in enumerate(world_to_cameras):
        camera.matrix_world = Matrix(blender_matrix_world(w2c).tolist())
        path = Path(workdir) / f"view_{i:03d}.png"
        scene.render.filepath = str(path)
        start = time.perf_counter()
        with _quiet_stdout():
            bpy.ops.render.render(write_still=True)
        seconds.append(time.perf_counter() - start)
        with Image.open(path) as image:
            images.append(np.asarray(image.convert("RGB")))
        path.unlink()
        if on_view is not None:
            on_view()
    return np.stack(images), seconds
