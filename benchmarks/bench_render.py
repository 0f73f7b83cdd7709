"""Render speed and image quality per preset, on this machine.

Quality: one staged demo scene, a few of its views rendered with every preset and with the `reference` preset
(1024 samples per pixel, no adaptive sampling, no denoising, 12 bounces, caustics on): seconds per view and
PSNR (8-bit RGB, as stored) against the reference of the same view. Speed: whole scenes made by the real runner,
all included (shapes, anomalies, physics, ground truth, render, scene file, preview): seconds per scene and
per view, and the overhead ratio (scene time / time inside Cycles render calls).

    python benchmarks/bench_render.py     # quality of draft, default, paper; speed of draft, default (3 scenes)
    python benchmarks/bench_render.py --presets default --scenes 5 --quality-views 3
    python benchmarks/bench_render.py --levers --scenes 0   # each lever of the default preset, one at a time

The reference images are cached under out/bench/ (keyed by config, scene and views), so a rerun only renders
the presets.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
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


def quality(config: GenerationConfig, scene_index: int, presets: list[str], n_views: int, cache: Path,
            threads: int, levers: bool) -> dict:
    from generation.bank import AnomalyBank
    from generation.runner import shape_spec
    from generation.scene_task import stage_scene
    from generation.shapes.sources import make_source

    views = list(range(n_views))  # the orbit's views are spread around the scene already
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        catalogue = shape_catalogue(config, out, 1, mp.get_context("spawn"))
        source = make_source(shape_spec(config))
        bank = AnomalyBank(out / "bank", config.seed, config.anomalies.params, None)
        staged = None
        for attempt in range(config.scene.max_attempts):
            try:
                staged = stage_scene(config, scene_index, attempt, source, pools_of(catalogue), bank)
                break
            except Exception as err:  # noqa: BLE001 - a rejected attempt: the runner would re-sample too
                print(f"attempt {attempt} rejected: {err}")
        if staged is None:
            raise SystemExit(f"scene {scene_index} could not be staged")
        scene_config = {k: v for k, v in config.to_dict().items() if k != "render"}  # the preset is not the scene
        key = hashlib.sha256(json.dumps([scene_config, scene_index, views, RENDER_PRESETS["reference"]],
                                        sort_keys=True).encode()).hexdigest()[:12]
        reference_path = cache / f"reference-{key}.npz"
        if reference_path.exists():
            reference = np.load(reference_path)["rgb"]
            print(f"reference   cached ({reference_path})")
        else:
            start = time.perf_counter()
            reference, seconds = render_preset(config, staged, "reference", views, out, threads)
            cache.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(reference_path, rgb=reference)
            print(f"reference   {statistics.median(seconds):7.1f} s/view ({time.perf_counter() - start:.0f} s)")
        render_preset(config, staged, "draft", [0], out, threads)  # warm-up: the first render builds the BVH
        rows = {}
        runs = [(preset, preset, {}) for preset in presets]
        runs += [(f"default, {name}" if tweaks else "default (lever baseline)", "default", tweaks)
                 for name, tweaks in LEVERS.items()] if levers else []
        for label, preset, tweaks in runs:
            images, seconds = render_preset(config, staged, preset, views, out, threads, tweaks)
            per_view = [psnr(image, ref) for image, ref in zip(images, reference, strict=True)]
            rows[label] = {"views": [int(v) for v in views], "seconds_per_view": seconds,
                           "median_seconds_per_view": statistics.median(seconds),
                           "psnr_db": per_view, "median_psnr_db": statistics.median(per_view)}
            print(f"{label:38s}  {rows[label]['median_seconds_per_view']:6.2f} s/view  "
                  f"PSNR {rows[label]['median_psnr_db']:5.2f} dB (views {', '.join(f'{p:.1f}' for p in per_view)})",
                  flush=True)
        floor = staged.records["background"]["floor"].get("family", "texture set")
        return {"scene_index": scene_index, "floor": floor, "presets": rows}


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
@click.option("--quality-views", default=2, show_default=True, help="Views compared with the reference (0: skip).")
@click.option("--quality-scene", default=0, show_default=True, help="Scene index of the quality part.")
@click.option("--levers", is_flag=True, help="Also time the default preset with one setting changed at a time.")
@click.option("--set", "overrides", multiple=True, help="Extra config overrides, e.g. cameras.views=20.")
@click.option("--out", "out_json", default="out/bench/render.json", show_default=True)
def main(config_path, presets, scenes, speed_presets, quality_views, quality_scene, levers, overrides,
         out_json) -> None:
    presets = presets.split(",")
    out = Path(out_json)
    results = {"machine": {"cpus": os.cpu_count()}, "config": config_path, "overrides": list(overrides)}
    if quality_views:
        print(f"quality: scene {quality_scene}, {quality_views} views against the reference preset")
        config = load_config(config_path, list(overrides))
        results["quality"] = quality(config, quality_scene, presets, quality_views, out.parent,
                                     threads=os.cpu_count() or 1, levers=levers)
    if scenes:
        print(f"speed: {scenes} whole scenes per preset, one worker")
        results["speed"] = speed(config_path, list(overrides), speed_presets.split(","), scenes)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
