"""The toys, parts and demo presets end to end through `generation scenes`, on fixture data in the datasets' layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from generation.anomalies import GENERATORS
from generation.config import load_config
from tests.fixtures_scenes import save_tiny_dinov2
from tests.test_sources_datasets import make_abc, make_toys4k

REPO = Path(__file__).resolve().parents[1]
TINY = ["n_scenes=2", "cameras.views=2", "cameras.width=32", "cameras.height=32", "render.preset='draft'",
        "render.samples=2", "scene.objects=[3,4]"]


@pytest.mark.parametrize("preset", ["toys", "parts", "demo"])
def test_preset_types_exist(preset):
    config = load_config(REPO / f"assets/configs/{preset}.toml", ["shapes.root='/nowhere'"])
    assert set(config.anomalies.weights) <= set(GENERATORS)


def test_toys_preset_holds_out_the_papers_unseen_categories():
    config = load_config(REPO / "assets/configs/toys.toml")
    assert config.split.by == "category+instance" and config.scene.objects == (3, 6) and config.n_scenes == 8000
    assert {"mug", "plate", "robot", "glass", "sheep", "shoe", "train", "banana", "cup", "key", "penguin",
            "hammer"} == set(config.split.test_categories)


@pytest.mark.parametrize("preset", ["toys", "parts", "demo"])
def test_preset_generates_scenes_and_split_files(preset, tmp_path):
    extra = list(TINY)
    if preset == "toys":  # one unseen category (mug); one seen category with a held-out and a training instance
        extra += [f"shapes.root='{make_toys4k(tmp_path / 'toys4k', ('mug', 'dinosaur'), 2)}'",
                  "split.test_fraction=0.5", "n_scenes=3"]
    elif preset == "parts":  # the look-alike index with a tiny local DINOv2 (nothing downloads in tests)
        extra += [f"shapes.root='{make_abc(tmp_path / 'abc', 4)}'",
                  f"anomalies.params.similar_shape.encoder='{save_tiny_dinov2(tmp_path / 'dinov2')}'"]
    else:
        extra += ["shapes.instances_per_category=1", "shapes.categories=['mug','bracket']"]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "generation", "scenes", "--config", str(REPO / f"assets/configs/{preset}.toml"),
           "--out", str(out)] + [arg for item in extra for arg in ("--set", item)]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, timeout=600)
    splits = json.loads((out / "splits.json").read_text())
    report = json.loads((out / "report.json").read_text())
    n_scenes = 3 if preset == "toys" else 2
    assert report["done_this_run"] == n_scenes, report["rejected_this_run"]
    assert sorted(sum(splits.values(), [])) == [f"scene_{i:06d}" for i in range(n_scenes)]
    catalogue = json.loads((out / "shapes.json").read_text())["usable"]
    if preset == "toys":  # unit_hash: dinosaur_000 0.22 (held out), dinosaur_001 0.69 (trained on)
        assert {k: v["split"] for k, v in catalogue.items() if k.startswith("dinosaur")} == {
            "dinosaur_000": "seen-test", "dinosaur_001": "train"}
        assert {v["split"] for k, v in catalogue.items() if k.startswith("mug")} == {"unseen-test"}
        assert sorted(splits) == ["seen-test", "train", "unseen-test"]  # scene shares 1/2, 1/4, 1/4: one scene each
