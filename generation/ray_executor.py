"""Scenes as Ray tasks: the same scene function as the local executor, scheduled over a Ray cluster.

Every scene is a pure function of (config, seed, index) written straight into the variant folder, so a task
needs no coordination: it runs `runner._run_scene` in a Ray worker that keeps its Blender session between
scenes (each attempt starts from factory settings) and is replaced after SCENES_PER_WORKER scenes, like the
local workers. A worker that dies (a Blender crash, the out-of-memory killer, a lost node) has its task retried
TASK_RETRIES times; a task that still fails becomes a `failed` outcome naming the scene and the reason, which
the runner records in report.json, and a rerun of the same command redoes exactly the scenes without a file.
Ray is an optional extra (`pip install oddbench[ray]`); docs/scaling.md says how to point this at a cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from generation import runner
from generation.config import GenerationConfig
from generation.scene_task import SceneOutcome

TASK_RETRIES = 3  # attempts after a worker death before the scenes of the task are reported as failed

_session: dict = {}  # the worker state this Ray worker was set up for (one variant at a time)


def import_ray():
    try:
        import ray
    except ImportError as err:
        raise ValueError("--executor ray needs Ray: pip install 'oddbench[ray]'") from err
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at `address` ('auto': the one this machine belongs to), start a local one when None,
    or reuse the connection of the calling program. True when this call connected (and so shuts it down)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, log_to_driver=False)
    return True


def _scene_batch(config: dict, out_dir: str, pools: dict, threads: int, indices: list[int]) -> list[SceneOutcome]:
    """Ray task: the scenes `indices`, in a worker set up once per variant (the local executor's initializer)."""
    key = (json.dumps(config, sort_keys=True), out_dir)
    if _session.get("key") != key:
        runner._init_worker(config, out_dir, pools, threads)
        _session["key"] = key
    return [runner._run_scene(index) for index in indices]


def ray_outcomes(config: GenerationConfig, out_dir, pools: dict, todo: list[int], address: str | None = None,
                 task_cpus: int = 1, scenes_per_task: int = 1) -> Iterator[SceneOutcome]:
    """Scene outcomes as Ray tasks finish, one task per `scenes_per_task` scenes, each task reserving
    `task_cpus` CPUs (its Cycles threads) and one GPU when the config renders on one."""
    ray = import_ray()
    started = connect(address)
    try:
        task = ray.remote(num_cpus=task_cpus, num_gpus=0 if config.render.device == "CPU" else 1,
                          max_retries=TASK_RETRIES, max_calls=max(1, runner.SCENES_PER_WORKER // scenes_per_task)
                          )(_scene_batch)
        config_ref, pools_ref = ray.put(config.to_dict()), ray.put(pools)  # stored once, not sent per task
        batches = {task.remote(config_ref, str(out_dir), pools_ref, task_cpus, todo[k:k + scenes_per_task]):
                   todo[k:k + scenes_per_task] for k in range(0, len(todo), scenes_per_task)}
        pending = list(batches)
        while pending:
            (ref,), pending = ray.wait(pending, num_returns=1)
            yield from _results(ray, ref, batches[ref], pending)
    finally:
        if started:
            ray.shutdown()


def _results(ray, ref, indices: list[int], pending: list) -> list[SceneOutcome]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as err:  # the scene code raised
        if isinstance(err.cause, OSError):  # a full disk or a lost folder fails every scene: stop, as locally
            for other in pending:
                ray.cancel(other)
            raise err.cause from None
        return [runner.failed_outcome(i, f"{type(err.cause).__name__}: {err.cause}") for i in indices]
    except ray.exceptions.RayError as err:  # the worker died on every try: a crash, the OOM killer, a lost node
        reason = f"{type(err).__name__} after {TASK_RETRIES + 1} tries: {(str(err).strip().splitlines() or [''])[0]}"
        return [runner.failed_outcome(i, reason) for i in indices]
