"""The scene file: one HDF5 file per scene, the contract between generation and every later stage.

The schema is documented in docs/scene-format.md; `SCHEMA_VERSION` changes whenever it does.
Writing goes through a temporary file and an atomic rename, so a scene file that exists is complete.
Every dataset carries the sha256 of its contents and the root the sha256 of its attributes (version 2), taken
at write time, so a bit flip or a damaged copy is caught on read instead of feeding wrong pixels downstream.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

SCHEMA_NAME = "oddbench-scene"
SCHEMA_VERSION = 2  # 2: checksums; box_min/box_max are the normal counterpart's box, the rendered mesh's in mesh_box_*
READABLE_VERSIONS = (1, 2)  # version 1: no checksums, boxes of the rendered mesh only
CHECKSUM_ATTR = "sha256"  # on every dataset: digest of its contents
ATTRS_CHECKSUM = "attrs_sha256"  # on the root: digest of every other root attribute
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
    schema_version: int = SCHEMA_VERSION  # of the file it was read from (1: no checksums to check)
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


def content_digest(value: np.ndarray | list[str]) -> str:
    """sha256 of a dataset's contents: dtype, shape and bytes of an array, or the JSON of a list of strings."""
    if isinstance(value, list):
        return hashlib.sha256(json.dumps(value).encode()).hexdigest()
    value = np.ascontiguousarray(value)
    return hashlib.sha256(f"{value.dtype.str}{value.shape}".encode() + value.tobytes()).hexdigest()


def attrs_digest(attrs) -> str:
    """sha256 of the root attributes (all but the digest itself), each as text: written and read back alike."""
    plain = {k: str(v) for k, v in attrs.items() if k != ATTRS_CHECKSUM}
    return hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()


