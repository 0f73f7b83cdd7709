"""The scene file: one HDF5 file per scene, the contract between generation and every later stage.

The schema is documented in docs/scene-format.md; `SCHEMA_VERSION` changes whenever it does.
Writing goes through a temporary file and an atomic rename, so a scene file that exists is complete.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SCHEMA_NAME = "oddbench-scene"
SCHEMA_VERSION = 2  # 2: box_min/box_max are the normal counterpart's box; the rendered mesh's in mesh_box_*
NO_ANOMALY = "none"


@dataclass
class Scene:
    """Everything one scene file holds, as numpy arrays and plain Python values."""

    scene_id: str
    split: str
    seed: int
    scene_index: int
    # views: V x H x W (x 3)
    rgb: np.ndarray  # uint8 (V, H, W, 3)
    depth: np.ndarray  # float32 (V, H, W), planar z-depth in metres, 0 where no surface
    instance: np.ndarray  # uint8 (V, H, W), 0 background/floor, i + 1 for object i
    anomaly: np.ndarray  # uint8 (V, H, W), 1 on visible anomalous surface
    intrinsics: np.ndarray  # float64 (V, 3, 3)
    world_to_camera: np.ndarray  # float64 (V, 4, 4), OpenCV camera axes
    # objects: N
    labels: np.ndarray  # int8 (N,), 1 = anomalous
    anomaly_types: list[str]
    source_ids: list[str]
    categories: list[str]
    object_to_world: np.ndarray  # float64 (N, 4, 4), includes the scene scale
    # boxes carry no label cue: every object's box is that of the scene's normal shape placed with its pose
    box_min: np.ndarray  # float64 (N, 3), world axis-aligned box of the normal mesh at the object's pose
    box_max: np.ndarray  # float64 (N, 3)
    local_extents: np.ndarray  # float64 (N, 3), the normal mesh's extents in the object's own (scaled) frame
    anomaly_params: list[dict] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)  # config, versions, background, render, shape: JSON-able
    mesh_box_min: np.ndarray | None = None  # float64 (N, 3), tight box of the mesh as rendered; default box_min
    mesh_box_max: np.ndarray | None = None

    def __post_init__(self):
        self.mesh_box_min = self.box_min if self.mesh_box_min is None else self.mesh_box_min
        self.mesh_box_max = self.box_max if self.mesh_box_max is None else self.mesh_box_max

    @property
    def n_views(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def n_objects(self) -> int:
        return int(self.labels.shape[0])


_STR = h5py.string_dtype()


def write_scene(path: str | os.PathLike, scene: Scene) -> None:
    """Write atomically: into `<path>.tmp`, then rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    view_chunks = (1, *scene.rgb.shape[1:3])
    with h5py.File(tmp, "w", track_order=True) as f:
        f.attrs["schema"] = SCHEMA_NAME
        f.attrs["schema_version"] = SCHEMA_VERSION
        f.attrs["scene_id"] = scene.scene_id
        f.attrs["split"] = scene.split
        f.attrs["seed"] = scene.seed
        f.attrs["scene_index"] = scene.scene_index
        for key, value in sorted(scene.attrs.items()):
            f.attrs[key] = json.dumps(value, sort_keys=True)
        views = f.create_group("views")
        compress = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        views.create_dataset("rgb", data=scene.rgb.astype(np.uint8), chunks=(*view_chunks, 3), **compress)
        views.create_dataset("depth", data=scene.depth.astype(np.float32), chunks=view_chunks, **compress)
        views.create_dataset("instance", data=scene.instance.astype(np.uint8), chunks=view_chunks, **compress)
        views.create_dataset("anomaly", data=scene.anomaly.astype(np.uint8), chunks=view_chunks, **compress)
        cams = f.create_group("cameras")
        cams.create_dataset("K", data=scene.intrinsics.astype(np.float64))
        cams.create_dataset("world_to_camera", data=scene.world_to_camera.astype(np.float64))
        objs = f.create_group("objects")
        objs.create_dataset("label", data=scene.labels.astype(np.int8))
        objs.create_dataset("anomaly_type", data=np.array(scene.anomaly_types, dtype=object), dtype=_STR)
        objs.create_dataset("source_id", data=np.array(scene.source_ids, dtype=object), dtype=_STR)
        objs.create_dataset("category", data=np.array(scene.categories, dtype=object), dtype=_STR)
        params = [json.dumps(p, sort_keys=True) for p in (scene.anomaly_params or [{}] * scene.n_objects)]
        objs.create_dataset("anomaly_params", data=np.array(params, dtype=object), dtype=_STR)
        objs.create_dataset("object_to_world", data=scene.object_to_world.astype(np.float64))
        objs.create_dataset("box_min", data=scene.box_min.astype(np.float64))
        objs.create_dataset("box_max", data=scene.box_max.astype(np.float64))
        objs.create_dataset("local_extents", data=scene.local_extents.astype(np.float64))
        objs.create_dataset("mesh_box_min", data=scene.mesh_box_min.astype(np.float64))
        objs.create_dataset("mesh_box_max", data=scene.mesh_box_max.astype(np.float64))
    os.replace(tmp, path)


def _strings(dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[()]]


def check_schema(f: h5py.File, path: str | os.PathLike) -> None:
    if f.attrs.get("schema") != SCHEMA_NAME:
        raise ValueError(f"{path}: not a scene file (schema attribute is {f.attrs.get('schema')!r})")
    version = int(f.attrs.get("schema_version", -1))
    if version != SCHEMA_VERSION:
        raise ValueError(f"{path}: scene schema version {version}, this code reads version {SCHEMA_VERSION}")


def read_scene(path: str | os.PathLike, views: bool = True) -> Scene:
    """Read a scene file; with `views=False` the per-pixel arrays are left empty (fast metadata read)."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: cannot open as HDF5 ({err})") from err
    with f:
        check_schema(f, path)
        attrs = {
            k: json.loads(v)
            for k, v in f.attrs.items()
            if k not in ("schema", "schema_version", "scene_id", "split", "seed", "scene_index")
        }
        pixel = {k: f["views"][k][()] if views else np.zeros((0,)) for k in ("rgb", "depth", "instance", "anomaly")}
        objs = f["objects"]
        return Scene(
            scene_id=str(f.attrs["scene_id"]),
            split=str(f.attrs["split"]),
            seed=int(f.attrs["seed"]),
            scene_index=int(f.attrs["scene_index"]),
            rgb=pixel["rgb"],
            depth=pixel["depth"],
            instance=pixel["instance"],
            anomaly=pixel["anomaly"],
            intrinsics=f["cameras/K"][()],
            world_to_camera=f["cameras/world_to_camera"][()],
            labels=objs["label"][()],
            anomaly_types=_strings(objs["anomaly_type"]),
            source_ids=_strings(objs["source_id"]),
            categories=_strings(objs["category"]),
            anomaly_params=[json.loads(s) for s in _strings(objs["anomaly_params"])],
            object_to_world=objs["object_to_world"][()],
            box_min=objs["box_min"][()],
            box_max=objs["box_max"][()],
            local_extents=objs["local_extents"][()],
            mesh_box_min=objs["mesh_box_min"][()],
            mesh_box_max=objs["mesh_box_max"][()],
            attrs=attrs,
        )


def box_corners(box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of an axis-aligned box."""
    idx = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])
    return np.where(idx == 1, box_max[None, :], box_min[None, :])
