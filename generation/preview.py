"""Preview image of a scene: a few views side by side, 3D boxes drawn green (normal) or red (anomalous)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from generation.cameras import project
from generation.safefiles import writing
from generation.scenefile import Scene, box_corners

BOX_EDGES = [(a, b) for a in range(8) for b in range(a + 1, 8) if bin(a ^ b).count("1") == 1]
NORMAL_COLOR, ANOMALY_COLOR = (40, 220, 60), (240, 40, 40)


def preview_image(scene: Scene, n_views: int = 5) -> Image.Image:
    picks = np.unique(np.linspace(0, scene.n_views, n_views, endpoint=False).astype(int))
    tiles = []
    for v in picks:
        tile = Image.fromarray(scene.rgb[v])
        draw = ImageDraw.Draw(tile)
        for i in range(scene.n_objects):
            uv, _ = project(scene.intrinsics[v], scene.world_to_camera[v],
                            box_corners(scene.box_min[i], scene.box_max[i]))
            color = ANOMALY_COLOR if scene.labels[i] else NORMAL_COLOR
            for a, b in BOX_EDGES:
                draw.line([tuple(uv[a]), tuple(uv[b])], fill=color, width=1)
        tiles.append(tile)
    width, height = tiles[0].size
    sheet = Image.new("RGB", (width * len(tiles), height))
    for k, tile in enumerate(tiles):
        sheet.paste(tile, (k * width, 0))
    return sheet


def write_preview(path: Path, scene: Scene) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        preview_image(scene).save(tmp, format="JPEG", quality=90)
        os.replace(tmp, path)
