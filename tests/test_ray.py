"""Scenes as Ray tasks on a local 2-CPU Ray cluster: the same bytes as the local executor, failures recorded in
report.json with the scene and reason, and a rerun that redoes only what is missing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import ray
from click.testing import CliRunner

from generation.cli import main as generation_cli
from generation.config import load_config
from generation.runner import parse_shard, run_scenes

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "assets/configs/demo.toml"
TINY = ["n_scenes=3", "cameras.views=2", "cameras.width=32", "cameras.height=32", "render.samples=2",
        "render.preset='draft'", "scene.objects=[3,4]", "shapes.instances_per_category=2"]
TIMING = {"seconds", "render_seconds", "scene_seconds", "worker_peak_rss_mb"}  # differ from run to run


def without_timing(data):
    if isinstance(data, dict):
        return {k: without_timing(v) for k, v in data.items() if k not in TIMING}
    if isinstance(data, list):
        return [without_timing(v) for v in data]
    return data


def contents(folder: Path) -> dict[str, str]:
    """sha256 of every file, except report.json, compared without its timing fields."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        name = str(path.relative_to(folder))
        found[name] = (without_timing(json.loads(path.read_text())) if path.name == "report.json"
                       else hashlib.sha256(path.read_bytes()).hexdigest())
    return found


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_variant(cluster, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray-variant")
    report = run_scenes(load_config(REPO / "assets/configs/demo.toml", TINY), out, progress=False, ray={})
    assert report["done_this_run"] + len(report["rejected_this_run"]) == 3 and not report["failed_this_run"]
    return out


def test_ray_tasks_write_the_same_files_as_the_local_executor(ray_variant, tmp_path):
    local = tmp_path / "local"
    run_scenes(load_config(REPO / "assets/configs/demo.toml", TINY), local, workers=1, progress=False)
    assert contents(ray_variant) == contents(local)
    assert len(list((local / "scenes").glob("*.h5"))) >= 2  # real scenes were compared, not empty folders


def test_a_failed_scene_is_reported_and_a_rerun_redoes_only_it(ray_variant, tmp_path):
    out = tmp_path / "variant"
    shutil.copytree(ray_variant, out)
    rows = json.loads((out / "index.json").read_text())["scenes"]
    victim = next(r for r in rows if r["anomaly_types"])  # its anomalous objects come from the bank
    index = int(victim["scene_id"].split("_")[1])
    (out / victim["file"]).unlink()
    (out / "previews" / f"{victim['scene_id']}.jpg").unlink()
    variants = sorted((out / "bank" / victim["shape_id"]).glob("*.npz"))
    originals = {p: p.read_bytes() for p in variants}
    for path in variants:  # a damaged copy of the shape's banked anomalies
        path.write_bytes(b"PK\x03\x04 not a zip archive")
    before = {k: v for k, v in contents(out).items() if k != "report.json" and not k.startswith("bank/")}
    config = load_config(DEMO, TINY)

    result = CliRunner().invoke(generation_cli, ["scenes", "--config", str(DEMO), "--out", str(out), "--executor",
                                                 "ray", *[a for s in TINY for a in ("--set", s)]])
    assert result.exit_code == 1 and f"failed {victim['scene_id']}: ValueError" in result.output, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["done_this_run"] == 0 and report["already_done"] == 2
    failure = report["failed_this_run"][victim["scene_id"]]
    assert failure["scene_index"] == index
    assert "damaged bank variant" in failure["reason"] and victim["shape_id"] in failure["reason"]

    for path, data in originals.items():
        path.write_bytes(data)
    report = run_scenes(config, out, progress=False, ray={})
    assert report["done_this_run"] == 1 and report["already_done"] == 2 and not report["failed_this_run"]
    assert report["per_scene"][0]["scene_id"] == victim["scene_id"]
    after = {k: v for k, v in contents(out).items() if k != "report.json" and not k.startswith("bank/")}
    assert after == {**before, **{k: v for k, v in contents(ray_variant).items() if victim["scene_id"] in k}}


def running_scene_task() -> int | None:
    """The pid of a Ray worker that is running a scene task (Ray titles it after the function)."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::_scene_batch"):
                return int(proc.name)
        except OSError:
            continue
    return None


def test_a_ray_worker_killed_mid_scene_is_retried_to_the_same_files(ray_variant, tmp_path):
    out = tmp_path / "variant"
    runner = threading.Thread(target=lambda: run_scenes(load_config(DEMO, TINY), out, progress=False, ray={}))
    runner.start()
    deadline = time.monotonic() + 300
    while (pid := running_scene_task()) is None:
        assert runner.is_alive() and time.monotonic() < deadline, "no scene task ran"
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    runner.join(timeout=600)
    report = json.loads((out / "report.json").read_text())
    assert not report["failed_this_run"] and report["done_this_run"] + len(report["rejected_this_run"]) == 3
    assert contents(out) == contents(ray_variant)


def test_shard_slurm_is_this_array_task_share(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "7")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")  # sbatch --array=1-8
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "8")
    assert parse_shard("slurm") == (6, 8)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID")
    with pytest.raises(ValueError, match="not inside a Slurm job array"):
        parse_shard("slurm")


# ---- features ---------------------------------------------------------------------------------------------------
def feature_options(variant: Path, out: Path, model: Path):
    from preprocessing.pipeline import FeatureOptions

    return FeatureOptions(variant=variant, out=out, model=str(model), image_size=28, device="cpu",
                          shard_size_mb=0.005, pca_dim=4, progress=False)


def test_features_as_ray_tasks_match_the_local_stage_and_a_rerun_redoes_only_missing_shards(cluster, tmp_path):
    from fixtures_scenes import save_tiny_dinov2, write_variant

    from preprocessing.pipeline import extract_features
    from preprocessing.ray_executor import extract_features_ray

    variant = write_variant(tmp_path / "variant", {"train": 4, "test": 2}, n_views=2, image_size=32)
    model = save_tiny_dinov2(tmp_path / "tiny-dinov2")
    extract_features(feature_options(variant, tmp_path / "local", model))
    summary = extract_features_ray(feature_options(variant, tmp_path / "ray", model))
    assert len(summary.written) >= 3 and not summary.failed  # one task per shard
    assert contents(tmp_path / "ray") == contents(tmp_path / "local")  # shards, records, PCA and manifest

    missing = sorted((tmp_path / "ray").glob("*/*.tar"))[1]
    missing.unlink()
    summary = extract_features_ray(feature_options(variant, tmp_path / "ray", model))
    assert summary.written == [str(missing.relative_to(tmp_path / "ray"))]
    assert contents(tmp_path / "ray") == contents(tmp_path / "local")
    from preprocessing.cli import main as preprocessing_cli

    result = CliRunner().invoke(preprocessing_cli, [
        "features", "--variant", str(variant), "--out", str(tmp_path / "ray"), "--model", str(model), "--image-size",
        "28", "--device", "cpu", "--shard-size-mb", "0.005", "--pca-dim", "4", "--executor", "ray", "--no-progress"])
    assert result.exit_code == 0 and f"0 shard(s) written, {len(list((tmp_path / 'ray').glob('*/*.tar')))} kept" \
        in result.output, result.output
