"""Data streaming, the training loop, checkpoint resume and the CLI, on real shards of synthetic scenes."""

import json
import os
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from fixtures_shards import TINY_MODEL, synthetic_variant

from preprocessing.shards import load_manifest
from training.cli import main
from training.config import load_config
from training.data import DataConfig, scene_loader
from training.train import read_checkpoint, train

torch.set_num_threads(1)
N_TRAIN, N_TEST, VIEWS = 8, 4, 6


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    return synthetic_variant(root, N_TRAIN, N_TEST, objects=(3, 6), per_shard=3, n_views=VIEWS)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, features):
    model = "\n".join(f"{k} = {list(v) if isinstance(v, tuple) else v}" for k, v in TINY_MODEL.items())
    text = f"""
[data]
features = "{features}"
batch_size = 4
num_workers = 0
[model]
{model}
[train]
epochs = 2
log_every = 1
[eval]
views = [1, 3, 20]
batch_size = 4
"""
    path = tmp_path_factory.mktemp("config") / "tiny.toml"
    path.write_text(text.replace("True", "true").replace("False", "false"))
    return path


def keys_of(loader):
    return [key for batch in loader for key in batch["keys"]]


def test_each_training_scene_once_per_epoch_across_workers(features):
    urls = load_manifest(features).shard_urls["train"]
    cfg = DataConfig(batch_size=3, num_workers=2, shuffle_buffer=4)
    keys = keys_of(scene_loader(urls, cfg, train=True, seed=1, epoch=0))
    assert sorted(keys) == [f"train_{i:06d}" for i in range(N_TRAIN)]
    assert keys_of(scene_loader(urls, cfg, train=True, seed=1, epoch=0)) == keys  # a pure function of the epoch
    assert keys_of(scene_loader(urls, cfg, train=True, seed=1, epoch=1)) != keys


def test_ranks_read_disjoint_shards(features, monkeypatch):
    urls = load_manifest(features).shard_urls["train"]
    shares = []
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        shares.append(set(keys_of(scene_loader(urls, DataConfig(batch_size=2, num_workers=2), train=True))))
    assert shares[0] and shares[1] and not shares[0] & shares[1]
    assert shares[0] | shares[1] == {f"train_{i:06d}" for i in range(N_TRAIN)}


def test_views_labels_and_padding_of_batches(features):
    urls = load_manifest(features).shard_urls
    batch = next(iter(scene_loader(urls["test"], DataConfig(batch_size=4, num_workers=0), train=False, n_views=3)))
    assert batch["keys"] == [f"test_{i:06d}" for i in range(4)]  # evaluation keeps the shard order
    assert batch["views"] == [[0, 2, 4]] * 4  # fixed, evenly spaced on the ring of 6
    assert batch["tokens"].shape[:2] == (4, 3) and batch["tokens"].dtype == torch.float16
    n = batch["mask"].sum(1)
    assert (batch["labels"][~batch["mask"]] == -1).all() and (n >= 3).all() and batch["mask"].shape[1] == n.max()
    cfg = DataConfig(batch_size=N_TRAIN, num_workers=0)
    plain = next(iter(scene_loader(urls["train"], cfg, train=True, epoch=0)))
    assert all(len(set(v)) == 5 for v in plain["views"])  # 10 drawn (capped at 6), 5 used
    shuffled = [next(iter(scene_loader(urls["train"], cfg, train=True, epoch=e, label_seed=3))) for e in (0, 1)]
    labels = [by_key(b) for b in (plain, *shuffled)]
    assert (labels[1].sum(1) == labels[0].sum(1)).all()  # permuted within each scene
    assert not torch.equal(labels[1], labels[0])
    assert torch.equal(labels[1], labels[2])  # the same permutation every epoch


def by_key(batch):
    """Labels in key order (training batches come shuffled)."""
    return batch["labels"][sorted(range(len(batch["keys"])), key=batch["keys"].__getitem__)]


