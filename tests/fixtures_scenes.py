"""Synthetic variants and a tiny DINOv2 for the feature-cache tests and benchmark.

The real scene generator needs Blender and minutes per scene; these helpers write schema-valid scene files
(real HDF5 through `generation.scenefile.write_scene`) with procedural images whose objects, boxes, cameras
and instance masks agree with each other, so the feature stage can be tested in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from generation.cameras import intrinsics, look_at, project
from generation.scenefile import Scene, box_corners, write_scene


def ring_cameras(n_views: int, image_size: int) -> tuple[np.ndarray, np.ndarray]:
    """K (V, 3, 3) and world-to-camera (V, 4, 4) of cameras on a ring looking at the origin, as rendered."""
    K = intrinsics(image_size, image_size)
    w2c = []
    for azimuth in np.linspace(0.0, 2 * np.pi, n_views, endpoint=False):
        eye = np.array([0.7 * np.cos(azimuth), 0.7 * np.sin(azimuth), 0.4])
        w2c.append(look_at(eye, np.array([0.0, 0.0, 0.05])))
    return np.repeat(K[None], n_views, axis=0), np.stack(w2c)


def synthetic_scene(scene_id: str, split: str, scene_index: int, n_views: int, image_size: int) -> Scene:
    """Three boxes on the floor, the last one anomalous; images show each box as its projected rectangle."""
    rng = np.random.default_rng(scene_index)
    K, w2c = ring_cameras(n_views, image_size)
    centres = np.array([[-0.15, -0.05, 0.0], [0.12, -0.1, 0.0], [0.0, 0.15, 0.0]])
    half = rng.uniform(0.04, 0.07, size=(3, 3))
    box_min = centres - half * [1, 1, 0]
    box_max = centres + half * [1, 1, 2]
    colours = rng.integers(40, 255, size=(3, 3))

    ys, xs = np.mgrid[0:image_size, 0:image_size]
    background = np.stack([xs, ys, (xs + ys) // 2], axis=-1) * (200 / image_size) + rng.integers(
        0, 50, size=3
    )
    rgb = np.repeat(background[None], n_views, axis=0)
    instance = np.zeros((n_views, image_size, image_size), np.uint8)
    for v in range(n_views):
        for i in range(3):
            uv, _ = project(K[v], w2c[v], box_corners(box_min[i], box_max[i]))
            (u0, v0), (u1, v1) = np.clip(uv.min(0), 0, image_size), np.clip(uv.max(0), 0, image_size)
            inside = (xs >= np.floor(u0)) & (xs < np.ceil(u1)) & (ys >= np.floor(v0)) & (ys < np.ceil(v1))
            instance[v][inside] = i + 1
            rgb[v][inside] = colours[i]
    rgb = np.clip(rgb + rng.normal(0, 8, size=rgb.shape), 0, 255).astype(np.uint8)

    return Scene(
        scene_id=scene_id,
        split=split,
        seed=0,
        scene_index=scene_index,
        rgb=rgb,
        depth=np.full(instance.shape, 0.7, np.float32),
        instance=instance,
        anomaly=(instance == 3).astype(np.uint8),
        intrinsics=K,
        world_to_camera=w2c,
        labels=np.array([0, 0, 1], np.int8),
        anomaly_types=["none", "none", "material"],
        source_ids=["box_000"] * 3,
        categories=["box"] * 3,
        object_to_world=np.repeat(np.eye(4)[None], 3, axis=0),
        box_min=box_min,
        box_max=box_max,
        local_extents=box_max - box_min,
        attrs={"config": {"name": "fixture"}},
    )


def write_variant(
    root: Path, split_sizes: dict[str, int], n_views: int = 3, image_size: int = 64, name: str = "fixture"
) -> Path:
    """A variant folder (scenes/, index.json, splits.json) laid out as the generator writes it."""
    (root / "scenes").mkdir(parents=True, exist_ok=True)
    rows, splits, index = [], {}, 0
    for split, count in split_sizes.items():
        for _ in range(count):
            scene_id = f"scene_{index:06d}"
            write_scene(
                root / "scenes" / f"{scene_id}.h5",
                synthetic_scene(scene_id, split, index, n_views, image_size),
            )
            rows.append({"scene_id": scene_id, "split": split, "file": f"scenes/{scene_id}.h5"})
            splits.setdefault(split, []).append(scene_id)
            index += 1
    config = {"name": name, "views": n_views, "image_size": image_size}
    (root / "index.json").write_text(
        json.dumps({"variant_id": f"{name}-0001", "config_digest": "0001", "config": config, "scenes": rows})
    )
    (root / "splits.json").write_text(json.dumps(splits))
    return root


def save_tiny_dinov2(folder: Path, registers: int = 0) -> Path:
    """A randomly initialised DINOv2 small enough for unit tests, saved as a local model folder."""
    import torch
    from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    torch.manual_seed(0)
    shape = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "patch_size": 14,
        "image_size": 56,
    }
    if registers:
        model = Dinov2WithRegistersModel(Dinov2WithRegistersConfig(num_register_tokens=registers, **shape))
    else:
        model = Dinov2Model(Dinov2Config(**shape))
    model.save_pretrained(folder)
    return folder
