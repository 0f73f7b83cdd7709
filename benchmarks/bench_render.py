"""Render speed and image quality per preset, on this machine.

Quality: a few staged demo scenes, a view of each rendered with every preset and with the `reference` preset
(1024 samples per pixel, no adaptive sampling, no denoising, 12 bounces, caustics on): seconds per view and
PSNR (8-bit RGB, as stored) against the reference of the same view. Speed: whole scenes made by the real runner,
all included (shapes, anomalies, physics, ground truth, render, scene file, preview): seconds per scene and
per view, and the overhead ratio (scene time / time inside Cycles render calls).

    python benchmarks/bench_render.py     # quality of draft, default, paper; speed of draft, default (3 scenes)
    python benchmarks/bench_render.py --presets default --scenes 5 --quality-views 3
    python benchmarks/bench_render.py --levers --scenes 0   # each lever of the default preset, one at a time

The reference images are cached under out/bench/ (keyed by the cameras, geometry, floor and light they show), so a
rerun only renders the presets.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import statistics
import tempfile
from pathlib import Path

import click
import numpy as np

from generation.config import RENDER_PRESETS, GenerationConfig, load_config
from generation.runner import pools_of, run_scenes, shape_catalogue


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    mse = np.mean((image.astype(np.float64) - reference.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


# One setting of the `default` preset changed at a time: what each lever buys or costs. Keys are attributes of
# bpy's scene (`cycles.x`, `render.x`).
LEVERS = {
    "default": {},
    "no persistent data": {"render.use_persistent_data": False},
    "adaptive threshold 0.01": {"cycles.adaptive_threshold": 0.01},
    "no adaptive sampling": {"cycles.use_adaptive_sampling": False},
    "12 bounces + caustics": {"cycles.max_bounces": 12, "cycles.diffuse_bounces": 12, "cycles.glossy_bounces": 12,
                              "cycles.caustics_reflective": True, "cycles.caustics_refractive": True},
    "no denoising": {"cycles.use_denoising": False},
    "denoise without guides": {"cycles.denoising_input_passes": "RGB"},
    "denoise fast prefilter": {"cycles.denoising_prefilter": "FAST"},
    "denoise balanced": {"cycles.denoising_quality": "BALANCED"},
    "tiles of 64 px": {"cycles.use_auto_tile": True, "cycles.tile_size": 64},
    "light tree on": {"cycles.use_light_tree": True},
}


def render_preset(config: GenerationConfig, staged, preset: str, views: list[int], workdir: Path, threads: int,
                  tweaks: dict | None = None):
    """Renders `views` of the staged scene with `preset` (and `tweaks` on top); returns images (V, H, W, 3) and
    seconds per view."""
    import bpy

    from generation.blender import render
    from generation.scene_task import render_seed

    cam = config.cameras
    render.configure_cycles(preset, config.render.device, 0, seed=render_seed(config.seed, staged.index),
                            threads=threads, width=cam.width, height=cam.height)
    for key, value in (tweaks or {}).items():
        owner, name = key.split(".")
        setattr(getattr(bpy.context.scene, owner), name, value)
    return render.render_views(staged.camera, staged.world_to_camera[views], workdir)


def stage(config: GenerationConfig, scene_index: int, out: Path):
    """The scene as the runner would build it (the first attempt that passes the checks), ready to render."""
    from generation.bank import AnomalyBank
    from generation.runner import shape_spec
    from generation.scene_task import stage_scene
    from generation.shapes.sources import make_source

    catalogue = shape_catalogue(config, out, 1, mp.get_context("spawn"))
    source = make_source(shape_spec(config))
    bank = AnomalyBank(out / "bank", config.seed, config.anomalies.params, None)
    for attempt in range(config.scene.max_attempts):
        try:
            return stage_scene(config, scene_index, attempt, source, pools_of(catalogue), bank)
        except Exception as err:  # noqa: BLE001 - a rejected attempt: the runner would re-sample too
            print(f"scene {scene_index} attempt {attempt} rejected: {err}")
    raise SystemExit(f"scene {scene_index} could not be staged")


def reference_key(staged, views: list[int]) -> str:
    """Identifies what the reference shows (cameras, geometry, floor and light, Cycles settings), so a code
    change that moves a camera or an object never compares against a stale cached image."""
    digest = hashlib.sha256()
    for array in (staged.world_to_camera[views], staged.intrinsics[views], staged.truth["depth"][views],
                  np.stack(staged.poses)):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(json.dumps([staged.records["background"], RENDER_PRESETS["reference"]], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def quality(config: GenerationConfig, scene_indices: list[int], presets: list[str], n_views: int, cache: Path,
            threads: int, levers: bool) -> dict:
    views = list(range(n_views))  # the orbit's views are spread around the scene already
    runs = [(preset, preset, {}) for preset in presets]
    runs += [(f"default, {name}" if tweaks else "default (lever baseline)", "default", tweaks)
             for name, tweaks in LEVERS.items()] if levers else []
    rows = {label: {"seconds_per_view": [], "psnr_db": []} for label, _, _ in runs}
    floors = {}
    for scene_index in scene_indices:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            staged = stage(config, scene_index, out)
            floors[scene_index] = staged.records["background"]["floor"].get("family", "texture set")
            reference_path = cache / f"reference-{reference_key(staged, views)}.npz"
            if reference_path.exists():
                reference = np.load(reference_path)["rgb"]
                print(f"scene {scene_index} ({floors[scene_index]}): reference cached ({reference_path})")
            else:
                reference, seconds = render_preset(config, staged, "reference", views, out, threads)
                cache.mkdir(parents=True, exist_ok=True)
                np.savez_compressed(reference_path, rgb=reference)
                print(f"scene {scene_index} ({floors[scene_index]}): reference {statistics.median(seconds):.0f} s/view")
            render_preset(config, staged, "draft", [0], out, threads)  # warm-up: the first render builds the BVH
            for label, preset, tweaks in runs:
                images, seconds = render_preset(config, staged, preset, views, out, threads, tweaks)
                rows[label]["seconds_per_view"] += seconds
                rows[label]["psnr_db"] += [psnr(image, ref) for image, ref in zip(images, reference, strict=True)]
    for label, row in rows.items():
        row["median_seconds_per_view"] = statistics.median(row["seconds_per_view"])
        row["median_psnr_db"] = statistics.median(row["psnr_db"])
        row["min_psnr_db"] = min(row["psnr_db"])
        print(f"{label:38s}  {row['median_seconds_per_view']:6.2f} s/view  PSNR median {row['median_psnr_db']:5.2f} dB"
              f", min {row['min_psnr_db']:5.2f}", flush=True)
    return {"scenes": scene_indices, "views_per_scene": views, "floors": floors, "presets": rows}


def speed(config_path: str, overrides: list[str], presets: list[str], scenes: int) -> dict:
    results = {}
    for preset in presets:
        config = load_config(config_path, [*overrides, f"n_scenes={scenes}", f"render.preset='{preset}'"])
        with tempfile.TemporaryDirectory() as tmp:
            report = run_scenes(config, Path(tmp), workers=1, progress=False)
        rows = report["per_scene"]
        results[preset] = {
            "scenes": len(rows),
            "views_per_scene": config.cameras.views,
            "resolution": [config.cameras.width, config.cameras.height],
            "median_seconds_per_scene": statistics.median(r["scene_seconds"] for r in rows),
            "median_seconds_per_view": statistics.median(r["scene_seconds"] / r["n_views"] for r in rows),
            "median_render_call_seconds_per_view": statistics.median(r["render_seconds"] / r["n_views"]
                                                                      for r in rows),
            "overhead_ratio": sum(r["scene_seconds"] for r in rows) / sum(r["render_seconds"] for r in rows),
            # the whole run (worker start, shape catalogue, rejected attempts too) per finished scene
            "wall_seconds_per_scene": report["seconds"]["wall"] / len(rows),
        }
        r = results[preset]
        print(f"{preset:10s}  {r['median_seconds_per_scene']:6.1f} s/scene  {r['median_seconds_per_view']:5.2f} s/view "
              f"all included  overhead ratio {r['overhead_ratio']:.3f}  wall {r['wall_seconds_per_scene']:.1f} "
              "s/scene", flush=True)
    return results


@click.command()
@click.option("--config", "config_path", default="assets/configs/demo.toml", show_default=True)
@click.option("--presets", default="draft,default,paper", show_default=True)
@click.option("--scenes", default=3, show_default=True, help="Whole scenes per preset for the speed part (0: skip).")
@click.option("--speed-presets", default="draft,default", show_default=True,
              help="Presets timed on whole scenes (paper takes minutes per scene on a CPU).")
@click.option("--quality-views", default=1, show_default=True,
              help="Views per scene compared with the reference (0: skip the quality part).")
@click.option("--quality-scenes", default="0,1,2", show_default=True,
              help="Scene indices of the quality part (different floors and lights).")
@click.option("--levers", is_flag=True, help="Also time the default preset with one setting changed at a time.")
@click.option("--set", "overrides", multiple=True, help="Extra config overrides, e.g. cameras.views=20.")
@click.option("--out", "out_json", default="out/bench/render.json", show_default=True)
def main(config_path, presets, scenes, speed_presets, quality_views, quality_scenes, levers, overrides,
         out_json) -> None:
    presets = presets.split(",")
    out = Path(out_json)
    results = {"machine": {"cpus": os.cpu_count()}, "config": config_path, "overrides": list(overrides)}
    if quality_views:
        scene_indices = [int(i) for i in quality_scenes.split(",")]
        print(f"quality: scenes {scene_indices}, {quality_views} view(s) each against the reference preset")
        config = load_config(config_path, list(overrides))
        results["quality"] = quality(config, scene_indices, presets, quality_views, out.parent,
                                     threads=os.cpu_count() or 1, levers=levers)
    if scenes:
        print(f"speed: {scenes} whole scenes per preset, one worker")
        results["speed"] = speed(config_path, list(overrides), speed_presets.split(","), scenes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
