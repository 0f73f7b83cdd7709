"""Bad settings, an unwritable output folder and a full disk, through the three command lines: one error line
naming the file or key and what is wrong, exit code != 0, and finished output left exactly as it was.

A full disk is simulated with a file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) in a subprocess: writes past
the limit fail with EFBIG as they would with ENOSPC."""

from __future__ import annotations

import hashlib
import json
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from fixtures_scenes import save_tiny_dinov2, write_variant
from fixtures_shards import TINY_MODEL, synthetic_variant

from generation.cli import main as generation_cli
from preprocessing.cli import main as preprocessing_cli
from training.cli import main as training_cli
from training.config import load_config
from training.train import read_checkpoint
from training.train import train as run_training

REPO = Path(__file__).resolve().parents[1]
DEMO = str(REPO / "assets/configs/demo.toml")
torch.set_num_threads(1)


def error_lines(result) -> list[str]:
    """Exactly what a refused command must show: exit code != 0, no traceback, the `Error: ...` lines."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output, result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def limited(limit_bytes: int):
    """preexec_fn: files of this process cannot grow past `limit_bytes` (a full disk, per file)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing the write
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))
    return apply


# ---- generation ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("sets", "message"), [
    (["n_scenes=abc"], "config.n_scenes: expected an integer, got 'abc'"),
    (["cameras=3"], "config.cameras: expected a table, got 3"),
    (["scene.objects=[3]"], "config.scene.objects: expected 2 values, got 1"),
    (["shapes.categories='mug'"], "config.shapes.categories: expected an array, got 'mug'"),
    (["render.samples=true"], "config.render.samples: expected an integer, got True"),
    (["nscenes=4"], "config: unknown key 'nscenes'"),
    (["n_scenes"], "override 'n_scenes': expected key=value"),
])
def test_bad_generation_settings_are_one_line_and_create_nothing(tmp_path, sets, message):
    out = tmp_path / "variant"
    result = CliRunner().invoke(generation_cli, ["scenes", "--out", str(out), *[a for s in sets for a in ("--set", s)]])
    lines = error_lines(result)
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists()


def test_a_generation_config_file_with_an_unknown_key_is_named(tmp_path):
    config = tmp_path / "mine.toml"
    config.write_text("n_scenes = 2\n[cameras]\nview = 4\n")
    lines = error_lines(CliRunner().invoke(generation_cli, ["scenes", "--config", str(config), "--out",
                                                           str(tmp_path / "v")]))
    assert len(lines) == 1 and f"{config}.cameras: unknown key 'view'" in lines[0]


def test_an_unwritable_generation_output_folder_is_one_line_naming_it(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    lines = error_lines(CliRunner().invoke(generation_cli, ["scenes", "--out", str(blocker / "variant"),
                                                           "--set", "n_scenes=1"]))
    assert len(lines) == 1 and str(blocker) in lines[0] and "Not a directory" in lines[0]
    assert blocker.read_text() == "not a folder"


def test_a_full_disk_while_writing_a_scene_names_it_and_keeps_finished_files(tmp_path):
    """HDF5 failing to write crashed the worker (segfault) and left the run waiting forever; now the scene file
    is written with plain file I/O and the run ends with one line."""
    out = tmp_path / "variant"
    tiny = ["n_scenes=2", "cameras.views=2", "cameras.width=32", "cameras.height=32", "render.samples=2",
            "render.preset='draft'", "shapes.instances_per_category=2"]
    command = [sys.executable, "-m", "generation", "scenes", "--config", DEMO, "--out", str(out),
               *[a for s in tiny for a in ("--set", s)]]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    (out / "scenes/scene_000001.h5").unlink()  # one scene still to make (as after a kill)
    before = {k: v for k, v in digests(out).items() if not k.startswith(".work")}
    limit = (out / "scenes/scene_000000.h5").stat().st_size // 2
    failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, preexec_fn=limited(limit),
                            timeout=600)
    lines = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert failed.returncode != 0 and "Traceback" not in failed.stderr, failed.stderr
    assert len(lines) == 1 and f"{out / 'scenes/scene_000001.h5'}: cannot write the scene file" in lines[0]
    assert {k: v for k, v in digests(out).items() if not k.startswith(".work")} == before


# ---- preprocessing ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> Path:
    return write_variant(tmp_path_factory.mktemp("variant"), {"train": 2, "test": 2}, n_views=2, image_size=32)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_dinov2(tmp_path_factory.mktemp("model") / "tiny-dinov2")


def features_args(variant: Path, out: Path, model: Path) -> list[str]:
    return ["features", "--variant", str(variant), "--out", str(out), "--model", str(model), "--image-size", "28",
            "--device", "cpu", "--shard-size-mb", "0.005", "--no-progress"]


@pytest.mark.parametrize(("option", "value"), [("--image-size", "abc"), ("--shard", "3/2"), ("--device", "tpu")])
def test_bad_feature_options_are_one_line(variant, tmp_path, option, value):
    result = CliRunner().invoke(preprocessing_cli, ["features", "--variant", str(variant), option, value])
    lines = error_lines(result)
    assert len(lines) == 1 and value in lines[0]


