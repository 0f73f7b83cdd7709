"""Damaged feature shards, manifests and configs: each is refused with one error line naming the file and what
is wrong, exit code != 0, and nothing already finished is touched. `python -m preprocessing verify` finds what a
cheap size check cannot: flipped bytes, missing or foreign members, counts that disagree."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fixtures_shards import TINY_MODEL, synthetic_variant

from preprocessing.cli import main as preprocessing_cli
from preprocessing.shards import ManifestMismatch, load_manifest, verify_shards
from training.cli import main as training_cli
from training.config import load_config
from training.data import scene_loader
from training.train import read_checkpoint
from training.train import train as run_training

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    return synthetic_variant(tmp_path_factory.mktemp("features"), 4, 2, objects=(3, 4), per_shard=2, n_views=3)


@pytest.fixture
def copy(features, tmp_path) -> Path:
    return Path(shutil.copytree(features, tmp_path / "features"))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    model = "\n".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in TINY_MODEL.items())
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(f"[data]\nbatch_size = 2\nnum_workers = 0\n[model]\n{model}\n[train]\nepochs = 1\n")
    return path


def error_lines(result) -> list[str]:
    """The lines a user sees for a refused command: exactly one `Error: ...`, never a traceback."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("Error:")]


def rewrite_shard(root: Path, relative: str, edit) -> None:
    """Rebuild a shard with `edit(members) -> members` and record its new size and sha256 in the manifest, as a
    tool that rewrote it would: the manifest stays self-consistent, only the contents are wrong."""
    path = root / relative
    with tarfile.open(path) as tar:
        members = [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in edit(members):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    manifest = json.loads((root / "manifest.json").read_text())
    for info in manifest["splits"].values():
        for shard in info["shards"]:
            if shard["path"] == relative:
                shard["bytes"], shard["sha256"] = path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()
    (root / "manifest.json").write_text(json.dumps(manifest))


def train(features: Path, config_file: Path, out: Path, *sets: str):
    args = ["train", "--config", str(config_file), "--features", str(features), "--out", str(out), "--no-eval"]
    return CliRunner().invoke(training_cli, [*args, *[a for s in sets for a in ("--set", s)]])


def test_intact_features_verify(features):
    result = CliRunner().invoke(preprocessing_cli, ["verify", str(features)])
    assert result.exit_code == 0, result.output
    assert verify_shards(features) == []


def test_a_truncated_shard_is_refused_before_training_and_named_by_verify(copy, config_file, tmp_path):
    shard = copy / "train/train-000001.tar"
    shard.write_bytes(shard.read_bytes()[:3000])
    with pytest.raises(ManifestMismatch, match=r"train-000001\.tar: 3000 bytes, .* records"):
        load_manifest(copy)
    result = train(copy, config_file, tmp_path / "run")
    assert len(error_lines(result)) == 1 and "train-000001.tar: 3000 bytes" in error_lines(result)[0]
    assert not (tmp_path / "run" / "checkpoints").exists()
    verify = CliRunner().invoke(preprocessing_cli, ["verify", str(copy)])
    assert verify.exit_code == 1 and f"{shard}: size or sha256 differs" in verify.output
    baselines = CliRunner().invoke(training_cli, ["baselines", "--features", str(copy), "--config", str(config_file),
                                                  "--out", str(tmp_path / "baselines")])
    assert len(error_lines(baselines)) == 1 and "train-000001.tar: 3000 bytes" in error_lines(baselines)[0]


def test_a_flipped_byte_is_found_by_verify(copy):
    shard = copy / "test/test-000000.tar"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    assert verify_shards(copy) == [f"{shard}: size or sha256 differs from the manifest (corrupted or replaced)"]


def test_a_sample_missing_a_member_is_named_by_verify_and_training(copy, config_file, tmp_path):
    rewrite_shard(copy, "train/train-000000.tar", lambda ms: [m for m in ms if m[0] != "train_000001.labels.npy"])
    shard = copy / "train/train-000000.tar"
    assert verify_shards(copy) == [f"{shard}: sample 'train_000001' lacks labels.npy"]
    cfg = load_config(config_file)
    with pytest.raises(ValueError, match=rf"{shard}: sample 'train_000001': lacks \['labels.npy'\]"):
        list(scene_loader([str(shard)], cfg.data, train=False))
    for workers in (0, 1):  # in a DataLoader worker too, where torch wraps the error in the worker's traceback
        result = train(copy, config_file, tmp_path / f"run{workers}", f"data.num_workers={workers}")
        assert len(error_lines(result)) == 1 and "lacks ['labels.npy']" in error_lines(result)[0], result.output


def test_a_pickle_member_is_refused_and_never_unpickled(copy, config_file, tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    rewrite_shard(copy, "train/train-000000.tar", lambda ms: [*ms, ("train_000000.extra.pyd", pickle.dumps(Payload()))])
    cfg = load_config(config_file)
    with pytest.raises(ValueError, match=r"has unexpected \['extra.pyd'\]"):
        list(scene_loader([str(copy / "train/train-000000.tar")], cfg.data, train=False))
    assert not marker.exists()
    assert "has unexpected extra.pyd" in verify_shards(copy)[0]


def test_a_manifest_that_disagrees_with_its_shards(copy):
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["test"]["shards"][0]["samples"] += 1
    manifest["splits"]["test"]["samples"] += 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert verify_shards(copy) == [f"{copy / 'test/test-000000.tar'}: 2 samples, the manifest records 3"]
    manifest["splits"]["test"]["samples"] += 1  # now the split's total disagrees with its own shards
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatch, match="split 'test' counts 4 samples, its shards 3"):
        load_manifest(copy)


@pytest.mark.parametrize("bad_path", ["../../elsewhere.tar", "/etc/hostname", "train/../../x.tar"])
def test_a_manifest_naming_paths_outside_its_folder_is_refused(copy, bad_path):
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["splits"]["train"]["shards"][0]["path"] = bad_path
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"manifest.json: refuses path {bad_path!r}"):
        load_manifest(copy)
    result = CliRunner().invoke(preprocessing_cli, ["verify", str(copy)])
    assert len(error_lines(result)) == 1 and "refuses path" in error_lines(result)[0]