def test_resume_continues_exactly(tmp_path, config_file):
    cfg = load_config(config_file, ["model.dropout=0.1"])  # dropout: the RNG state must be restored too
    train(cfg, tmp_path / "straight", run_eval=False)
    steps_per_epoch = -(-N_TRAIN // cfg.data.batch_size)
    train(cfg, tmp_path / "resumed", run_eval=False, max_steps=steps_per_epoch)
    with pytest.raises(FileExistsError):
        train(cfg, tmp_path / "resumed", run_eval=False)
    train(cfg, tmp_path / "resumed", resume=True, run_eval=False)
    straight = read_checkpoint(tmp_path / "straight/checkpoints/last.pt")  # weights_only: no pickle
    resumed = read_checkpoint(tmp_path / "resumed/checkpoints/last.pt")
    assert straight["step"] == resumed["step"] == 2 * steps_per_epoch
    for name, value in straight["model"].items():
        assert torch.equal(value, resumed["model"][name]), name
    rows = (tmp_path / "resumed/log.csv").read_text().splitlines()
    assert rows[0].startswith("step,epoch,loss") and len(rows) == 1 + 2 * steps_per_epoch
    with pytest.raises(ValueError, match="config differs"):
        train(load_config(config_file, ["train.lr=1e-3"]), tmp_path / "resumed", resume=True, run_eval=False)


def test_cli_train_eval_and_baselines(tmp_path, config_file, features):
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(
        main, ["train", "--config", str(config_file), "--out", str(run), "--set", "model.head='cls'"]
    )
    assert result.exit_code == 0, result.output
    assert "test: AUROC" in result.output
    stored = json.loads((run / "config.json").read_text())
    assert stored["config"]["model"]["head"] == "cls" and stored["seeds"]["torch"] == 0
    results = json.loads((run / "eval/results.json").read_text())["test"]
    assert results["n_scenes"] == N_TEST and 0 <= results["auroc"] <= 1
    assert list(results["by_views"]) == ["1", "3", "6"]  # 20 capped at the 6 views the scenes have
    assert results["view_indices"]["6"]["3"] == [0, 2, 4]
    assert {"material", "none"} <= set(results["accuracy_by_type"])
    for name in ("curves.png", "log.csv", "eval/results.md", "eval/test.png", "eval/test_scores.csv"):
        assert (run / name).stat().st_size > 0, name

    out = tmp_path / "eval"
    args = ["eval", "--checkpoint", str(run / "checkpoints/last.pt"), "--out", str(out), "--views", "3"]
    assert runner.invoke(main, ["eval", "--run", str(run), "--views", "3"]).exit_code == 0
    assert json.loads((run / "eval/results.json").read_text())["test"]["views"] == 3
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "results.json").read_text())["test"]["views"] == 3

    out = tmp_path / "baselines"
    args = ["baselines", "--features", str(features), "--config", str(config_file), "--out", str(out)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "baselines.json").read_text())["splits"]["test"]
    assert len(rows) == 12 and all(r["n_scenes"] == N_TEST for r in rows.values())


def test_shuffled_labels_flag_is_recorded(tmp_path, config_file):
    result = CliRunner().invoke(
        main, ["train", "--config", str(config_file), "--out", str(tmp_path), "--shuffle-labels", "--no-eval"]
    )
    assert result.exit_code == 0, result.output
    stored = json.loads((tmp_path / "config.json").read_text())
    assert stored["shuffle_labels"] and stored["seeds"]["label_shuffle"] == 0
    assert not (tmp_path / "eval").exists()


def test_trains_on_shards_written_by_preprocessing(tmp_path, config_file):
    """The real feature stage (synthetic scene files, tiny random DINOv2) feeds training and evaluation."""
    from fixtures_scenes import save_tiny_dinov2, write_variant

    from preprocessing.pipeline import FeatureOptions, extract_features

    variant = write_variant(tmp_path / "variant", {"train": 4, "test": 2}, n_views=4, image_size=56)
    model = save_tiny_dinov2(tmp_path / "dinov2")
    out = tmp_path / "features"
    extract_features(FeatureOptions(variant=variant, out=out, model=str(model), image_size=56, progress=False))
    cfg = load_config(config_file, [f"data.features='{out}'", "train.epochs=1", "eval.views=[1,4]"])
    results = train(cfg, tmp_path / "run")["test"]
    assert results["n_scenes"] == 2 and results["n_objects"] == 6 and results["views"] == 4
    stored = json.loads((tmp_path / "run/config.json").read_text())["config"]["model"]
    assert stored["token_dim"] == stored["cls_dim"] == 32  # taken from the manifest


def test_torchrun_ddp_on_cpu(tmp_path, config_file):
    """Two Gloo processes: each reads its own shards, rank 0 logs, checkpoints and evaluates."""
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = [*torchrun, "-m", "training", "train", "--config", str(config_file), "--out", str(tmp_path)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    run = json.loads((tmp_path / "config.json").read_text())
    assert run["world_size"] == 2 and run["steps_per_epoch"] == -(-N_TRAIN // (4 * 2))
    assert json.loads((tmp_path / "eval/results.json").read_text())["test"]["n_scenes"] == N_TEST
