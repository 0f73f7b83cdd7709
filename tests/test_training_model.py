"""The model on synthetic scenes: shapes, padding and permutation invariance for every head, learning."""

import numpy as np
import pytest
import torch
from fixtures_shards import TINY_MODEL, make_scene

from training.data import DataConfig, collate, prepare_scene
from training.model import HEADS, ModelConfig, OddOneOutModel, correspondences

torch.set_num_threads(1)


def prepared(sample, n_views=5):
    return prepare_scene(sample, np.random.default_rng(0), DataConfig(), False, n_views, None)


def permuted(scene: dict, order: np.ndarray) -> dict:
    out = dict(scene)
    for name in ("boxmin", "boxmax", "labels"):
        out[name] = scene[name][order]
    out["anomaly_types"] = [scene["anomaly_types"][i] for i in order]
    return out


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(7)
    return prepared(make_scene(rng, 12)), prepared(make_scene(rng, 3))


@pytest.mark.parametrize("head", HEADS)
def test_predictions_ignore_batch_company_padding_and_order(head, scenes):
    torch.manual_seed(0)
    model = OddOneOutModel(ModelConfig(head=head, **TINY_MODEL)).eval()
    big, small = scenes
    with torch.no_grad():
        alone_big = model(collate([big]))[0][0]
        alone_small = model(collate([small]))[0][0]
        batch = collate([small, big])
        together = model(batch)[0]
        # whatever sits in the padding slots must not matter
        batch["boxmin"][0, 3:] = torch.rand(9, 3) * 5
        batch["boxmax"][0, 3:] = batch["boxmin"][0, 3:] + 3
        scrambled = model(batch)[0]
        order = np.random.default_rng(1).permutation(12)
        shuffled = model(collate([permuted(big, order)]))[0][0]
    assert together.shape == (2, 12) and alone_small.shape == (3,)
    torch.testing.assert_close(together[1], alone_big, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(together[0, :3], alone_small, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scrambled[0, :3], alone_small, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(shuffled, alone_big[order], atol=1e-4, rtol=1e-4)
    assert alone_big.std() > 0  # not a constant output that would pass trivially


@pytest.mark.parametrize("head, lr", [("residual", 2e-3), ("sparse-voxel", 5e-3)])
def test_a_few_steps_reduce_the_loss(head, lr):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch = collate([prepared(make_scene(rng, int(n)), n_views=4) for n in rng.integers(3, 7, size=3)])
    model = OddOneOutModel(ModelConfig(head=head, **TINY_MODEL))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    losses = []
    for _ in range(12):
        _, loss = model(batch, batch["labels"])
        optimizer.zero_grad()
        loss["loss"].backward()
        optimizer.step()
        losses.append(loss["loss"].item())
    assert np.mean(losses[-3:]) < 0.8 * losses[0], losses
    if head == "residual":
        assert set(loss) == {"bce", "normality", "loss"}


def test_full_size_parameter_counts():
    """The default model is the thesis's size class: ~24M trainable parameters beside the 22M of DINOv2."""
    counts = {head: sum(p.numel() for p in OddOneOutModel(ModelConfig(head=head)).parameters()) for head in HEADS}
    assert 20e6 < counts["context"] < counts["residual"] < 30e6
    assert counts["cls"] - counts["context"] == 384 * 256 + 256


@pytest.mark.parametrize("exclude_self", [True, False])
def test_sparse_correspondences_follow_eq7(exclude_self):
    """Each voxel attends to k voxels of every other real object, and to its own object only when asked."""
    torch.manual_seed(0)
    N, S, k = 4, 8, 3
    x = torch.randn(2, N, S, 5)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    # allowed keys per (scene, query object, query voxel, key object)
    allowed = correspondences(x, mask, k, exclude_self)[:, 0].view(2, N, S, N, S).sum(-1)
    for b, n_real in enumerate((4, 3)):
        for q in range(n_real):
            for key in range(N):
                expected = 0 if key >= n_real or (exclude_self and key == q) else k
                assert (allowed[b, q, :, key] == expected).all(), (b, q, key)
    alone = correspondences(x, torch.tensor([[True, False, False, False]] * 2), k, exclude_self)[0, 0]
    assert alone[:S, :S].sum(-1).eq(k).all()  # a lone object still attends to itself


def test_weighted_bce_and_float32_scores_under_bf16():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch = collate([prepared(make_scene(rng, 5), n_views=4), prepared(make_scene(rng, 4), n_views=4)])
    weights = (0.3, 0.7)
    model = OddOneOutModel(ModelConfig(head="context", bce_weights=weights, **TINY_MODEL)).eval()
    with torch.no_grad():
        logits, losses = model(batch, batch["labels"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp_logits, _ = model(batch)
    labels, mask = batch["labels"], batch["mask"]
    target = labels[mask].float()
    per_object = torch.nn.functional.binary_cross_entropy_with_logits(logits[mask], target, reduction="none")
    expected = (per_object * torch.tensor(weights)[labels[mask]]).mean()
    torch.testing.assert_close(losses["bce"], expected)
    # the final layer runs in float32 under autocast: scores are not rounded to bf16 (no ties, GPU = CPU)
    assert amp_logits.dtype == torch.float32
    assert (amp_logits[mask] != amp_logits[mask].bfloat16().float()).any()
