"""One WebDataset sample per scene: tokens plus everything training needs to lift them into 3D.

Members and their meaning are the contract of docs/feature-shards.md.
"""

from __future__ import annotations

import numpy as np

from generation.scenefile import Scene


def feature_intrinsics(K: np.ndarray, image_hw: tuple[int, int], grid_hw: tuple[int, int]) -> np.ndarray:
    """Intrinsics (..., 3, 3) in feature-cell units: with pixel-corner coordinates, cell (i, j) covers the
    image rectangle [j W/w, (j+1) W/w) x [i H/h, (i+1) H/h), so u and v simply scale by w/W and h/H."""
    scale = np.diag([grid_hw[1] / image_hw[1], grid_hw[0] / image_hw[0], 1.0])
    return scale @ K


def resample_to_grid(masks: np.ndarray, grid_hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour (V, H, W) -> (V, h, w): each cell takes the pixel under its centre.

    (torch's `nearest` takes the pixel under the cell's top-left corner instead, half a cell off.)
    """
    height, width = masks.shape[1:]
    rows = np.floor((np.arange(grid_hw[0]) + 0.5) * height / grid_hw[0]).astype(int)
    cols = np.floor((np.arange(grid_hw[1]) + 0.5) * width / grid_hw[1]).astype(int)
    return masks[:, rows[:, None], cols[None, :]]


def scene_sample(scene: Scene, tokens: np.ndarray, cls: np.ndarray) -> dict:
    """The sample of one scene; `tokens` (V, h, w, C) and `cls` (V, C) are float16."""
    grid = tokens.shape[1:3]
    image_hw = scene.rgb.shape[1:3]
    return {
        "__key__": scene.scene_id,
        "tokens.npy": tokens,
        "cls.npy": cls,
        "k.npy": scene.intrinsics.astype(np.float32),
        "kfeat.npy": feature_intrinsics(scene.intrinsics, image_hw, grid).astype(np.float32),
        "w2c.npy": scene.world_to_camera.astype(np.float32),
        "boxmin.npy": scene.box_min.astype(np.float32),
        "boxmax.npy": scene.box_max.astype(np.float32),
        "labels.npy": scene.labels.astype(np.int64),
        "instance.npy": resample_to_grid(scene.instance, grid).astype(np.uint8),
        "meta.json": {
            "scene_id": scene.scene_id,
            "split": scene.split,
            "scene_index": scene.scene_index,
            "seed": scene.seed,
            "anomaly_types": scene.anomaly_types,
            "categories": scene.categories,
            "source_ids": scene.source_ids,
            "image_size": [int(image_hw[0]), int(image_hw[1])],
            "grid": [int(grid[0]), int(grid[1])],
            "n_views": scene.n_views,
            "n_objects": scene.n_objects,
        },
    }
