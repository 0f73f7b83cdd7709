"""The scene runner: resumable, shardable, parallel over local worker processes.

Every scene is a pure function of (config, seed, scene index), so a rerun skips the scenes whose file exists,
a killed run leaves at most `.tmp` files (removed on the next start), and `--shard i/N` lets a job array
split the work with no coordination.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from generation.config import GenerationConfig, config_from_dict
from generation.layout import shape_split
from generation.reports import write_summary
from generation.safefiles import writing
from generation.scene_task import SceneOutcome, generate_scene, scene_id
from generation.shape_index import INDEX_FILE, SimilarShapes, build_shape_index
from generation.shapes.sources import make_source
from generation.shapes.types import ShapeError

SCENES_PER_WORKER = 10  # a worker process is replaced after this many scenes, so memory cannot creep up
SHAPE_TIMEOUT_S = 120.0  # per mesh file when the catalogue is checked; a multi-million-face file takes ~10 s


def write_json(path: Path, data) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)


def shape_spec(config: GenerationConfig) -> dict:
    s = config.shapes
    if s.kind == "builtin":
        return {"kind": "builtin", "categories": s.categories, "instances_per_category": s.instances_per_category,
                "seed": config.seed}
    spec = {"kind": s.kind, "root": s.root, "max_faces": s.max_faces}
    return {**spec, "category_level": s.category_level} if s.kind == "folder" else spec


# ---- worker side -------------------------------------------------------------------------------------------
_worker: dict = {}


def _init_worker(config_dict: dict, out_dir: str, pools: dict, threads: int, views_done=None) -> None:
    """`views_done`: a queue that gets one item per rendered view, for the driver's progress bar."""
    config = config_from_dict(config_dict)
    source = make_source(shape_spec(config))
    index_path = Path(out_dir) / "bank" / INDEX_FILE
    similar = SimilarShapes(index_path, source, pools) if uses_similar_shapes(config) and pools else None
    _worker.update(config=config, out_dir=Path(out_dir), pools=pools, threads=threads, source=source,
                   similar=similar, on_view=None if views_done is None else lambda: views_done.put(1))


def _run_scene(index: int) -> SceneOutcome:
    """One scene; a crash of its code (a damaged mesh or bank file, a Blender error) is a `failed` outcome that
    report.json records and a rerun retries. An OSError (a full disk, a lost folder) would fail every scene, so
    it ends the run instead."""
    w = _worker
    try:
        return generate_scene(w["config"], index, w["out_dir"], w["source"], w["pools"], w["threads"],
                              w["similar"], w["on_view"])
    except OSError:
        raise
    except Exception as err:  # noqa: BLE001 - one scene's crash must not end the run
        return failed_outcome(index, f"{type(err).__name__}: {err}")


def failed_outcome(index: int, reason: str) -> SceneOutcome:
    """A scene that left no file: listed in report.json's `failed_this_run`, redone by a rerun."""
    return SceneOutcome(scene_id(index), "failed", reasons=[reason])


def _check_shape(shape_id: str) -> dict:
    source = _worker["source"]
    try:
        source.load(shape_id)
    except ShapeError as err:
        return {"shape_id": shape_id, "ok": False, "reason": str(err)}
    except Exception as err:  # noqa: BLE001 - a loader crash on one file must not end the run
        return {"shape_id": shape_id, "ok": False, "reason": f"{type(err).__name__}: {err}"}
    notes = getattr(source, "notes", {}).get(shape_id, [])
    return {"shape_id": shape_id, "ok": True, "notes": list(notes)}


# ---- driver side -------------------------------------------------------------------------------------------
def _pool(context, workers: int, config: GenerationConfig, out_dir: Path, pools: dict, threads: int):
    """Workers for checking shapes: kept for the whole check, so no file's clock runs while one starts up."""
    return context.Pool(workers, initializer=_init_worker, initargs=(config.to_dict(), str(out_dir), pools, threads))


def _executor(context, workers: int, config: GenerationConfig, out_dir: Path, pools: dict, threads: int,
              views_done=None):
    """Workers for scenes. Unlike multiprocessing.Pool, which silently loses the task of a worker that dies and
    then waits forever, the executor reports the death. (Its `max_tasks_per_child` deadlocks on Python 3.11-3.13,
    CPython gh-115634, so workers are renewed by starting a fresh executor per batch instead.)"""
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                               initargs=(config.to_dict(), str(out_dir), pools, threads, views_done))


def _follow_views(views_done, bar: tqdm) -> None:
    """Driver thread: advance the views bar as workers report rendered views (None ends it)."""
    while views_done.get() is not None:
        bar.update(1)


