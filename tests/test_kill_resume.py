"""SIGKILL at (seeded) random moments of `scenes`, `features` and `train`, then the same command again: the final
files are those of an uninterrupted run. (test_generation.py also kills `scenes` right after its first scene.)"""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures_scenes import save_tiny_dinov2, write_variant
from fixtures_shards import TINY_MODEL, synthetic_variant

from training.train import read_checkpoint

REPO = Path(__file__).resolve().parents[1]


def kill_when(command: list[str], ready, delay: float) -> None:
    """Start `command`, wait until `ready()` (or the process ends), `delay` seconds more, then SIGKILL its group."""
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not ready():
        time.sleep(0.02)
    time.sleep(delay)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def file_bytes(folder: Path, pattern: str) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.glob(pattern))}


def test_scenes_killed_at_random_moments_resume_to_the_same_files(tmp_path):
    """Kills land anywhere: while shapes are catalogued, variants banked, scenes rendered or reports written."""
    tiny = ["n_scenes=3", "cameras.views=2", "cameras.width=32", "cameras.height=32", "render.samples=2",
            "render.preset='draft'", "shapes.instances_per_category=2"]

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "generation", "scenes", "--config", str(REPO / "assets/configs/demo.toml"),
                "--out", str(out), *[a for item in tiny for a in ("--set", item)]]

    straight = tmp_path / "straight"
    start = time.time()
    subprocess.run(command(straight), cwd=REPO, check=True, capture_output=True)
    seconds = time.time() - start
    rng = random.Random(0)
    killed = tmp_path / "killed"
    made = []
    for _ in range(2):
        kill_when(command(killed), lambda: True, rng.uniform(0.2, 0.8) * seconds)
        made.append(len(list(killed.glob("scenes/*.h5"))) + len(list(killed.glob("rejected/*.json"))))
    assert made[0] < 3, "the first kill lands before a run's full duration"
    subprocess.run(command(killed), cwd=REPO, check=True, capture_output=True)
    for pattern in ("scenes/*", "previews/*", "rejected/*", "bank/*/*", "shapes.json", "splits.json"):
        assert file_bytes(killed, pattern) == file_bytes(straight, pattern), pattern
    assert not list(killed.rglob("*.tmp"))


@pytest.mark.parametrize("seed", [0, 1])
def test_features_killed_at_random_moments_resume_to_the_same_shard_bytes(tmp_path, seed):
    variant = write_variant(tmp_path / "variant", {"train": 6, "test": 2}, n_views=2, image_size=32)
    model = save_tiny_dinov2(tmp_path / "tiny-dinov2")

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "preprocessing", "features", "--variant", str(variant), "--out", str(out),
                "--model", str(model), "--image-size", "28", "--device", "cpu", "--shard-size-mb", "0.005",
                "--no-progress"]

    straight = tmp_path / "straight"
    subprocess.run(command(straight), cwd=REPO, check=True, capture_output=True)
    assert len(list(straight.glob("*/*.tar"))) >= 3
    rng = random.Random(seed)
    killed = tmp_path / "killed"
    for _ in range(2):  # killed twice, once early and once later in the shard sequence
        kill_when(command(killed), lambda: any(killed.glob("*/*.tar*")), rng.uniform(0.0, 0.4))
    subprocess.run(command(killed), cwd=REPO, check=True, capture_output=True)
    assert file_bytes(killed, "*/*.tar") == file_bytes(straight, "*/*.tar")
    assert file_bytes(killed, "*/*.json") == file_bytes(straight, "*/*.json")
    assert not list(killed.rglob("*.tmp"))


def learning_columns(log: Path) -> list[tuple]:
    """log.csv without its wall-clock columns."""
    with open(log, newline="") as f:
        return [(r["step"], r["epoch"], r["loss"], r["bce"], r["grad_norm"], r["lr"]) for r in csv.DictReader(f)]


def test_training_killed_at_random_moments_resumes_to_the_uninterrupted_run(tmp_path):
    features = synthetic_variant(tmp_path / "features", 6, 2, objects=(3, 4), per_shard=2, n_views=3)
    settings = {**TINY_MODEL, "dropout": 0.1}  # with dropout the RNG state must be restored too
    model = "\n".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in settings.items())
    config = tmp_path / "tiny.toml"
    config.write_text(f'[data]\nfeatures = "{features}"\nbatch_size = 2\nnum_workers = 0\n[model]\n{model}\n'
                      "[train]\nepochs = 8\nlog_every = 1\n")

    def command(out: Path, resume: bool) -> list[str]:
        return [sys.executable, "-m", "training", "train", "--config", str(config), "--out", str(out), "--no-eval",
                *(["--resume"] if resume else [])]

    straight = tmp_path / "straight"
    subprocess.run(command(straight, False), cwd=REPO, check=True, capture_output=True)
    rng = random.Random(0)
    run, checkpoint = tmp_path / "killed", tmp_path / "killed/checkpoints/last.pt"
    epochs_at_kill = []
    for _ in range(2):
        kill_when(command(run, checkpoint.exists()), checkpoint.exists, rng.uniform(0.0, 0.5))
        epochs_at_kill.append(read_checkpoint(checkpoint)["epoch"])
    assert epochs_at_kill[0] < 8, "the kill should land before the end"
    subprocess.run(command(run, True), cwd=REPO, check=True, capture_output=True)

    done, resumed = read_checkpoint(straight / "checkpoints/last.pt"), read_checkpoint(checkpoint)
    assert done["step"] == resumed["step"] and done["epoch"] == resumed["epoch"] == 8
    for name, value in done["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    for key, state in done["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(resumed["optimizer"]["state"][key][name]))
    assert done["scheduler"] == resumed["scheduler"]
    assert torch.equal(done["rng"]["torch"], resumed["rng"]["torch"])
    assert torch.equal(done["rng"]["numpy"][1], resumed["rng"]["numpy"][1])
    assert done["rng"]["python"] == resumed["rng"]["python"]
    assert learning_columns(run / "log.csv") == learning_columns(straight / "log.csv")
    assert not list(run.rglob("*.tmp"))
