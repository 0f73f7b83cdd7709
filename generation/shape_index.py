"""Multi-view DINOv2 descriptors of every shape: what the `similar_shape` anomaly ranks look-alikes by.

The published PartsAD generator replaced a CAD part by the nearest other ABC shape under concatenated DINOv2
features of multi-view renders. Here the views are ray-cast with open3d (grey, shaded by the surface normal, so
the descriptor sees geometry, not the random colours of untextured meshes), encoded once per shape in the main
process before any scene starts, and cached in `bank/shape_index.npz`: a rerun or a later shard reuses it, and a
killed build resumes from the shapes it had finished. Workers only read the table and rank neighbours: a float16
copy, `bank/shape_index.f16.npy`, memory-mapped, so every worker on a machine shares one copy in the page cache
(at 10K shapes of 8 views x 384 dims: 61 MB once instead of 123 MB of float32 in each worker).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from generation.safefiles import writing
from generation.shapes.sources import ShapeSource
from generation.shapes.types import Shape
from preprocessing.prefetch import prefetch_map

INDEX_FILE = "shape_index.npz"
ELEVATION_DEG = 30.0
FIELD_OF_VIEW_DEG = 40.0
CHECKPOINT_EVERY = 32  # shapes between atomic saves of a partial index
TABLE_FILE = "shape_index.f16.npy"  # the descriptors, float16, rows in the order of the index's shape_ids
RANK_CHUNK = 1024  # table rows converted to float32 at a time when ranking (12 MB at 3072 dims)


def render_views(shape: Shape, views: int, size: int) -> np.ndarray:
    """(views, size, size, 3) uint8 greyscale renders from evenly spaced azimuths around the normalised shape."""
    from generation.open3d_import import open3d as o3d

    merged, _ = shape.merged()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.asarray(merged.vertices, dtype=np.float32)),
                        o3d.core.Tensor(np.asarray(merged.faces, dtype=np.uint32)))
    # close enough that the shape's bounding sphere about the origin just fits every view
    radius = float(np.linalg.norm(np.asarray(merged.vertices), axis=1).max())
    distance = 1.05 * radius / np.sin(np.radians(FIELD_OF_VIEW_DEG / 2))
    elevation = np.radians(ELEVATION_DEG)
    images = np.empty((views, size, size, 3), dtype=np.uint8)
    for v, azimuth in enumerate(2 * np.pi * np.arange(views) / views):
        eye = distance * np.array([np.cos(azimuth) * np.cos(elevation), np.sin(azimuth) * np.cos(elevation),
                                   np.sin(elevation)])
        rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(FIELD_OF_VIEW_DEG, [0, 0, 0], eye.tolist(),
                                                                   [0, 0, 1], size, size)
        hit = scene.cast_rays(rays)
        normals = hit["primitive_normals"].numpy()
        direction = rays.numpy()[..., 3:]
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        shade = 0.2 + 0.8 * np.abs((normals * direction).sum(axis=-1))  # a head light: facing surfaces bright
        grey = np.where(np.isfinite(hit["t_hit"].numpy()), shade, 1.0)  # white background
        images[v] = np.repeat((grey * 255).round().astype(np.uint8)[..., None], 3, axis=-1)
    return images


class ViewDescriber:
    """Shape -> views (`render`) -> one unit vector (`encode`): the L2-normalised CLS tokens of the views,
    concatenated and normalised again."""

    def __init__(self, encoder: str, views: int, image_size: int, device: str = "auto"):
        from preprocessing.encoder import load_model, resolve_device

        self.model, self.info = load_model(encoder)
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.views, self.image_size = views, image_size

    def render(self, shape: Shape) -> np.ndarray:
        return render_views(shape, self.views, self.image_size)

    def encode(self, views: np.ndarray) -> np.ndarray:
        import torch

        from preprocessing.images import to_model_input

        pixels = to_model_input([views], (self.image_size, self.image_size), self.device)
        with torch.inference_mode():
            cls = self.model(pixel_values=pixels).pooler_output.float()
        cls = torch.nn.functional.normalize(cls, dim=-1).flatten()
        return torch.nn.functional.normalize(cls, dim=0).cpu().numpy()


def build_shape_index(root: Path, source: ShapeSource, shape_ids: list[str], encoder: str, views: int,
                      image_size: int, progress: bool = True) -> Path:
    """Describe every shape not yet in `root/shape_index.npz` (made with the same encoder and views) and save.

    The encoder is loaded only when some shape is left to describe, so a rerun costs one file read."""
    path = Path(root) / INDEX_FILE
    request = {"encoder": encoder, "views": views, "image_size": image_size, "elevation_deg": ELEVATION_DEG,
               "field_of_view_deg": FIELD_OF_VIEW_DEG}
    done: dict[str, np.ndarray] = {}
    meta = {"request": request}
    if path.exists():
        with np.load(path) as stored:
            stored_meta = json.loads(str(stored["meta"]))
            if stored_meta["request"] == request:
                meta = stored_meta
                done = dict(zip(stored["shape_ids"].tolist(), stored["descriptors"], strict=True))
    todo = [s for s in shape_ids if s not in done]
    if todo:
        describe = ViewDescriber(encoder, views, image_size)
        meta = {"request": request, "encoder": describe.info.to_dict()}
        # shapes are loaded and ray-cast in a thread while the model encodes the previous one
        rendered = prefetch_map(lambda shape_id: describe.render(source.load(shape_id)), todo)
        for count, (shape_id, shape_views) in enumerate(tqdm(zip(todo, rendered, strict=True), total=len(todo),
                                                              desc="describing shapes", unit="shape",
                                                              disable=not progress, dynamic_ncols=True), start=1):
            done[shape_id] = describe.encode(shape_views)
            if count % CHECKPOINT_EVERY == 0 or count == len(todo):
                _save(path, done, meta)
    _export_table(path)
    return path


def _export_table(path: Path) -> None:
    """Write the workers' float16 table of the index at `path`, unless it is already newer than the index."""
    table = path.with_name(TABLE_FILE)
    if table.exists() and table.stat().st_mtime_ns >= path.stat().st_mtime_ns:
        return
    with np.load(path) as stored:
        descriptors = stored["descriptors"].astype(np.float16)
    tmp = table.with_name(f"{table.name}.{os.getpid()}.tmp")
    with writing(table), open(tmp, "wb") as f:
        np.save(f, descriptors)
    os.replace(tmp, table)


