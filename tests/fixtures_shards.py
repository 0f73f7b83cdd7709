"""Synthetic scenes with exact geometry, and feature shards written from them per docs/feature-shards.md.

Objects are axis-aligned boxes standing on the floor; cameras sit on a ring looking at them (the generator's
own `orbit_views`); instance masks come from ray-box intersection at the pixel centres of the feature grid.
Token features are either one-hot per object (geometry tests) or relational: each scene draws two different
prototypes from a fixed palette (like the shapes of a benchmark) and a random floor vector; normal objects are
jittered copies of the first prototype, odd objects jittered copies of the second, plus pixel noise. Every single
object is therefore drawn from the same distribution (uniform over the palette: no per-object statistic tells odd
from normal); only its relation to the other objects of its scene makes it odd. All boxes of a scene have one
size, so they carry no label cue either.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import webdataset as wds

from generation.cameras import intrinsics, orbit_views, pixel_rays
from preprocessing.shards import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, TOKEN_LAYOUT

IMAGE_SIZE = (252, 252)  # H, W
# model settings small enough for CPU tests on 16-channel synthetic tokens
TINY_MODEL = {
    "token_dim": 16,
    "cls_dim": 16,
    "feat_channels": 8,
    "map_size": 24,
    "grid": (24, 24, 8),
    "voxel_size": 0.08,
    "cnn_channels": (8, 16),
    "cnn_layers_down": (1, 1),
    "cnn_layers_up": (1,),
    "crop_size": 4,
    "d_model": 32,
    "n_heads": 4,
    "d_ff": 64,
    "dropout": 0.0,
    "sparse_topk": 4,
    "sparse_heads": 2,
    "sparse_dim_head": 8,
}


def box_layout(rng: np.random.Generator, n_objects: int, size: float, gap: float = 0.6):
    """Non-overlapping boxes on a jittered grid around a random centre away from the origin."""
    cols = int(np.ceil(np.sqrt(n_objects)))
    spacing = (1 + gap) * size
    cells = rng.permutation(cols * cols)[:n_objects]
    xy = np.stack([cells % cols, cells // cols], -1) * spacing
    xy = xy - xy.mean(0) + rng.uniform(-0.3, 0.3, size=2) + rng.uniform(-0.1, 0.1, size=(n_objects, 2)) * size
    extents = np.array([size, size * rng.uniform(0.7, 1.0), size * rng.uniform(0.8, 1.3)])
    boxmin = np.concatenate([xy - extents[:2] / 2, np.zeros((n_objects, 1))], 1)
    return boxmin, boxmin + extents


def instance_masks(kfeat, w2c, boxmin, boxmax, grid_hw):
    """uint8 (V, h, w): 0 floor/sky, i + 1 where the ray through a pixel centre first hits box i."""
    h, w = grid_hw
    masks = []
    for k, m in zip(kfeat, w2c, strict=True):
        rays = pixel_rays(k, m, w, h).reshape(-1, 6)
        o, d = rays[:, None, :3], rays[:, None, 3:]
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (boxmin[None] - o) / d, (boxmax[None] - o) / d
        near = np.nanmax(np.minimum(t1, t2), -1)
        far = np.nanmin(np.maximum(t1, t2), -1)
        hit = (near <= far) & (near > 0)
        near = np.where(hit, near, np.inf)
        first = near.argmin(1)
        masks.append(np.where(np.isfinite(near.min(1)), first + 1, 0).reshape(h, w))
    return np.stack(masks).astype(np.uint8)


def prototype_palette(n: int, channels: int) -> np.ndarray:
    """The appearance prototypes every scene draws from: fixed, so train and test scenes share them."""
    return np.random.default_rng(1234).normal(size=(n, channels))


def make_scene(
    rng: np.random.Generator,
    n_objects: int,
    *,
    n_views: int = 8,
    grid_hw: tuple[int, int] = (18, 18),
    channels: int = 16,
    noise: float = 0.3,
    jitter: float = 0.3,
    prototypes: int = 4,
    size: float = 0.2,
    gap: float = 0.6,
    scene_id: str = "scene_000000",
    split: str = "train",
):
    """One scene's shard members (the doc's dtypes and shapes) with relational token features: `jitter` is the
    per-object spread around its prototype, `noise` the per-pixel spread."""
    H, W = IMAGE_SIZE
    h, w = grid_hw
    boxmin, boxmax = box_layout(rng, n_objects, size, gap)
    k = intrinsics(W, H)
    target = np.array([*(boxmin[:, :2] + boxmax[:, :2]).mean(0) / 2, boxmax[:, 2].max() / 2])
    corners = np.concatenate([boxmin, boxmax, np.c_[boxmin[:, :2], boxmax[:, 2]], np.c_[boxmax[:, :2], boxmin[:, 2]]])
    w2c, _ = orbit_views(rng, n_views, target, (0.6, 0.7), (25.0, 32.0), k, W, H, must_see=corners)
    kfeat = np.diag([w / W, h / H, 1.0]) @ k
    instance = instance_masks(np.repeat(kfeat[None], n_views, 0), w2c, boxmin, boxmax, grid_hw)
    labels = np.zeros(n_objects, np.int64)
    labels[rng.permutation(n_objects)[: rng.integers(1, max(1, (n_objects - 1) // 2) + 1)]] = 1
    normal, odd = prototype_palette(prototypes, channels)[rng.permutation(prototypes)[:2]]
    floor = rng.normal(size=channels)
    appearance = np.where(labels[:, None] == 1, odd, normal) + jitter * rng.normal(size=(n_objects, channels))
    palette = np.concatenate([floor[None], appearance])
    tokens = palette[instance] + noise * rng.normal(size=(n_views, h, w, channels))
    return {
        "__key__": scene_id,
        "tokens.npy": tokens.astype(np.float16),
        "cls.npy": tokens.mean((1, 2)).astype(np.float16),
        "k.npy": np.repeat(k[None], n_views, 0).astype(np.float32),
        "kfeat.npy": np.repeat(kfeat[None], n_views, 0).astype(np.float32),
        "w2c.npy": w2c.astype(np.float32),
        "boxmin.npy": boxmin.astype(np.float32),
        "boxmax.npy": boxmax.astype(np.float32),
        "labels.npy": labels,
        "instance.npy": instance,
        "meta.json": {
            "scene_id": scene_id,
            "split": split,
            "anomaly_types": ["material" if label else "none" for label in labels],
            "categories": ["box"] * n_objects,
            "source_ids": ["box_000"] * n_objects,
            "image_size": [H, W],
            "n_views": n_views,
            "n_objects": n_objects,
        },
    }


def onehot_tokens(instance: np.ndarray, n_objects: int) -> np.ndarray:
    """(V, h, w, n_objects) float16: channel i is 1 on object i's pixels, background is all zeros."""
    return np.eye(n_objects + 1, dtype=np.float16)[instance][..., 1:]


