"""Learning check on synthetic shards: the residual model finds the odd objects of held-out scenes, and the
same run with shuffled training labels does not.

The token features make the odd one out visible only by comparison inside a scene (every scene draws its own
appearance and its own anomaly offset), so a per-object classifier cannot pass. The end-to-end check on
rendered scenes (generator -> DINOv2 features -> training) is described in docs/training.md.
"""

import torch
from fixtures_shards import TINY_MODEL, synthetic_variant

from training.config import Config, EvalConfig, TrainConfig
from training.data import DataConfig
from training.model import ModelConfig
from training.train import train

torch.set_num_threads(1)


def test_residual_model_beats_chance_and_shuffled_labels(tmp_path):
    features = synthetic_variant(
        tmp_path / "features", 64, 24, objects=(3, 6), per_shard=8, n_views=6, noise=0.3, contrast=4.0
    )
    cfg = Config(
        data=DataConfig(features=str(features), batch_size=8, num_workers=0),
        model=ModelConfig(**TINY_MODEL),
        train=TrainConfig(epochs=15, lr=2e-3, log_every=8),
        eval=EvalConfig(views=(6,), batch_size=8),
    )
    learned = train(cfg, tmp_path / "labels")["test"]["auroc"]
    shuffled = train(cfg, tmp_path / "shuffled", shuffle_labels=True)["test"]["auroc"]
    print(f"test AUROC: {learned:.3f} with labels, {shuffled:.3f} with shuffled labels")
    assert learned > 0.75
    assert learned - shuffled > 0.2
