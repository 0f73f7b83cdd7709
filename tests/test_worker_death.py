"""A local worker killed mid-scene (as by the OOM killer): the run goes on, report.json names the scenes left
unfinished with the reason, the command exits 1, and a rerun redoes exactly those scenes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TINY = ["n_scenes=3", "cameras.views=2", "cameras.width=32", "cameras.height=32", "render.samples=2",
        "render.preset='draft'", "scene.objects=[3,4]", "shapes.instances_per_category=2"]


def worker_of(pid: int) -> int | None:
    """The process-pool worker among the children of `pid` (spawned by multiprocessing)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    for child in children:
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                return int(child)
        except FileNotFoundError:
            continue
    return None


def test_a_killed_worker_fails_its_unfinished_scenes_and_a_rerun_redoes_them(tmp_path):
    out = tmp_path / "variant"
    command = [sys.executable, "-m", "generation", "scenes", "--config", str(REPO / "assets/configs/demo.toml"),
               "--out", str(out), *[a for s in TINY for a in ("--set", s)]]
    run = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(out.glob("scenes/*.h5")) + list(out.glob("rejected/*.json")):  # the first scene is done
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    os.kill(worker_of(run.pid), signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=300)
    finished = {p.stem for p in [*out.glob("scenes/*.h5"), *out.glob("rejected/*.json")]}
    report = json.loads((out / "report.json").read_text())
    failed = report["failed_this_run"]
    assert run.returncode == 1 and "Traceback" not in stderr, stderr
    assert len(finished) + len(failed) == 3 and failed and not finished & set(failed)
    for scene, failure in failed.items():
        assert failure["scene_index"] == int(scene.split("_")[1]) and "worker process died" in failure["reason"]
        assert f"failed {scene}: a worker process died" in stderr

    rerun = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    report = json.loads((out / "report.json").read_text())
    assert rerun.returncode == 0, rerun.stderr
    assert report["already_done"] == len(finished) and not report["failed_this_run"]
    assert {o["scene_id"] for o in report["per_scene"]} | set(report["rejected_this_run"]) == set(failed)
