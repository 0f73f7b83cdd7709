"""Scene planning in pure numpy: split, shape, object count, which copies are anomalous, scale, poses.

A plan is a pure function of (config, seed, scene index, attempt), which is what makes scenes reproducible
and lets any worker (or cluster job) produce any scene on its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from generation.config import GenerationConfig

GOLDEN = (np.sqrt(5.0) - 1.0) / 2.0


def scene_rng(seed: int, index: int, attempt: int = 0, stream: int = 0) -> np.random.Generator:
    """Independent random stream per (seed, scene, attempt, purpose)."""
    return np.random.default_rng([seed, index, attempt, stream])


THREE_WAY = ("unseen-test", "seen-test", "train")  # split names of split.by = "category+instance"


def scene_split(index: int, test_fraction: float) -> str:
    """Low-discrepancy split assignment: any run of scenes holds close to `test_fraction` test scenes."""
    return split_by_shares(index, [("test", test_fraction), ("train", 1.0 - test_fraction)])


def split_by_shares(index: int, shares: list[tuple[str, float]]) -> str:
    """Low-discrepancy assignment to several splits: any run of scenes holds close to each split's share."""
    u = ((index + 1) * GOLDEN) % 1.0
    for name, share in shares:
        if u < share:
            return name
        u -= share
    return shares[-1][0]


def plan_split(config: GenerationConfig, index: int, pools: dict[str, list[str]]) -> str:
    """A scene's split. Three-way: scene shares follow the pool sizes, so every shape gets about as many scenes."""
    if config.split.by != "category+instance":
        return scene_split(index, config.split.test_fraction)
    total = sum(len(pools.get(name, [])) for name in THREE_WAY)
    if not total:
        raise ValueError("no shapes available for any split; check shapes and split settings")
    return split_by_shares(index, [(name, len(pools.get(name, [])) / total) for name in THREE_WAY])


def unit_hash(text: str) -> float:
    """A stable number in [0, 1) for a string (Python's hash() is salted per process)."""
    return int(hashlib.sha256(text.encode()).hexdigest()[:12], 16) / 16**12


def shape_split(shape_id: str, category: str, config: GenerationConfig) -> str:
    """instance: hashed test instances; category: test categories; category+instance: both (paper's Toys split)."""
    by = config.split.by
    if by == "category":
        return "test" if category in config.split.test_categories else "train"
    if by == "category+instance" and category in config.split.test_categories:
        return "unseen-test"
    held_out = unit_hash(shape_id) < config.split.test_fraction
    if by == "category+instance":
        return "seen-test" if held_out else "train"
    return "test" if held_out else "train"


@dataclass
class ScenePlan:
    split: str
    shape_id: str
    n_objects: int
    anomaly_types: list[str]  # per object, "none" for normal copies
    scale: float
    yaw: np.ndarray  # (N,) radians about z


def plan_scene(
    config: GenerationConfig, index: int, attempt: int, pools: dict[str, list[str]]
) -> ScenePlan:
    """Draw everything about a scene that does not depend on the shape's geometry."""
    rng = scene_rng(config.seed, index, attempt, stream=0)
    split = plan_split(config, index, pools)
    pool = pools.get(split) or []
    if not pool:
        raise ValueError(f"no shapes available for split {split!r}; check shapes and split settings")
    shape_id = pool[rng.integers(len(pool))]
    lo, hi = config.scene.objects
    n_objects = int(rng.integers(lo, hi + 1))
    n_anomalous = 0
    if rng.random() >= config.scene.normal_scene_fraction:
        n_anomalous = int(rng.integers(1, (n_objects - 1) // 2 + 1))  # a strict minority
    names = sorted(config.anomalies.weights)
    weights = np.array([config.anomalies.weights[n] for n in names], dtype=np.float64)
    types = ["none"] * n_objects
    for i in rng.choice(n_objects, size=n_anomalous, replace=False):
        types[int(i)] = names[rng.choice(len(names), p=weights / weights.sum())]
    scale = float(rng.uniform(*config.scene.scale))
    yaw = rng.uniform(0.0, 2 * np.pi, size=n_objects)
    return ScenePlan(split, shape_id, n_objects, types, scale, yaw)


def place_footprints(
    rng: np.random.Generator, radii: np.ndarray, gap: float, tries: int = 20, darts: int = 300
) -> np.ndarray:
    """Non-overlapping xy positions for discs of the given radii, centred on the origin.

    Dart throwing in a disc that grows with the object count; of `tries` successful layouts the most
    compact one is kept (the published generator keeps the best of 20 tries too).
    """
    n = len(radii)
    spread = (radii.max() + gap / 2) * (1.0 + 1.1 * np.sqrt(n))
    best, best_extent = None, np.inf
    for _ in range(tries):
        xy = np.zeros((n, 2))
        for i in range(n):
            for _ in range(darts):
                r, a = spread * np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
                candidate = np.array([r * np.cos(a), r * np.sin(a)])
                dist = np.linalg.norm(xy[:i] - candidate, axis=1)
                if np.all(dist >= radii[:i] + radii[i] + gap):
                    xy[i] = candidate
                    break
            else:
                break
        else:
            xy -= xy.mean(axis=0)
            extent = np.max(np.linalg.norm(xy, axis=1) + radii)
            if extent < best_extent:
                best, best_extent = xy, extent
    if best is None:
        raise ValueError(f"could not place {n} objects without overlap")
    return best