def test_an_unwritable_feature_folder_is_one_line_naming_it(variant, tiny_model, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    lines = error_lines(CliRunner().invoke(preprocessing_cli, features_args(variant, blocker / "f", tiny_model)))
    assert len(lines) == 1 and str(blocker) in lines[0]


def test_a_full_disk_while_writing_shards_names_the_shard_and_keeps_finished_ones(variant, tiny_model, tmp_path):
    out = tmp_path / "features"
    command = [sys.executable, "-m", "preprocessing", *features_args(variant, out, tiny_model)]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)
    shards = sorted(p.name for p in out.rglob("*.tar"))
    assert len(shards) >= 2
    # one shard still to write (as after a kill); the disk fills up while it is written
    (out / "test/test-000000.tar").unlink()
    (out / "test/test-000000.json").unlink()
    before = digests(out)
    size = (out / "train/train-000000.tar").stat().st_size
    failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, preexec_fn=limited(size // 2))
    assert failed.returncode != 0
    lines = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert "Traceback" not in failed.stderr, failed.stderr
    assert len(lines) == 1 and f"{out / 'test/test-000000.tar'}: cannot write the shard" in lines[0], failed.stderr
    assert "File too large" in lines[0]
    assert digests(out) == before  # finished shards, records and manifest untouched; no partial file left
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)  # disk freed: the rerun completes
    assert sorted(p.name for p in out.rglob("*.tar")) == shards


# ---- training --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    return synthetic_variant(tmp_path_factory.mktemp("features"), 4, 2, objects=(3, 4), per_shard=2, n_views=3)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, features) -> Path:
    model = "\n".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in TINY_MODEL.items())
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(f'[data]\nfeatures = "{features}"\nbatch_size = 2\nnum_workers = 0\n[model]\n{model}\n'
                    "[train]\nepochs = 2\n")
    return path


def test_an_unwritable_run_folder_is_one_line_naming_it(config_file, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = CliRunner().invoke(training_cli, ["train", "--config", str(config_file), "--out", str(blocker / "run")])
    lines = error_lines(result)
    assert len(lines) == 1 and str(blocker) in lines[0]


def test_a_full_disk_at_a_checkpoint_names_it_and_keeps_the_previous_one(config_file, tmp_path):
    run = tmp_path / "run"
    run_training(load_config(config_file), run, run_eval=False, max_steps=2)  # epoch 1 of 2 checkpointed
    checkpoint = run / "checkpoints/last.pt"
    before = checkpoint.read_bytes()
    command = [sys.executable, "-m", "training", "train", "--config", str(config_file), "--out", str(run),
               "--resume", "--no-eval"]
    failed = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                            preexec_fn=limited(len(before) // 2))
    assert failed.returncode != 0 and "Traceback" not in failed.stderr, failed.stderr
    lines = [line for line in failed.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and f"{checkpoint}: cannot write the checkpoint" in lines[0], failed.stderr
    assert checkpoint.read_bytes() == before and not list(checkpoint.parent.glob("*.tmp"))
    assert read_checkpoint(checkpoint)["epoch"] == 1
    subprocess.run(command, cwd=REPO, check=True, capture_output=True)  # space again: the resume finishes
    assert read_checkpoint(checkpoint)["epoch"] == 2
    assert json.loads((run / "config.json").read_text())["steps_per_epoch"] == 2


def test_a_worker_killed_mid_scene_fails_its_scenes_in_the_report_instead_of_a_hang(tmp_path):
    """The OOM killer or a crash in Blender ends a worker: multiprocessing.Pool waited forever for its scene. Now
    the scenes its pool left unfinished are in report.json with the reason, and a rerun makes exactly those."""
    import psutil

    out = tmp_path / "variant"
    tiny = ["n_scenes=3", "cameras.views=2", "cameras.width=32", "cameras.height=32", "render.samples=2",
            "render.preset='draft'", "shapes.instances_per_category=2"]
    command = [sys.executable, "-m", "generation", "scenes", "--config", DEMO, "--out", str(out),
               *[a for s in tiny for a in ("--set", s)]]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not list((out / "scenes").glob("*.h5")):
        time.sleep(0.05)
    workers = [p for p in psutil.Process(process.pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]
    assert workers and process.poll() is None, "the kill should land while scenes are being made"
    for worker in workers:
        worker.kill()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1 and "Traceback" not in stderr and "rerun the same command" in stderr, stderr
    failed = json.loads((out / "report.json").read_text())["failed_this_run"]
    assert failed, stderr
    for scene, failure in failed.items():
        assert failure["scene_index"] == int(scene.split("_")[1]) and "worker process died" in failure["reason"]
        assert f"failed {scene}: a worker process died" in stderr
    finished = {p.name for p in (out / "scenes").glob("*.h5")}
    assert not finished & {f"{scene}.h5" for scene in failed}
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, timeout=600)
    made = {p.name for p in (out / "scenes").glob("*.h5")} | {f"{p.stem}.h5" for p in (out / "rejected").glob("*.json")}
    assert finished < made and len(made) == 3


def test_scene_workers_are_renewed_in_batches_and_every_scene_is_made(tmp_path, monkeypatch):
    """Batches of fresh workers replace `max_tasks_per_child`, which deadlocks on Python 3.11 (CPython gh-115634)."""
    from generation.config import load_config as load_generation_config
    from generation.runner import run_scenes

    monkeypatch.setattr("generation.runner.SCENES_PER_WORKER", 2)
    tiny = ["n_scenes=5", "cameras.views=2", "cameras.width=32", "cameras.height=32", "render.samples=2",
            "render.preset='draft'", "shapes.instances_per_category=2"]
    report = run_scenes(load_generation_config(DEMO, tiny), tmp_path / "variant", progress=False)
    assert report["done_this_run"] + len(report["rejected_this_run"]) == 5