def write_scene(path: str | os.PathLike, scene: Scene) -> None:
    """Write atomically: into `<path>.tmp`, then rename.

    The file is built in memory and written with plain file I/O: HDF5 failing to write to a full disk can crash
    the process (a segfault while h5py closes its objects), where a failed `write` is an OSError naming the file.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    view_chunks = (1, *scene.rgb.shape[1:3])
    with h5py.File(tmp, "w", driver="core", backing_store=False, track_order=True) as f:
        _write_contents(f, scene, view_chunks)
        f.flush()
        image = f.id.get_file_image()
    try:
        with open(tmp, "wb") as out:
            out.write(image)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as err:  # a full disk or a lost folder: say which file, keep no half-written one
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, f"{path}: cannot write the scene file ({err.strerror or err})") from err


def _write_contents(f: h5py.File, scene: Scene, view_chunks: tuple[int, ...]) -> None:
    f.attrs["schema"] = SCHEMA_NAME
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["scene_id"] = scene.scene_id
    f.attrs["split"] = scene.split
    f.attrs["seed"] = scene.seed
    f.attrs["scene_index"] = scene.scene_index
    for key, value in sorted(scene.attrs.items()):
        f.attrs[key] = json.dumps(value, sort_keys=True)
    f.attrs[ATTRS_CHECKSUM] = attrs_digest(f.attrs)

    def put(name: str, value, **options) -> None:
        if isinstance(value, list):
            f.create_dataset(name, data=np.array(value, dtype=object), dtype=_STR, **options)
        else:
            f.create_dataset(name, data=value, **options)
        f[name].attrs[CHECKSUM_ATTR] = content_digest(value)

    compress = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    put("views/rgb", scene.rgb.astype(np.uint8), chunks=(*view_chunks, 3), **compress)
    put("views/depth", scene.depth.astype(np.float32), chunks=view_chunks, **compress)
    put("views/instance", scene.instance.astype(np.uint8), chunks=view_chunks, **compress)
    put("views/anomaly", scene.anomaly.astype(np.uint8), chunks=view_chunks, **compress)
    put("cameras/K", scene.intrinsics.astype(np.float64))
    put("cameras/world_to_camera", scene.world_to_camera.astype(np.float64))
    put("objects/label", scene.labels.astype(np.int8))
    put("objects/anomaly_type", list(scene.anomaly_types))
    put("objects/source_id", list(scene.source_ids))
    put("objects/category", list(scene.categories))
    put("objects/anomaly_params",
        [json.dumps(p, sort_keys=True) for p in (scene.anomaly_params or [{}] * scene.n_objects)])
    put("objects/object_to_world", scene.object_to_world.astype(np.float64))
    put("objects/box_min", scene.box_min.astype(np.float64))
    put("objects/box_max", scene.box_max.astype(np.float64))
    put("objects/local_extents", scene.local_extents.astype(np.float64))
    put("objects/mesh_box_min", scene.mesh_box_min.astype(np.float64))
    put("objects/mesh_box_max", scene.mesh_box_max.astype(np.float64))


def _strings(dataset) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in dataset[()]]


def check_schema(f: h5py.File, path: str | os.PathLike) -> None:
    """Refuse files that are not scene files of a readable version, and version-2 files whose attributes
    differ from their recorded checksum."""
    if f.attrs.get("schema") != SCHEMA_NAME:
        raise ValueError(f"{path}: not a scene file (schema attribute is {f.attrs.get('schema')!r})")
    version = int(f.attrs.get("schema_version", -1))
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{path}: scene schema version {version}, this code reads versions "
                         f"{', '.join(map(str, READABLE_VERSIONS))}")
    if version >= 2 and f.attrs.get(ATTRS_CHECKSUM) != attrs_digest(f.attrs):
        raise ValueError(f"{path}: attributes do not match the checksum recorded when the file was written "
                         "(corrupted file)")


def read_dataset(f: h5py.File, name: str, path: str | os.PathLike, strings: bool = False):
    """One dataset, checked against the checksum recorded at write time (files of schema version 2)."""
    value = _strings(f[name]) if strings else f[name][()]
    recorded = f[name].attrs.get(CHECKSUM_ATTR)
    if int(f.attrs["schema_version"]) >= 2 and recorded != content_digest(value):
        what = "has no checksum" if recorded is None else "does not match the checksum recorded when it was written"
        raise ValueError(f"{path}: {name} {what} (corrupted file)")
    return value


def read_scene(path: str | os.PathLike, views: bool = True) -> Scene:
    """Read a scene file, checking every dataset it reads against its checksum; with `views=False` the
    per-pixel arrays are left empty (fast metadata read). Any failure is a ValueError naming the file."""
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path}: cannot open as HDF5 ({err})") from err
    try:
        with f:
            return _read_contents(f, path, views)
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:  # damage h5py finds while decoding
        raise ValueError(f"{path}: unreadable scene file ({type(err).__name__}: {err})") from err


def _read_contents(f: h5py.File, path, views: bool) -> Scene:
    check_schema(f, path)
    attrs = {
        k: json.loads(v)
        for k, v in f.attrs.items()
        if k not in ("schema", "schema_version", "scene_id", "split", "seed", "scene_index", ATTRS_CHECKSUM)
    }
    pixel = {k: read_dataset(f, f"views/{k}", path) if views else np.zeros((0,))
             for k in ("rgb", "depth", "instance", "anomaly")}

    def get(name: str, strings: bool = False):
        return read_dataset(f, name, path, strings)

    return Scene(
        scene_id=str(f.attrs["scene_id"]),
        split=str(f.attrs["split"]),
        seed=int(f.attrs["seed"]),
        scene_index=int(f.attrs["scene_index"]),
        rgb=pixel["rgb"],
        depth=pixel["depth"],
        instance=pixel["instance"],
        anomaly=pixel["anomaly"],
        intrinsics=get("cameras/K"),
        world_to_camera=get("cameras/world_to_camera"),
        labels=get("objects/label"),
        anomaly_types=get("objects/anomaly_type", strings=True),
        source_ids=get("objects/source_id", strings=True),
        categories=get("objects/category", strings=True),
        anomaly_params=[json.loads(s) for s in get("objects/anomaly_params", strings=True)],
        object_to_world=get("objects/object_to_world"),
        box_min=get("objects/box_min"),
        box_max=get("objects/box_max"),
        local_extents=get("objects/local_extents"),
        mesh_box_min=get("objects/mesh_box_min") if "objects/mesh_box_min" in f else None,  # version 1: box_min
        mesh_box_max=get("objects/mesh_box_max") if "objects/mesh_box_max" in f else None,
        attrs=attrs,
        schema_version=int(f.attrs["schema_version"]),
    )


def box_corners(box_min: np.ndarray, box_max: np.ndarray) -> np.ndarray:
    """The 8 corners (8, 3) of an axis-aligned box."""
    idx = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)])
    return np.where(idx == 1, box_max[None, :], box_min[None, :])
