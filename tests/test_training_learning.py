"""Learning check on synthetic shards: the residual model learns to *compare* the objects of a scene.

Every object of the fixture is drawn from the same distribution (tests/fixtures_shards.py); only its relation to
the other objects of its scene makes it odd. Two controls:
- a per-object MLP on each object's own appearance (its pixels' tokens, averaged over views and pixels): it sees
  everything a per-object classifier could use and must stay at chance, or the fixture leaks the label;
- the same model with a context head of no layers (each object scored from its own crop): it shares the whole
  pipeline but compares objects only where the back-projected volume and the 3D CNN mix neighbours into a crop,
  so it lands a little above chance; the residual model must beat it by a wide margin.
The end-to-end check on rendered scenes is tests/test_learning_end_to_end.py.
"""

import dataclasses

import numpy as np
import torch
import webdataset as wds
from fixtures_shards import TINY_MODEL, synthetic_variant

from preprocessing.shards import load_manifest
from training.config import Config, EvalConfig, TrainConfig
from training.data import DataConfig
from training.metrics import auroc
from training.model import ModelConfig
from training.train import train

torch.set_num_threads(1)


def own_appearance(urls: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per object: mean token over the pixels of its instance mask in all views, and its label."""
    features, labels = [], []
    for sample in wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode():
        tokens, instance = sample["tokens.npy"].astype(np.float64), sample["instance.npy"]
        for i, label in enumerate(sample["labels.npy"]):
            features.append(tokens[instance == i + 1].mean(0))
            labels.append(label)
    return np.stack(features), np.array(labels)


def per_object_mlp_auroc(features: dict) -> float:
    x, y = (torch.from_numpy(a).float() for a in own_appearance(features["train"]))
    x_test, y_test = own_appearance(features["test"])
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(x.shape[1], 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(mlp.parameters(), lr=3e-3)
    for _ in range(500):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(mlp(x).squeeze(-1), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return auroc(y_test, mlp(torch.from_numpy(x_test).float()).squeeze(-1).numpy())


def test_residual_model_compares_objects_where_per_object_controls_cannot(tmp_path):
    features = synthetic_variant(
        tmp_path / "features", 128, 24, objects=(4, 8), per_shard=16, n_views=6, size=0.3, prototypes=4
    )
    cfg = Config(
        data=DataConfig(features=str(features), batch_size=4, num_workers=0),
        model=ModelConfig(**TINY_MODEL),
        train=TrainConfig(epochs=15, lr=2e-3, log_every=8),
        eval=EvalConfig(views=(6,), batch_size=8),
    )
    no_layers = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, head="context", n_layers=0))
    residual = train(cfg, tmp_path / "residual")["test"]
    own_crop = train(no_layers, tmp_path / "no-layers")["test"]
    mlp = per_object_mlp_auroc(load_manifest(features).shard_urls)
    print(
        f"held-out AUROC: residual {residual['auroc']:.3f}, context head without layers {own_crop['auroc']:.3f}, "
        f"per-object MLP {mlp:.3f}, box-only {residual['box_only']['auroc']:.3f}"
    )
    assert residual["box_only"]["auroc"] == 0.5  # all boxes of a scene have one size
    assert mlp <= 0.6, f"a per-object classifier scores {mlp:.3f}: the fixture leaks the label"
    assert residual["auroc"] >= 0.75
    assert residual["auroc"] >= own_crop["auroc"] + 0.1
