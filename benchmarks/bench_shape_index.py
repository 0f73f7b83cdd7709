"""Memory of the similar-shape table per worker: float16 memory-mapped (now) vs float32 loaded into each worker.

Writes a synthetic index of `--shapes` descriptors (8 views x 384 dims, as dinov2-small with the default 8 views),
then starts `--workers` processes that each open it and rank `--queries` shapes, and reports what each worker
holds: private (anonymous) memory and proportional set size (Pss: shared pages split between the processes).

    python benchmarks/bench_shape_index.py                 # 10,000 shapes, 4 workers
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import tempfile
from pathlib import Path

import click
import numpy as np

from generation.shape_index import INDEX_FILE, SimilarShapes, _export_table, _save

DIMS = 8 * 384


def memory_mb() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        fields[key] = int(value.split()[0]) / 1024
    return {"private": fields["Anonymous"], "pss": fields["Pss"]}


def worker(args) -> dict[str, float]:
    path, layout, queries, ready = args
    before = memory_mb()
    if layout == "float16 memory-mapped":
        with np.load(path) as stored:
            pools = {"train": stored["shape_ids"].tolist()}
        similar = SimilarShapes(path, None, pools)
        for i in range(queries):
            similar.ranked(f"shape_{i * 50:05d}", 10)
    else:  # the previous layout: the whole float32 table loaded into the worker
        with np.load(path) as stored:
            descriptors = stored["descriptors"]
        for i in range(queries):
            np.argsort(-(descriptors @ descriptors[i * 50]), kind="stable")[:10]
    ready.wait()  # every worker holds its table at once, so Pss splits shared pages between them
    after = memory_mb()
    return {key: after[key] - before[key] for key in after}


@click.command()
@click.option("--shapes", default=10_000, show_default=True)
@click.option("--workers", default=4, show_default=True)
@click.option("--queries", default=20, show_default=True)
def main(shapes: int, workers: int, queries: int) -> None:
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as root:
        path = Path(root) / INDEX_FILE
        descriptors = rng.normal(size=(shapes, DIMS)).astype(np.float32)
        descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
        _save(path, {f"shape_{i:05d}": d for i, d in enumerate(descriptors)}, {"request": {}})
        _export_table(path)
        print(f"{shapes} shapes x {DIMS} dims: index {path.stat().st_size / 1e6:.0f} MB, "
              f"float16 table {path.with_name('shape_index.f16.npy').stat().st_size / 1e6:.0f} MB")
        context = mp.get_context("spawn")
        for layout in ("float32 in each worker", "float16 memory-mapped"):
            with context.Manager() as manager:
                ready = manager.Barrier(workers)
                with context.Pool(workers) as pool:
                    results = pool.map(worker, [(path, layout, queries, ready)] * workers)
            print(f"{layout:24s} per worker: private {statistics.median(r['private'] for r in results):6.1f} MB, "
                  f"Pss {statistics.median(r['pss'] for r in results):6.1f} MB (median of {workers})")


if __name__ == "__main__":
    main()
