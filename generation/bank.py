"""The anomaly bank: each variant made once per (shape, type, k) and reused by every scene that draws it.

The published Toys set reuses 2,345 variants of 1,050 shapes across 8K scenes; reuse also saves the costly
booleans and re-meshing. A variant is a pure function of its key (and the run seed), so workers that race on
the same key write identical files and the loser only wastes work; files are written to a private `.tmp` name
and renamed, so a reader never sees half a file. A rejected variant is stored too (its reason), so the check is
not re-run either.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import trimesh

from generation.anomalies import TYPE_CODES, AnomalyRejected, AnomalyResult, SimilarShapeAnomaly, get_generator
from generation.safefiles import writing
from generation.shapes.types import MaterialSpec, Part, Shape


class AnomalyBank:
    """`similar` (a `generation.shape_index.SimilarShapes`) is where `similar_shape` variants find look-alikes."""

    def __init__(self, root: Path, seed: int, settings: dict[str, dict] | None = None, similar=None):
        self.root = Path(root)
        self.seed = seed
        self.settings = settings or {}
        self.similar = similar

    def path(self, shape_id: str, anomaly_type: str, k: int) -> Path:
        """Named like the published release's variants (`banana_028-crack-001`)."""
        return self.root / shape_id / f"{shape_id}-{TYPE_CODES.get(anomaly_type, anomaly_type)}-{k:03d}.npz"

    def get(self, normal: Shape, anomaly_type: str, k: int) -> AnomalyResult:
        """Variant k of `normal`: loaded if stored, else made and stored. Raises AnomalyRejected if it failed."""
        path = self.path(normal.shape_id, anomaly_type, k)
        if not path.exists():
            key = f"{self.seed}/{normal.shape_id}/{anomaly_type}/{k}"
            rng = np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))
            generator = get_generator(anomaly_type, self.settings.get(anomaly_type))
            if isinstance(generator, SimilarShapeAnomaly):
                if self.similar is None:  # not banked: a run with a shape index must still make this variant
                    raise AnomalyRejected("similar_shape: the bank was given no shape index to find look-alikes in")
                generator = generator.among(self.similar, k)
            try:
                _store(path, generator.apply(normal, rng))
            except AnomalyRejected as err:
                _write_npz(path, {"rejected": np.array(str(err))})
        return _load(path, normal, anomaly_type)


def _store(path: Path, result: AnomalyResult) -> None:
    arrays = {"anomalous_faces": np.asarray(result.anomalous_faces, dtype=bool),
              "params": np.array(json.dumps(result.params, sort_keys=True)),
              "parts": np.array(json.dumps([{"name": p.name, "material": p.material.__dict__}
                                            for p in result.shape.parts]))}
    for i, part in enumerate(result.shape.parts):
        arrays[f"vertices_{i}"] = np.asarray(part.mesh.vertices, dtype=np.float64)
        arrays[f"faces_{i}"] = np.asarray(part.mesh.faces, dtype=np.int64)
    _write_npz(path, arrays)


def _write_npz(path: Path, arrays: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with writing(path), open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _load(path: Path, normal: Shape, anomaly_type: str) -> AnomalyResult:
    try:
        return _read(path, normal, anomaly_type)
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:  # a damaged copy or a half-synced file
        raise ValueError(f"{path}: damaged bank variant ({type(err).__name__}: {err}); delete it to remake it") \
            from err


def _read(path: Path, normal: Shape, anomaly_type: str) -> AnomalyResult:
    with np.load(path) as data:
        if "rejected" in data:
            raise AnomalyRejected(str(data["rejected"]))
        parts = [Part(entry["name"], trimesh.Trimesh(data[f"vertices_{i}"], data[f"faces_{i}"], process=False),
                      MaterialSpec(**{**entry["material"], "base_color": tuple(entry["material"]["base_color"])}))
                 for i, entry in enumerate(json.loads(str(data["parts"])))]
        shape = Shape(normal.shape_id, normal.category, normal.source, parts)
        return AnomalyResult(shape, anomaly_type, data["anomalous_faces"], json.loads(str(data["params"])))
