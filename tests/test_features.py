"""The feature stage end to end: real scene files, a real (tiny) DINOv2 from a local folder, real shards."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import webdataset as wds
from click.testing import CliRunner
from fixtures_scenes import save_tiny_dinov2, write_variant
from transformers import AutoModel

from generation.cameras import project
from generation.scenefile import box_corners, read_scene
from preprocessing.cli import main
from preprocessing.shards import ManifestMismatch, load_manifest, verify_shards

SPLITS = {"train": 4, "test": 2}
VIEWS, IMAGE, INPUT, GRID = 3, 64, 56, 4
SMALL_SHARDS = "0.03"  # MB: two scenes of the tiny model per shard


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The machine is shared; tiny models gain nothing from more threads."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return save_tiny_dinov2(tmp_path_factory.mktemp("model") / "tiny-dinov2")


@pytest.fixture(scope="module")
def variant(tmp_path_factory) -> Path:
    return write_variant(tmp_path_factory.mktemp("variant"), SPLITS, n_views=VIEWS, image_size=IMAGE)


def run_features(variant: Path, out: Path, model: Path | str, *extra: str, expect_ok: bool = True):
    args = [
        "features",
        "--variant",
        str(variant),
        "--out",
        str(out),
        "--model",
        str(model),
        "--image-size",
        str(INPUT),
        "--no-progress",
        *extra,
    ]
    result = CliRunner().invoke(main, args)
    if expect_ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def features(variant, tiny_model, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("features")
    run_features(variant, out, tiny_model, "--shard-size-mb", SMALL_SHARDS)
    return out


def read_samples(urls: list[str]) -> list[dict]:
    return list(wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode())


def shard_keys(folder: Path) -> list[str]:
    """Scene keys of every finished shard under `folder`, read from the tar headers (duplicates kept)."""
    keys = []
    for path in sorted(folder.glob("*/*.tar")):
        with tarfile.open(path) as tar:
            keys += [name.split(".")[0] for name in tar.getnames() if name.endswith(".tokens.npy")]
    return keys


def direct_tokens(model_dir: Path, rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the model gives on the views, preprocessed here independently of the package."""
    model = AutoModel.from_pretrained(model_dir).eval()
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).float() / 255
    x = F.interpolate(x, size=(INPUT, INPUT), mode="bilinear", align_corners=False, antialias=True)
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        hidden = model(pixel_values=x).last_hidden_state
    return hidden[:, 1:].reshape(len(rgb), GRID, GRID, -1).numpy(), hidden[:, 0].numpy()