def write_shards(root: Path, splits: dict[str, list[dict]], per_shard: int = 4) -> Path:
    """<root>/<split>/<split>-NNNNNN.tar plus the manifest.json `preprocessing.shards.load_manifest` reads."""
    any_scene = next(scene for scenes in splits.values() for scene in scenes)
    _, h, w, dim = any_scene["tokens.npy"].shape
    manifest_splits = {}
    for split, scenes in splits.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        shards = []
        for i in range(0, len(scenes), per_shard):
            path = root / split / f"{split}-{i // per_shard:06d}.tar"
            with wds.TarWriter(str(path)) as sink:
                for scene in scenes[i : i + per_shard]:
                    sink.write(scene)
            data = path.read_bytes()
            shards.append(
                {
                    "path": str(path.relative_to(root)),
                    "samples": len(scenes[i : i + per_shard]),
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
        manifest_splits[split] = {
            "samples": len(scenes),
            "bytes": sum(s["bytes"] for s in shards),
            "shards": shards,
        }
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "complete": True,
        "missing_shards": [],
        "encoder": {
            "id": "synthetic",
            "revision": None,
            "model_type": "dinov2",
            "hidden_size": dim,
            "patch_size": 14,
            "num_register_tokens": 0,
        },
        "input": {"image_size": list(IMAGE_SIZE)},
        "tokens": {"layout": TOKEN_LAYOUT, "grid": [h, w], "dim": dim, "cls_dim": dim, "dtype": "float16"},
        "pca": None,
        "source": {"variant_id": "synthetic"},
        "splits": manifest_splits,
    }
    (root / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1))
    return root


def synthetic_variant(
    root: Path, n_train: int, n_test: int, objects=(3, 6), seed: int = 0, per_shard: int = 4, **scene_kw
) -> Path:
    rng = np.random.default_rng(seed)
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        splits[split] = [
            make_scene(
                rng,
                int(rng.integers(objects[0], objects[1] + 1)),
                scene_id=f"{split}_{i:06d}",
                split=split,
                **scene_kw,
            )
            for i in range(n)
        ]
    return write_shards(root, splits, per_shard)
