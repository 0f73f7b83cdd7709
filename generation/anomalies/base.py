"""The anomaly-generator interface: a normal shape in, an anomalous shape plus its anomalous faces out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from generation.shapes.types import Shape


class AnomalyRejected(Exception):
    """The variant failed a quality check; `str()` is the reason recorded in the run report."""


@dataclass
class AnomalyResult:
    shape: Shape
    anomaly_type: str
    anomalous_faces: np.ndarray  # bool, one entry per face of `shape.merged()`
    params: dict = field(default_factory=dict)


class AnomalyGenerator(Protocol):
    name: str

    def apply(self, shape: Shape, rng: np.random.Generator) -> AnomalyResult:
        """Return an anomalous variant of `shape` or raise AnomalyRejected. Must not modify `shape`."""
        ...


def part_areas(shape: Shape) -> np.ndarray:
    return np.array([part.mesh.area for part in shape.parts])


def faces_of_parts(shape: Shape, parts: set[int]) -> np.ndarray:
    _, part_index = shape.merged()
    return np.isin(part_index, sorted(parts))


def first_accepted(name: str, tries: int, attempt: Callable[[], AnomalyResult]) -> AnomalyResult:
    """Up to `tries` calls of `attempt`, which draws a variant and raises AnomalyRejected when it fails a check:
    the first variant that passes, else one rejection that lists each distinct reason once."""
    reasons: list[str] = []
    for _ in range(tries):
        try:
            return attempt()
        except AnomalyRejected as err:
            reasons.append(str(err).removeprefix(f"{name}: "))
    raise AnomalyRejected(f"{name}: " + "; ".join(dict.fromkeys(reasons)))
