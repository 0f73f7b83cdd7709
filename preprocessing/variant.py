"""Which scenes a generated variant holds, split by split, and reading one of them defensively.

The listing comes from the variant's `splits.json` (or the rows of `index.json`), not from the files on disk,
so a scene whose file is missing or broken is still planned into a shard and reported as skipped instead of
silently disappearing. Kept free of torch so reader processes start fast.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from generation.safefiles import inside
from generation.scenefile import Scene, read_dataset, read_scene


@dataclass(frozen=True)
class SceneEntry:
    """One scene as the variant lists it; `path` may not exist."""

    scene_id: str
    split: str
    path: Path


@dataclass(frozen=True)
class Variant:
    root: Path
    variant_id: str
    config_digest: str | None
    splits: dict[str, list[SceneEntry]] = field(default_factory=dict)

    def entries(self) -> list[SceneEntry]:
        return [entry for split in self.splits.values() for entry in split]


@dataclass
class SceneRead:
    """The outcome of reading one listed scene: the scene, or why it must be skipped."""

    entry: SceneEntry
    scene: Scene | None = None
    error: str | None = None


def _load_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err


def open_variant(root: str | Path) -> Variant:
    """List the scenes of every split, each split sorted by scene id for a stable shard plan."""
    root = Path(root)
    index = _load_json(root / "index.json")
    split_ids = _load_json(root / "splits.json")
    if index is None and split_ids is None:
        raise ValueError(
            f"{root}: neither index.json nor splits.json found; is this a generated variant folder?"
        )
    rows = {row["scene_id"]: row for row in (index or {}).get("scenes", [])}
    if split_ids is None:
        split_ids = {}
        for row in rows.values():
            split_ids.setdefault(row["split"], []).append(row["scene_id"])
    listing = {}
    for split in sorted(split_ids):
        listing[split] = [
            SceneEntry(scene_id, split, inside(root, rows[scene_id]["file"], root / "index.json") if scene_id in rows
                       else inside(root, f"scenes/{scene_id}.h5", root / "splits.json"))
            for scene_id in sorted(set(split_ids[split]))
        ]
    index = index or {}
    config_digest = index.get("config_digest")
    if config_digest is None and "config" in index:
        config_digest = hashlib.sha256(json.dumps(index["config"], sort_keys=True).encode()).hexdigest()[:16]
    return Variant(root, str(index.get("variant_id", root.name)), config_digest, listing)


def _inconsistency(entry: SceneEntry, scene: Scene) -> str | None:
    """Why a scene that parsed cannot be encoded, if it cannot."""
    if scene.scene_id != entry.scene_id:
        return f"file holds scene {scene.scene_id!r}, the variant lists {entry.scene_id!r}"
    if scene.split != entry.split:
        return f"file says split {scene.split!r}, the variant lists the scene under {entry.split!r}"
    if "." in scene.scene_id:
        return "scene id contains '.', which WebDataset would split into key and member"
    views = scene.n_views
    if scene.rgb.ndim != 4 or scene.rgb.shape[-1] != 3 or scene.rgb.dtype != np.uint8:
        return f"views/rgb has shape {scene.rgb.shape} {scene.rgb.dtype}, expected (V, H, W, 3) uint8"
    if views == 0:
        return "scene has no views"
    if scene.instance.shape != scene.rgb.shape[:3]:
        return f"views/instance has shape {scene.instance.shape}, views/rgb {scene.rgb.shape}"
    if scene.intrinsics.shape != (views, 3, 3) or scene.world_to_camera.shape != (views, 4, 4):
        return f"cameras do not match {views} views"
    return None


def read_entry(entry: SceneEntry) -> SceneRead:
    """Read a listed scene; any failure becomes a reason to skip it rather than an exception.

    Only the pixel arrays the cache uses (rgb, instance) are decompressed: depth and anomaly masks would
    double the decoding time. `scene.depth` and `scene.anomaly` are left empty.
    """
    if not entry.path.is_file():
        return SceneRead(entry, error=f"file missing: {entry.path}")
    try:
        scene = read_scene(entry.path, views=False)  # metadata, with the schema check
        with h5py.File(entry.path, "r") as f:
            scene.rgb = read_dataset(f, "views/rgb", entry.path)
            scene.instance = read_dataset(f, "views/instance", entry.path)
    except Exception as err:  # a truncated or corrupted HDF5 file can fail with any h5py/numpy error type
        return SceneRead(entry, error=f"unreadable: {type(err).__name__}: {err}")
    problem = _inconsistency(entry, scene)
    if problem:
        return SceneRead(entry, error=problem)
    return SceneRead(entry, scene=scene)


def count_views(entries: list[SceneEntry]) -> int | None:
    """Views per scene of the first readable listed scene (metadata only), used to size shards."""
    for entry in entries:
        try:
            return read_scene(entry.path, views=False).intrinsics.shape[0]
        except Exception:  # unreadable scenes are reported when they are encoded; here we only need a size
            continue
    return None