def shape_catalogue(config: GenerationConfig, out_dir: Path, workers: int, context,
                    timeout: float = SHAPE_TIMEOUT_S) -> dict:
    """Every shape with its split, or the reason it is unusable. Cached in `shapes.json`."""
    path = out_dir / "shapes.json"
    if path.exists():
        cached = json.loads(path.read_text())
        if cached.get("config_digest") == config.digest():
            return cached
    source = make_source(shape_spec(config))
    ids = source.shape_ids()
    if config.shapes.kind == "builtin":
        checked = {s: {"shape_id": s, "ok": True} for s in ids}
    else:
        checked = _check_shapes(context, workers, config, out_dir, ids, source, timeout)
    catalogue = {"config_digest": config.digest(), "usable": {}, "skipped": {}}
    for shape_id in ids:
        entry = checked[shape_id]
        if entry["ok"]:
            category = source.category(shape_id)
            catalogue["usable"][shape_id] = {
                "category": category, "split": shape_split(shape_id, category, config),
                "notes": entry.get("notes", []),
            }
        else:
            catalogue["skipped"][shape_id] = entry["reason"]
    write_json(path, catalogue)
    return catalogue


def _noop() -> None:
    """A task that returns once a worker is up (its initializer done), so no file's clock runs during start-up."""


def _check_shapes(context, workers, config, out_dir, ids, source, timeout: float) -> dict[str, dict]:
    """Load every shape once in worker processes. A file gets at least `timeout` seconds: one that hangs its
    parser or kills its worker (a crash, the OOM killer) is skipped with that reason, and a fresh pool checks
    the rest, so one file can neither stall nor end the run."""
    checked: dict[str, dict] = {}
    pending = list(ids)
    with tqdm(total=len(ids), desc="checking shapes", unit="shape", dynamic_ncols=True) as bar:
        while pending:
            with _pool(context, workers, config, out_dir, {}, 1) as pool:
                pool.apply(_noop)
                tasks = [(shape_id, pool.apply_async(_check_shape, (shape_id,))) for shape_id in pending]
                pending, clock = [], time.monotonic()
                for k, (shape_id, task) in enumerate(tasks):
                    try:
                        checked[shape_id] = task.get(timeout=max(0.0, clock + timeout - time.monotonic()))
                    except mp.TimeoutError:
                        checked[shape_id] = {"shape_id": shape_id, "ok": False, "reason": (
                            f"{source.path(shape_id)}: not loaded within the time limit of {timeout:g} s per "
                            f"file (hung or crashed the loader); the check is kept in shapes.json, so a larger "
                            f"--shape-timeout applies to a new --out folder")}
                        pending = [s for s, t in tasks[k + 1:] if not t.ready()]
                        checked.update((s, t.get()) for s, t in tasks[k + 1:] if t.ready())
                        bar.update(len(tasks) - k - len(pending))
                        break
                    clock = time.monotonic()  # the next file's clock starts when this one is done
                    bar.update(1)
    return checked


def pools_of(catalogue: dict) -> dict[str, list[str]]:
    """The usable shape ids of each split, sorted: what scene plans draw their shape from."""
    pools: dict[str, list[str]] = {}
    for shape_id, entry in sorted(catalogue["usable"].items()):
        pools.setdefault(entry["split"], []).append(shape_id)
    return pools


def uses_similar_shapes(config: GenerationConfig) -> bool:
    return config.anomalies.weights.get("similar_shape", 0.0) > 0


def index_shapes(config: GenerationConfig, out_dir: Path, shape_ids: list[str], progress: bool) -> None:
    """The descriptor table `similar_shape` ranks look-alikes by, made once before the workers start."""
    from generation.anomalies import get_generator
    from preprocessing.encoder import EncoderLoadError

    settings = get_generator("similar_shape", config.anomalies.params.get("similar_shape"))
    try:
        build_shape_index(out_dir / "bank", make_source(shape_spec(config)), shape_ids, settings.encoder,
                          settings.views, settings.image_size, progress=progress)
    except EncoderLoadError as err:  # a config problem: the CLI reports it without a traceback
        raise ValueError(f"similar_shape describes shapes with anomalies.params.similar_shape.encoder: {err}") from err


def clean_partial(out_dir: Path) -> int:
    """Remove what a killed run left behind; finished files are never touched."""
    removed = 0
    patterns = ("scenes/*.tmp", "previews/*.tmp", "rejected/*.tmp", "gallery/*.tmp", "bank/*.tmp", "bank/*/*.tmp",
                "*.tmp")
    for pattern in patterns:
        for tmp in out_dir.glob(pattern):
            tmp.unlink()
            removed += 1
    shutil.rmtree(out_dir / ".work", ignore_errors=True)
    return removed


