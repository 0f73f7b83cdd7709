"""Pieces of the feature stage: batching across scenes, grid resampling, the shard plan, encoder details."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from fixtures_scenes import save_tiny_dinov2, synthetic_scene

from preprocessing.batching import encode_scenes
from preprocessing.encoder import ViewEncoder, load_model
from preprocessing.images import to_model_input
from preprocessing.pca import fit_pca
from preprocessing.prefetch import prefetch_map
from preprocessing.samples import feature_intrinsics, resample_to_grid
from preprocessing.shardfiles import plan_shards, select_part
from preprocessing.variant import SceneEntry, SceneRead, Variant


class RecordingEncoder:
    """Stands in for the model: a view's 'token' is its first pixel, so outputs can be traced to inputs."""

    def __init__(self):
        self.batch_sizes = []

    def submit(self, views):
        pixels = np.concatenate([chunk[:, 0, 0, 0] for chunk in views]).astype(np.float16)
        self.batch_sizes.append(len(pixels))
        result = (pixels[:, None, None, None], pixels[:, None])
        return type("Done", (), {"result": lambda self: result})()


def fake_read(scene_id: str, n_views: int | None) -> SceneRead:
    entry = SceneEntry(scene_id, "train", Path(f"{scene_id}.h5"))
    if n_views is None:
        return SceneRead(entry, error="unreadable")
    scene = synthetic_scene(scene_id, "train", 0, n_views, 16)
    scene.rgb[:, 0, 0, 0] = np.arange(n_views) + 10 * int(scene_id[-1])
    return SceneRead(entry, scene=scene)


def test_batches_cross_scenes_and_scenes_come_out_whole_in_order():
    reads = [fake_read("s1", 3), fake_read("s2", None), fake_read("s3", 5), fake_read("s4", 2)]
    encoder = RecordingEncoder()
    encoded_counts = []
    out = list(encode_scenes(reads, encoder, batch_size=4, on_views_encoded=encoded_counts.append))
    assert [item.read.entry.scene_id for item in out] == ["s1", "s2", "s3", "s4"]
    assert encoder.batch_sizes == [4, 4, 2] and sum(encoded_counts) == 10
    assert out[1].tokens is None and out[1].read.error == "unreadable"
    for item, n_views in zip([out[0], out[2], out[3]], [3, 5, 2], strict=True):
        expected = np.arange(n_views) + 10 * int(item.read.entry.scene_id[-1])
        np.testing.assert_array_equal(item.tokens[:, 0, 0, 0], expected)
        np.testing.assert_array_equal(item.cls[:, 0], expected)


def test_prefetch_keeps_order_in_threads_and_processes():
    items = list(range(12))
    assert list(prefetch_map(abs, items, workers=1, ahead=3)) == items
    assert list(prefetch_map(abs, items, workers=2, ahead=3)) == items


def test_grid_resampling_takes_the_pixel_under_each_cell_centre():
    masks = np.arange(12 * 12, dtype=np.int32).reshape(1, 12, 12)
    grid = resample_to_grid(masks, (3, 4))
    rows, cols = np.array([2, 6, 10]), np.array([1, 4, 7, 10])  # floor((i + 0.5) * 12 / n)
    np.testing.assert_array_equal(grid[0], masks[0][rows[:, None], cols[None, :]])
    K = np.array([[100.0, 0, 6], [0, 100.0, 6], [0, 0, 1]])
    np.testing.assert_allclose(
        feature_intrinsics(K, (12, 12), (3, 4)), [[100 / 3, 0, 2], [0, 25, 1.5], [0, 0, 1]]
    )


def test_shard_plan_is_stable_and_jobs_partition_it():
    entries = {
        split: [SceneEntry(f"{split}{i:02d}", split, Path("x")) for i in range(n)]
        for split, n in {"test": 3, "train": 7}.items()
    }
    variant = Variant(Path("."), "v", None, entries)
    plans = plan_shards(variant, scenes_per_shard=3)
    assert [plan.tar for plan in plans] == [
        "test/test-000000.tar",
        "train/train-000000.tar",
        "train/train-000001.tar",
        "train/train-000002.tar",
    ]
    assert [len(plan.entries) for plan in plans] == [3, 3, 3, 1]
    parts = [select_part(plans, i, 3) for i in range(3)]
    assert sorted(plan.tar for part in parts for plan in part) == sorted(plan.tar for plan in plans)


def test_register_tokens_are_left_out_of_the_patch_map(tmp_path):
    torch.set_num_threads(1)
    model, info = load_model(str(save_tiny_dinov2(tmp_path / "reg", registers=2)))
    assert info.model_type == "dinov2_with_registers" and info.num_register_tokens == 2
    encoder = ViewEncoder(model, info, torch.device("cpu"), torch.float32, (28, 42))
    views = [np.random.default_rng(0).integers(0, 255, (2, 30, 40, 3), dtype=np.uint8)]
    tokens, cls = encoder.submit(views).result()
    assert encoder.grid == (2, 3) and tokens.shape == (2, 2, 3, 32)
    with torch.no_grad():
        hidden = model(pixel_values=to_model_input(views, (28, 42), torch.device("cpu"))).last_hidden_state
    np.testing.assert_allclose(
        tokens.astype(np.float32), hidden[:, 3:].reshape(2, 2, 3, 32), rtol=1e-3, atol=1e-4
    )
    np.testing.assert_allclose(cls.astype(np.float32), hidden[:, 0], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        ViewEncoder(model, info, torch.device("cpu"), torch.float32, (30, 42))


def test_pca_finds_the_dominant_directions():
    generator = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(16, 16, generator=generator))[0]
    scales = torch.tensor([10.0, 5.0] + [0.1] * 14)
    tokens = (torch.randn(5000, 16, generator=generator) * scales) @ basis.T + 3.0
    pca = fit_pca(tokens, 2, ["s"])
    np.testing.assert_allclose(pca.mean, 3.0, atol=0.5)
    overlap = np.abs(pca.components @ basis[:, :2].numpy())
    np.testing.assert_allclose(overlap, np.eye(2), atol=0.01)
    assert pca.fit["explained_variance_ratio"] > 0.99
