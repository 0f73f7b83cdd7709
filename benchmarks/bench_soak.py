"""Long-run memory: one worker renders many tiny scenes in a row; its resident memory must stay flat.

A Ray worker (or a Slurm job) renders scene after scene in one Blender session, so whatever a scene leaves in
`bpy.data` (meshes, images, materials) or in Python caches adds up over thousands of scenes. This renders
`--scenes` tiny scenes (draft preset, 32x32, 2 views) in this process, exactly as a worker does
(runner._init_worker, then runner._run_scene per scene), records the resident set size (VmRSS) every
`--every` scenes, and checks the target: the last value within 10% of the value after scene 20.

    python benchmarks/bench_soak.py                       # 200 scenes, 13-19 min on 2 shared cores
    python benchmarks/bench_soak.py --scenes 60 --out out/bench/soak

Prints the curve and writes it to `<out>/soak.csv` (and `soak.png` when matplotlib is installed).
"""

from __future__ import annotations

import csv
import gc
import json
import multiprocessing as mp
import time
from pathlib import Path

import click

from generation.config import load_config
from generation.runner import _guard_config, _init_worker, _run_scene, pools_of, shape_catalogue

REPO = Path(__file__).resolve().parents[1]
TINY = ["cameras.views=2", "cameras.width=32", "cameras.height=32", "render.samples=1", "render.preset='draft'",
        "scene.objects=[3,4]", "shapes.instances_per_category=4"]
TOLERANCE = 0.10  # the last value may exceed the value after the baseline scene by this fraction
BASELINE_SCENE = 20


def resident_mb() -> float:
    """This process's resident set size (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def blender_blocks() -> int:
    """Data blocks held by the Blender session: a count that grows from scene to scene is a leak."""
    import bpy

    kinds = ("meshes", "objects", "materials", "images", "worlds", "node_groups", "textures", "cameras",
             "collections")
    return sum(len(getattr(bpy.data, kind)) for kind in kinds)


def write_plot(rows: list[dict], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["scenes"] for r in rows], [r["rss_mb"] for r in rows], marker="o")
    ax.set_xlabel("scenes rendered by the worker")
    ax.set_ylabel("resident memory (MB)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


@click.command()
@click.option("--scenes", default=200, show_default=True, type=click.IntRange(min=BASELINE_SCENE + 1))
@click.option("--every", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--out", "out_dir", default="out/bench/soak", show_default=True, type=click.Path(file_okay=False))
@click.option("--threads", default=1, show_default=True, help="Cycles threads.")
def main(scenes: int, every: int, out_dir: str, threads: int) -> None:
    out = Path(out_dir)
    variant = out / "variant"
    config = load_config(REPO / "assets/configs/demo.toml", [*TINY, f"n_scenes={scenes}"])
    for folder in ("scenes", "previews", "rejected"):
        (variant / folder).mkdir(parents=True, exist_ok=True)
    _guard_config(config, variant)
    pools = pools_of(shape_catalogue(config, variant, 1, mp.get_context("spawn")))
    _init_worker(config.to_dict(), str(variant), pools, threads)
    rows, start = [], time.perf_counter()
    for index in range(scenes):
        scene = variant / "scenes" / f"scene_{index:06d}.h5"
        scene.unlink(missing_ok=True)  # a rerun renders again: this measures the worker, not the resume
        outcome = _run_scene(index)
        if (index + 1) % every == 0 or index + 1 in (1, BASELINE_SCENE):
            gc.collect()
            rows.append({"scenes": index + 1, "rss_mb": round(resident_mb(), 1), "blender_blocks": blender_blocks(),
                         "seconds": round(time.perf_counter() - start, 1), "last_status": outcome.status})
            print(json.dumps(rows[-1]), flush=True)
    baseline = next(r["rss_mb"] for r in rows if r["scenes"] == BASELINE_SCENE)
    growth = rows[-1]["rss_mb"] / baseline - 1
    csv_path = out / "soak.csv"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plotted = write_plot(rows, out / "soak.png")
    print(f"RSS after scene {BASELINE_SCENE}: {baseline:.1f} MB, after scene {scenes}: {rows[-1]['rss_mb']:.1f} MB "
          f"({growth:+.1%}; target within {TOLERANCE:.0%}): {'PASS' if growth <= TOLERANCE else 'FAIL'}")
    print(f"curve: {csv_path}" + (f", {out / 'soak.png'}" if plotted else " (no matplotlib: no PNG)"))


if __name__ == "__main__":
    main()
