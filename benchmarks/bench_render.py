"""Render speed per quality preset: seconds per view and per scene, and the overhead ratio
(whole-scene time / time spent inside Cycles render calls; target <= 1.15 at `default`).

    python benchmarks/bench_render.py --scenes 3 --presets draft,default,paper
"""

from __future__ import annotations

import json
import statistics
import tempfile
from pathlib import Path

import click

from generation.config import load_config
from generation.runner import run_scenes


@click.command()
@click.option("--config", "config_path", default="assets/configs/demo.toml", show_default=True)
@click.option("--scenes", default=3, show_default=True, help="Scenes per preset.")
@click.option("--presets", default="draft,default,paper", show_default=True)
@click.option("--set", "overrides", multiple=True, help="Extra config overrides, e.g. cameras.views=20.")
@click.option("--out", "out_json", default="out/bench/render.json", show_default=True)
def main(config_path, scenes, presets, overrides, out_json) -> None:
    results = {}
    for preset in presets.split(","):
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
        }
        r = results[preset]
        print(f"{preset:8s} {r['median_seconds_per_scene']:7.1f} s/scene  {r['median_seconds_per_view']:6.2f} s/view"
              f"  overhead ratio {r['overhead_ratio']:.3f}", flush=True)
    Path(out_json).parent.mkdir(parents=True, exist_ok=True)
    Path(out_json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
