"""The feature stage as Ray tasks: one task per unfinished shard, the manifest written once by the driver.

The driver plans the run as a local run does (and fits the PCA, if asked, once, before any task starts); each
task encodes one shard with the local stage's own shard writer, in a worker that keeps its loaded encoder for
the next shard of the same run. A shard is written atomically, so a rerun of the same command redoes exactly
the shards that are missing; a task whose worker dies is retried TASK_RETRIES times, then reported.
"""

from __future__ import annotations

import time
from dataclasses import replace

from tqdm import tqdm

from generation.ray_executor import TASK_RETRIES, connect, import_ray
from preprocessing.pipeline import FeatureOptions, FeatureRun, RunSummary, _write_shards, prepare_run

_session: dict = {}  # this Ray worker's prepared run (the encoder stays loaded between shards)


def _encode_shard(options: FeatureOptions, k: int) -> dict:
    """Ray task: write shard `k` of the run's plan; returns what the driver's summary counts."""
    if _session.get("options") != options:
        _session.update(options=options, run=prepare_run(options))
    run: FeatureRun = _session["run"]
    summary = RunSummary(manifest={})
    with tqdm(disable=True) as bar:
        _write_shards([run.plans[k]], run.encoder, run.batch_size, options, run.settings, bar, summary)
    return {"written": summary.written, "images": summary.images, "skipped": summary.skipped}


def extract_features_ray(options: FeatureOptions, address: str | None = None, task_cpus: int = 1) -> RunSummary:
    """`extract_features` with every unfinished shard of this job as a Ray task reserving `task_cpus` CPUs (and
    a GPU when the driver's encoder runs on one). `summary.failed` lists the shards whose task failed."""
    ray = import_ray()
    start = time.perf_counter()
    run = prepare_run(options)
    mine, todo = run.pending()
    summary = RunSummary(manifest={}, kept=[plan.tar for plan in mine if plan not in todo])
    setup_done = time.perf_counter()
    started = connect(address)
    try:
        task = ray.remote(num_cpus=task_cpus, num_gpus=int(run.encoder.device.type == "cuda"),
                          max_retries=TASK_RETRIES)(_encode_shard)
        quiet = ray.put(replace(options, progress=False))
        shards = {task.remote(quiet, run.plans.index(plan)): plan for plan in todo}
        pending = list(shards)
        with tqdm(total=len(todo), unit="shard", desc="features", disable=not options.progress,
                  dynamic_ncols=True) as bar:
            while pending:
                (ref,), pending = ray.wait(pending, num_returns=1)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayError as err:  # the shard's code raised, or its worker died every try
                    cause = getattr(err, "cause", None) or err
                    reason = (str(cause).strip().splitlines() or [""])[0]
                    summary.failed.append({"shard": shards[ref].tar, "reason": f"{type(cause).__name__}: {reason}"})
                else:
                    summary.written += result["written"]
                    summary.images += result["images"]
                    summary.skipped += result["skipped"]
                bar.update(1)
    finally:
        if started:
            ray.shutdown()
    finished = time.perf_counter()
    summary.manifest = run.write_manifest()
    summary.seconds = {"setup": setup_done - start, "encode_and_write": finished - setup_done,
                       "total": time.perf_counter() - start}
    return summary