def _save(path: Path, descriptors: dict[str, np.ndarray], meta: dict) -> None:
    ids = sorted(descriptors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with writing(path), open(tmp, "wb") as f:
        np.savez(f, shape_ids=np.array(ids), descriptors=np.stack([descriptors[s] for s in ids]).astype(np.float32),
                 meta=np.array(json.dumps(meta, sort_keys=True)))
    os.replace(tmp, path)


class SimilarShapes:
    """A shape's look-alikes, nearest first, among the shapes of its own split (a test shape never shows up as
    the odd object of a training scene), and a way to load them."""

    def __init__(self, index_path: Path, source: ShapeSource, pools: dict[str, list[str]]):
        with np.load(index_path) as stored:  # reads the named members only, not the float32 descriptors
            self.shape_ids = stored["shape_ids"].tolist()
            self.meta = json.loads(str(stored["meta"]))
        self.table = np.load(Path(index_path).with_name(TABLE_FILE), mmap_mode="r")
        self.norms = np.concatenate([np.linalg.norm(rows, axis=1) for rows in self._float32_rows()])
        self.row = {shape_id: i for i, shape_id in enumerate(self.shape_ids)}
        self.split_of = {shape_id: split for split, ids in pools.items() for shape_id in ids}
        self.source = source

    def ranked(self, shape_id: str, limit: int, same_category: bool = False) -> list[tuple[str, float]]:
        """Up to `limit` (shape id, cosine similarity of descriptors) pairs, most similar first."""
        if shape_id not in self.row:
            raise KeyError(f"{shape_id} is not in the shape index; rebuild it (delete bank/{INDEX_FILE})")
        split = self.split_of.get(shape_id)
        row = self.row[shape_id]
        query = np.asarray(self.table[row], dtype=np.float32)
        similarity = np.concatenate([rows @ query for rows in self._float32_rows()]) / (self.norms * self.norms[row])
        ranked = []
        for i in np.argsort(-similarity, kind="stable"):
            other = self.shape_ids[i]
            if other == shape_id or self.split_of.get(other) != split:
                continue
            if same_category and self.source.category(other) != self.source.category(shape_id):
                continue
            ranked.append((other, float(similarity[i])))
            if len(ranked) == limit:
                break
        return ranked

    def load(self, shape_id: str) -> Shape:
        return self.source.load(shape_id)

    def _float32_rows(self):
        """The shared float16 table in float32 blocks: no worker holds a float32 copy of the whole table."""
        for start in range(0, len(self.table), RANK_CHUNK):
            yield np.asarray(self.table[start:start + RANK_CHUNK], dtype=np.float32)
