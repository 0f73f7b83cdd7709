"""Shape sources: the one interface the scene generator uses, whether shapes are built-in or user meshes."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from generation.shapes.abc import AbcSource
from generation.shapes.builtin import PART_CATEGORIES, TOY_CATEGORIES, builtin_shape
from generation.shapes.folder import MESH_SUFFIXES, FileShapeIndex, folder_shape_id, load_mesh_file, scan_folder
from generation.shapes.toys4k import Toys4kSource
from generation.shapes.types import Shape, ShapeError


class ShapeSource(Protocol):
    name: str

    def shape_ids(self) -> list[str]:
        """Sorted and deterministic, so shape splits and scene plans are reproducible."""
        ...

    def category(self, shape_id: str) -> str: ...

    def load(self, shape_id: str) -> Shape:
        """The normalized shape; raises ShapeError for input that cannot be used."""
        ...


class BuiltinSource:
    """`instances_per_category` parametric shapes of each category (all categories when none are given)."""

    def __init__(self, categories: Sequence[str] | None = None, instances_per_category: int = 50,
                 seed: int = 0):
        known = TOY_CATEGORIES + PART_CATEGORIES
        self.categories = sorted(set(categories)) if categories else sorted(known)
        unknown = [c for c in self.categories if c not in known]
        if unknown:
            raise ValueError(f"unknown built-in categories {unknown}; known: {', '.join(sorted(known))}")
        if instances_per_category < 1:
            raise ValueError(f"instances_per_category must be at least 1, got {instances_per_category}")
        self.instances_per_category = instances_per_category
        self.seed = seed
        self.name = "builtin"

    def shape_ids(self) -> list[str]:
        return sorted(f"{c}_{i:04d}" for c in self.categories for i in range(self.instances_per_category))

    def category(self, shape_id: str) -> str:
        return self._parse(shape_id)[0]

    def load(self, shape_id: str) -> Shape:
        return builtin_shape(*self._parse(shape_id), seed=self.seed)

    def _parse(self, shape_id: str) -> tuple[str, int]:
        category, _, instance = shape_id.rpartition("_")
        known = category in self.categories and instance.isdigit()
        if not known or int(instance) >= self.instances_per_category:
            raise KeyError(f"{shape_id!r} is not a shape id of this built-in source")
        return category, int(instance)


class FolderSource(FileShapeIndex):
    """Every mesh file under `root` (see `scan_folder`). The category is the file's parent folder name, or with
    `category_level` = k >= 0 the k-th folder below `root`, for layouts with a folder per instance (ShapeNet's
    `<synset>/<model>/models/model_normalized.obj`: level 0); shape ids then name every folder below `root`."""

    def __init__(self, root, max_faces: int = 200_000, category_level: int = -1):
        self.category_level = category_level
        super().__init__(root, max_faces, "folder", self._scan, f"mesh files ({', '.join(MESH_SUFFIXES)})")

    def _scan(self, root: Path) -> dict[str, Path]:
        paths: dict[str, Path] = {}
        for path in scan_folder(root):
            base = shape_id = folder_shape_id(path, root if self.category_level >= 0 else None)
            copy = 2
            while shape_id in paths:  # "a.obj" and "a.ply", or "a.b.obj" and "a_b.obj", in one folder
                shape_id, copy = f"{base}-{copy}", copy + 1
            paths[shape_id] = path
        return paths

    def category(self, shape_id: str) -> str:
        path = self.path(shape_id)
        return path.relative_to(self.root).parts[self.category_level] if self.category_level >= 0 else path.parent.name

    def load(self, shape_id: str) -> Shape:
        path = self.path(shape_id)
        if len(path.relative_to(self.root).parts) <= self.category_level + 1:  # skipped and reported, not fatal
            raise ShapeError(path, f"not {self.category_level + 1} folder(s) deep below {self.root}, so it has no "
                                   f"category at shapes.category_level = {self.category_level}")
        shape, notes = load_mesh_file(path, self.max_faces)
        self.notes[shape_id] = notes
        return dataclasses.replace(shape, shape_id=shape_id, category=self.category(shape_id))


SOURCE_KINDS = {"builtin": BuiltinSource, "folder": FolderSource, "toys4k": Toys4kSource, "abc": AbcSource}


def make_source(spec: dict) -> ShapeSource:
    """A source from a plain dict, e.g. {"kind": "builtin", "categories": ["mug"],
    "instances_per_category": 50} or {"kind": "folder", "root": "/data/toys4k_obj", "max_faces": 200000}."""
    options = dict(spec)
    kind = options.pop("kind", None)
    if kind not in SOURCE_KINDS:
        raise ValueError(f"unknown shape source kind {kind!r}; known: {', '.join(SOURCE_KINDS)}")
    accepted = set(inspect.signature(SOURCE_KINDS[kind]).parameters)
    unexpected = sorted(set(options) - accepted)
    if unexpected:
        raise ValueError(f"unexpected options {unexpected} for a {kind} shape source; "
                         f"accepted: {sorted(accepted)}")
    return SOURCE_KINDS[kind](**options)