@pytest.mark.parametrize(("sets", "message"), [
    (["train.epochs=abc"], "--set: train.epochs: expected an integer, got 'abc'"),
    (["train.lr=[1, 2]"], "--set: train.lr: expected a number, got [1, 2]"),
    (["model.nope=1"], "--set: unknown key(s) ['nope'] in [model]"),
    (["epochs=3"], "--set expects section.key=value, got 'epochs=3'"),
    (["data.rotate=1"], "--set: data.rotate: expected true or false, got 1"),
])
def test_bad_training_settings_are_one_line_naming_the_key(features, config_file, tmp_path, sets, message):
    result = train(features, config_file, tmp_path / "run", *sets)
    assert error_lines(result) == [f"Error: {message}"] or message in error_lines(result)[0], result.output
    assert not (tmp_path / "run").exists()


def test_a_broken_training_config_file_is_one_line_naming_it(features, config_file, tmp_path):
    for text, message in (("[train]\nepoch = 3\n", "unknown key(s) ['epoch'] in [train]"),
                          ("[train\nepochs = 3\n", "cannot read config"),
                          ("[model]\nvoxel_size = 'big'\n", "model.voxel_size: expected a number")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        lines = error_lines(train(features, bad, tmp_path / "run"))
        assert len(lines) == 1 and str(bad) in lines[0] and message in lines[0], lines


# ---- checkpoints -------------------------------------------------------------------------------------------------
def test_a_checkpoint_carrying_code_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"model": {}, "config": Payload()}, tmp_path / "last.pt")
    with pytest.raises(ValueError, match=r"last\.pt: not a readable checkpoint"):
        read_checkpoint(tmp_path / "last.pt")
    assert not marker.exists()
    result = CliRunner().invoke(training_cli, ["eval", "--checkpoint", str(tmp_path / "last.pt"),
                                               "--out", str(tmp_path / "eval")])
    assert len(error_lines(result)) == 1 and not marker.exists()


def test_a_checkpoint_of_the_previous_version_still_resumes(features, config_file, tmp_path):
    """Before checkpoints were read without pickle, numpy's RNG state was stored as a numpy array."""
    cfg = dataclasses.replace(load_config(config_file), data=dataclasses.replace(load_config(config_file).data,
                                                                                  features=str(features)))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2))
    run_training(cfg, tmp_path / "run", run_eval=False, max_steps=2)
    path = tmp_path / "run/checkpoints/last.pt"
    state = read_checkpoint(path)
    name, key, pos, has_gauss, gauss = state["rng"]["numpy"]
    state["rng"]["numpy"] = (name, key.numpy().astype(np.uint32), pos, has_gauss, gauss)
    torch.save(state, path)
    run_training(cfg, tmp_path / "run", resume=True, run_eval=False)
    assert read_checkpoint(path)["epoch"] == 2