def run_scenes(config: GenerationConfig, out_dir: Path, workers: int = 1, shard: tuple[int, int] = (0, 1),
               progress: bool = True, shape_timeout: float = SHAPE_TIMEOUT_S, ray: dict | None = None) -> dict:
    """`ray`: run the scenes as Ray tasks instead of local workers, with ray_executor.ray_outcomes' options
    (address, task_cpus, scenes_per_task)."""
    out_dir = Path(out_dir)
    for folder in ("scenes", "previews", "rejected"):
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
    _guard_config(config, out_dir)
    cleaned = clean_partial(out_dir)
    context = mp.get_context("spawn")
    catalogue = shape_catalogue(config, out_dir, workers, context, shape_timeout)
    pools = pools_of(catalogue)
    if uses_similar_shapes(config):
        index_shapes(config, out_dir, sorted(catalogue["usable"]), progress)

    index_of_shard = [i for i in range(config.n_scenes) if i % shard[1] == shard[0]]
    todo = [i for i in index_of_shard
            if not (out_dir / "scenes" / f"{scene_id(i)}.h5").exists()
            and not (out_dir / "rejected" / f"{scene_id(i)}.json").exists()]
    threads = max(1, len(os.sched_getaffinity(0)) // workers)  # the CPUs this job may use (Slurm, taskset)
    outcomes: list[SceneOutcome] = []
    start = time.perf_counter()
    if todo:
        views_done = context.Queue()
        scenes_bar = tqdm(total=len(todo), desc="scenes", unit="scene", disable=not progress, dynamic_ncols=True,
                          position=0)
        views_bar = tqdm(total=len(todo) * config.cameras.views, desc="views ", unit="view", disable=not progress,
                         dynamic_ncols=True, position=1)
        follower = threading.Thread(target=_follow_views, args=(views_done, views_bar), daemon=True)
        follower.start()
        try:
            if ray is None:
                stream = _outcomes(context, workers, config, out_dir, pools, threads, todo, views_done)
            else:
                from generation.ray_executor import ray_outcomes

                stream = ray_outcomes(config, out_dir, pools, todo, **ray)
            for outcome in stream:
                if outcome.status == "rejected":
                    write_json(out_dir / "rejected" / f"{outcome.scene_id}.json", asdict(outcome))
                if ray is not None:  # Ray workers report views per scene
                    views_bar.update(outcome.n_views)
                if outcome.status != "done":
                    views_bar.total -= config.cameras.views  # a rejected or failed scene renders no views
                outcomes.append(outcome)
                minutes = (time.perf_counter() - start) / 60
                scenes_bar.set_postfix(per_min=f"{len(outcomes) / max(minutes, 1e-9):.2f}",
                                       rejected=sum(o.status == "rejected" for o in outcomes), refresh=False)
                scenes_bar.update(1)
        finally:
            views_done.put(None)
            follower.join(timeout=10)
            views_bar.close()
            scenes_bar.close()
    report = _report(config, out_dir, shard, index_of_shard, outcomes, catalogue, cleaned,
                     time.perf_counter() - start)
    name = "report.json" if shard == (0, 1) else f"report-{shard[0]}-of-{shard[1]}.json"
    write_json(out_dir / name, report)
    write_index(out_dir)
    write_summary(out_dir)
    return report


def _outcomes(context, workers: int, config: GenerationConfig, out_dir: Path, pools: dict, threads: int,
              todo: list[int], views_done=None):
    """Scene outcomes as they finish, in batches of SCENES_PER_WORKER scenes per worker, each batch on fresh
    workers so memory cannot creep up. A worker's death (a Blender crash, the OOM killer) takes the whole batch's
    pool down: its unfinished scenes become `failed` outcomes and the next batch starts on fresh workers."""
    batch = workers * SCENES_PER_WORKER
    for start in range(0, len(todo), batch):
        with _executor(context, workers, config, out_dir, pools, threads, views_done) as executor:
            futures = {executor.submit(_run_scene, index): index for index in todo[start:start + batch]}
            pending = dict(futures)
            try:
                for future in as_completed(futures):
                    outcome = future.result()
                    del pending[future]
                    yield outcome
            except BrokenProcessPool:
                for future, index in sorted(pending.items(), key=lambda item: item[1]):
                    if future.done() and future.exception() is None:
                        yield future.result()
                    else:
                        yield failed_outcome(index, "a worker process died (crashed, or killed e.g. for lack of "
                                                    "memory) before this scene was finished")


def _guard_config(config: GenerationConfig, out_dir: Path) -> None:
    """Refuse to mix scenes (or banked variants) of different configs in one folder: finished work is never
    overwritten. A folder where a run stopped before making anything (a wrong shape folder, say) takes the new
    config."""
    path = out_dir / "variant.json"
    if path.exists():
        previous = json.loads(path.read_text())["config_digest"]
        made = any(next((out_dir / folder).glob("*"), None) for folder in ("scenes", "rejected", "bank"))
        if previous != config.digest() and made:
            raise ValueError(f"{out_dir}: holds a variant made with another config (digest {previous}, now "
                             f"{config.digest()}); use a new --out folder")
    write_json(path, {"config_digest": config.digest(), "config": config.to_dict()})


def _report(config, out_dir, shard, indices, outcomes, catalogue, cleaned, seconds) -> dict:
    done = [o for o in outcomes if o.status == "done"]
    rejected = [o for o in outcomes if o.status == "rejected"]
    render = sum(o.render_seconds for o in done)
    scene = sum(o.scene_seconds for o in done)
    views = sum(o.n_views for o in done)
    reasons: dict[str, int] = {}
    for o in outcomes:
        for r in (o.reasons or []) if o.status != "failed" else []:  # a failure is no rejected attempt
            key = r.split(": ", 1)[1] if ": " in r else r
            key = key.split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
    return {
        "config_digest": config.digest(),
        "shard": list(shard),
        "scenes_in_shard": len(indices),
        "done_this_run": len(done),
        "rejected_this_run": {o.scene_id: o.reasons for o in rejected},
        "rejected_attempt_reasons": reasons,
        "failed_this_run": {o.scene_id: {"scene_index": int(o.scene_id.split("_")[1]), "reason": o.reasons[0]}
                            for o in outcomes if o.status == "failed"},
        "already_done": len(indices) - len(outcomes),
        "partial_files_removed": cleaned,
        "skipped_shapes": catalogue["skipped"],
        "shape_notes": {k: v["notes"] for k, v in catalogue["usable"].items() if v.get("notes")},
        "seconds": {
            "wall": seconds,
            "per_scene": scene / len(done) if done else None,
            "per_view": scene / views if views else None,
            "render_calls": render,
            "overhead_ratio": scene / render if render else None,
        },
        "per_scene": [asdict(o) for o in sorted(done, key=lambda o: o.scene_id)],  # not in finishing order
    }


def write_index(out_dir: Path) -> dict:
    """Index of every finished scene in the folder (from the files themselves, so shards can be merged)."""
    from generation.scenefile import read_scene

    rows, splits = [], {}
    for path in sorted((out_dir / "scenes").glob("*.h5")):
        scene = read_scene(path, views=False)
        rows.append({
            "scene_id": scene.scene_id, "split": scene.split, "file": f"scenes/{path.name}",
            "category": scene.categories[0], "shape_id": scene.source_ids[0], "n_objects": scene.n_objects,
            "n_anomalous": int(scene.labels.sum()), "anomaly_types": sorted(set(scene.anomaly_types) - {"none"}),
        })
        splits.setdefault(scene.split, []).append(scene.scene_id)
    variant = json.loads((out_dir / "variant.json").read_text())
    index = {
        "variant_id": f"{variant['config']['name']}-{variant['config_digest']}",
        "config_digest": variant["config_digest"],
        "config": variant["config"],
        "scenes": rows,
        "counts": {split: len(ids) for split, ids in sorted(splits.items())},
    }
    write_json(out_dir / "index.json", index)
    write_json(out_dir / "splits.json", splits)
    return index


def slurm_shard(environ=os.environ) -> str:
    """`--shard slurm`: this Slurm job array task's share, i/N from SLURM_ARRAY_TASK_ID (less the array's first
    id, so `--array=1-8` works too) and SLURM_ARRAY_TASK_COUNT."""
    try:
        task, first, count = (int(environ[k]) for k in ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN",
                                                        "SLURM_ARRAY_TASK_COUNT"))
    except (KeyError, ValueError) as err:
        raise ValueError("--shard slurm: not inside a Slurm job array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN "
                         "and SLURM_ARRAY_TASK_COUNT unset); use sbatch --array or --shard i/N") from err
    return f"{task - first}/{count}"


def parse_shard(text: str) -> tuple[int, int]:
    if text == "slurm":
        text = slurm_shard()
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError as err:
        raise ValueError(f"--shard {text!r}: expected i/N, e.g. 0/4") from err
    if not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: need 0 <= i < N")
    return i, n