def test_round_trip_tokens_and_cls_equal_the_model_output(features, variant, tiny_model):
    manifest = load_manifest(features)
    samples = read_samples(manifest.shard_urls["train"] + manifest.shard_urls["test"])
    assert sorted(s["__key__"] for s in samples) == [f"scene_{i:06d}" for i in range(6)]
    for sample in samples:
        scene = read_scene(variant / "scenes" / f"{sample['__key__']}.h5")
        tokens, cls = direct_tokens(tiny_model, scene.rgb)
        assert sample["tokens.npy"].dtype == np.float16 and sample["tokens.npy"].shape == (
            VIEWS,
            GRID,
            GRID,
            32,
        )
        np.testing.assert_allclose(sample["tokens.npy"].astype(np.float32), tokens, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(sample["cls.npy"].astype(np.float32), cls, rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(sample["k.npy"], scene.intrinsics, rtol=1e-6)
        np.testing.assert_allclose(sample["w2c.npy"], scene.world_to_camera, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(sample["boxmin.npy"], scene.box_min, rtol=1e-6)
        np.testing.assert_array_equal(sample["labels.npy"], scene.labels)
        cell_centres = (np.arange(GRID) + 0.5) * IMAGE / GRID
        np.testing.assert_array_equal(
            sample["instance.npy"],
            scene.instance[:, cell_centres.astype(int)][:, :, cell_centres.astype(int)],
        )
        assert sample["meta.json"]["split"] == scene.split
        assert sample["meta.json"]["anomaly_types"] == scene.anomaly_types


def test_kfeat_projects_like_k_scaled_to_the_grid(features):
    sample = read_samples(load_manifest(features).shard_urls["train"])[0]
    for view in range(VIEWS):
        for box in range(len(sample["labels.npy"])):
            corners = box_corners(
                sample["boxmin.npy"][box].astype(float), sample["boxmax.npy"][box].astype(float)
            )
            on_grid, _ = project(sample["kfeat.npy"][view].astype(float), sample["w2c.npy"][view], corners)
            in_pixels, _ = project(sample["k.npy"][view].astype(float), sample["w2c.npy"][view], corners)
            np.testing.assert_allclose(on_grid, in_pixels * GRID / IMAGE, rtol=1e-5, atol=1e-4)
            # the centre of every cell of the object in the resampled mask lies in its projected box
            # (within one image pixel: the box contains the mask's pixels, not just their centres)
            rows, cols = np.nonzero(sample["instance.npy"][view] == box + 1)
            pixel = GRID / IMAGE
            (u0, v0), (u1, v1) = on_grid.min(0) - pixel, on_grid.max(0) + pixel
            assert np.all((cols + 0.5 >= u0) & (cols + 0.5 <= u1) & (rows + 0.5 >= v0) & (rows + 0.5 <= v1))


def test_manifest_describes_every_shard(features, variant):
    manifest = load_manifest(
        features,
        expect={
            "layout": "views,h,w,C",
            "grid": (GRID, GRID),
            "image_size": INPUT,
            "token_dim": 32,
            "hidden_size": 32,
            "pca_dim": None,
        },
    )
    data = manifest.data
    assert data["complete"] and data["skipped"] == [] and data["missing_shards"] == []
    assert manifest.samples == SPLITS
    assert len(manifest.shard_urls["train"]) == 2  # the shard size forces two scenes per shard
    assert data["source"]["variant_id"] == json.loads((variant / "index.json").read_text())["variant_id"]
    assert data["encoder"]["weights_sha256"] and data["compute_dtype"] == "float32"
    assert verify_shards(features) == []


def test_manifest_of_another_encoder_or_layout_is_refused(features):
    with pytest.raises(ManifestMismatch) as refused:
        load_manifest(
            features, expect={"encoder": "facebook/dinov2-small", "token_dim": 384, "grid": [18, 18]}
        )
    message = str(refused.value)
    assert "encoder is" in message and "'facebook/dinov2-small'" in message
    assert "token_dim is 32, expected 384" in message and "grid is [4, 4], expected [18, 18]" in message
    with pytest.raises(ValueError, match="unknown expect keys"):
        load_manifest(features, expect={"tokens_dim": 32})


def test_broken_scene_files_are_reported_and_skipped(variant, tiny_model, tmp_path):
    broken = tmp_path / "variant"
    shutil.copytree(variant, broken)
    truncated = broken / "scenes" / "scene_000001.h5"
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    (broken / "scenes" / "scene_000002.h5").write_bytes(b"not an hdf5 file" * 100)
    (broken / "scenes" / "scene_000004.h5").unlink()

    result = run_features(broken, tmp_path / "features", tiny_model)
    assert "skipped scene_000001 (train)" in result.output
    assert "skipped scene_000004 (test): file missing" in result.output
    manifest = load_manifest(tmp_path / "features")
    skipped = {entry["scene_id"]: entry["reason"] for entry in manifest.data["skipped"]}
    assert sorted(skipped) == ["scene_000001", "scene_000002", "scene_000004"]
    assert all(reason.startswith("unreadable") for key, reason in skipped.items() if key != "scene_000004")
    assert manifest.samples == {"train": 2, "test": 1}
    assert sorted(shard_keys(tmp_path / "features")) == ["scene_000000", "scene_000003", "scene_000005"]


def test_rerun_after_a_kill_redoes_only_unfinished_shards(variant, tiny_model, tmp_path):
    out = tmp_path / "features"
    run_features(variant, out, tiny_model, "--shard-size-mb", SMALL_SHARDS)
    kept_stat = (out / "train/train-000000.tar").stat()
    # killed while writing train-000001: only the partial tar exists
    partial = out / "train/train-000001.tar"
    partial.rename(out / "train/train-000001.tar.tmp")
    (out / "train/train-000001.json").unlink()
    # killed between writing the record of test-000000 and renaming its tar into place
    tar = out / "test/test-000000.tar"
    tar.with_name(tar.name + ".tmp").write_bytes(tar.read_bytes()[:5000])
    tar.unlink()

    result = run_features(variant, out, tiny_model, "--shard-size-mb", SMALL_SHARDS)
    assert "2 shard(s) written, 1 kept" in result.output
    assert (out / "train/train-000000.tar").stat().st_mtime_ns == kept_stat.st_mtime_ns
    assert not list(out.glob("*/*.tmp"))
    keys = shard_keys(out)
    assert sorted(keys) == [f"scene_{i:06d}" for i in range(6)]  # no duplicate, no gap
    assert load_manifest(out).samples == SPLITS and verify_shards(out) == []


def test_shard_jobs_partition_the_scenes(variant, tiny_model, tmp_path):
    out = tmp_path / "features"
    run_features(variant, out, tiny_model, "--shard-size-mb", SMALL_SHARDS, "--shard", "0/2")
    first = set(shard_keys(out))
    with pytest.raises(ManifestMismatch, match="incomplete"):
        load_manifest(out)
    assert not load_manifest(out, allow_incomplete=True).data["complete"]

    run_features(
        variant, out, tiny_model, "--shard-size-mb", SMALL_SHARDS, "--shard", "1/2", "--read-workers", "2"
    )
    keys = shard_keys(out)
    assert first and first.isdisjoint(set(keys) - first)
    assert sorted(keys) == [f"scene_{i:06d}" for i in range(6)]
    assert load_manifest(out).samples == SPLITS


def test_rerun_with_other_settings_is_refused(features, variant, tiny_model):
    result = run_features(
        variant, features, tiny_model, "--shard-size-mb", SMALL_SHARDS, "--image-size", "28", expect_ok=False
    )
    assert result.exit_code != 0
    assert "different settings ['grid', 'image_size']" in result.output and "new --out" in result.output


def test_pca_reduces_the_tokens_and_is_stored_with_the_manifest(variant, tiny_model, tmp_path):
    out = tmp_path / "features"
    run_features(variant, out, tiny_model, "--pca-dim", "8", "--splits", "train")
    manifest = load_manifest(out, expect={"token_dim": 8, "pca_dim": 8, "cls_dim": 32})
    assert list(manifest.samples) == ["train"]
    pca = manifest.data["pca"]
    mean, components = np.load(out / pca["mean"]), np.load(out / pca["components"])
    np.testing.assert_allclose(components @ components.T, np.eye(8), atol=1e-5)
    assert 0 < pca["fit"]["explained_variance_ratio"] <= 1 and len(pca["fit"]["scenes"]) == SPLITS["train"]

    sample = read_samples(manifest.shard_urls["train"])[0]
    tokens, cls = direct_tokens(tiny_model, read_scene(variant / "scenes" / f"{sample['__key__']}.h5").rgb)
    assert sample["tokens.npy"].shape == (VIEWS, GRID, GRID, 8)
    np.testing.assert_allclose(
        sample["tokens.npy"].astype(np.float32), (tokens - mean) @ components.T, rtol=2e-3, atol=2e-3
    )
    np.testing.assert_allclose(sample["cls.npy"].astype(np.float32), cls, rtol=1e-3, atol=1e-4)


def test_unreachable_hub_model_says_how_to_use_a_local_copy(variant, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no 20 s of retries
    result = run_features(variant, tmp_path / "features", "facebook/dinov2-small", expect_ok=False)
    assert result.exit_code != 0
    assert "could not load the model 'facebook/dinov2-small'" in result.output
    assert "--model /path/to/dinov2-small" in result.output and "save_pretrained" in result.output

    result = run_features(variant, tmp_path / "features", tmp_path / "no-such-model", expect_ok=False)
    assert "does not exist" in result.output


def test_python_m_entry_point():
    done = subprocess.run(
        [sys.executable, "-m", "preprocessing", "features", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--shard-size-mb" in done.stdout and "--pca-dim" in done.stdout
