"""Training-free baselines (thesis section 5.4) on pooled object features, scene by scene.

Object features: the DINOv2 tokens back-projected into the voxel grid, cropped with the ground-truth boxes
and averaged over each crop, exactly as the model does but with no trained part (no 1x1 conv, no 3D CNN);
or, given a checkpoint, the pooled crops of that model's 3D CNN (what the thesis clustered).

Distances between two objects: euclidean or cosine between pooled features, or, on the sets of their crop voxels
(thesis section 5.4; our reading of its one-line definitions):
    max            the largest euclidean distance between a voxel of one object and a voxel of the other
    min-max        every voxel's distance to its nearest voxel of the other object, the largest of those, in
                   both directions (the symmetric Hausdorff distance; the thesis states one direction)
    ot             optimal transport between the two uniform voxel sets with euclidean cost: the mean cost of
                   the optimal one-to-one matching (exact, as both sets have s^3 voxels); slow, as the thesis says
Per scene, with a Gaussian affinity exp(-d^2 / 2 s^2), s = mean distance:
    kmeans         2 clusters, initialised with the two most distant objects
    spectral       2 clusters of the rows of the two lowest eigenvectors of the normalised Laplacian
    dbscan         eps = twice the median nearest-neighbour distance (the normal majority's spacing),
                   min_samples = 2; every noise object is a group of its own
    mean-distance  score = mean distance to the other objects; anomalous above the scene's mean score
    graph-cut      exact minimum cut of the affinity graph (all bipartitions; scenes have at most ~16 objects)
    ncut           sign of the Fiedler vector of the generalised problem (D - W) v = l D v (Shi & Malik)
A partition becomes a prediction: its largest group is normal (among equal ones, the group holding the
scene's medoid) and every other object anomalous; the score is that 0/1 prediction. Mean-distance scores are
s_i / (2 mean s), so 0.5 is the scene's threshold. k-means needs feature vectors, so it runs with euclidean and
cosine only. Metrics: pooled AUROC and accuracy as for the model, and the adjusted Rand index between partition
and labels, mean and standard deviation over scenes.

`box_only_scores` is no clustering method: it scores each object by how unusual its ground-truth box volume is in
its scene, and evaluation reports it beside the model, so any label cue left in the boxes is visible.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import eigh
from scipy.optimize import linear_sum_assignment
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import cdist

from training.config import Config
from training.data import scene_loader, to_device
from training.metrics import accuracy, adjusted_rand, auroc
from training.model import volume_crops

METHODS = ("kmeans", "spectral", "dbscan", "mean-distance", "graph-cut", "ncut")
METRICS = ("euclidean", "cosine")  # between pooled object features
SET_METRICS = ("max", "min-max", "ot")  # between the voxel sets of two object crops


def box_only_scores(extents: np.ndarray) -> np.ndarray:
    """|z-score| of each box's volume among the boxes of its scene (n, 3 extents); 0 when all are equal (to
    float32 precision, which the shards store boxes in)."""
    volume = np.prod(np.asarray(extents, dtype=np.float64), axis=1)
    spread = volume.std()
    if spread <= 1e-6 * volume.mean():
        return np.zeros_like(volume)
    return np.abs(volume - volume.mean()) / spread


def set_distances(voxels: np.ndarray, metric: str) -> np.ndarray:
    """(n, n) distances between objects given as voxel sets (n, S, C)."""
    n = len(voxels)
    d = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            cost = cdist(voxels[i], voxels[j])
            if metric == "max":
                d[i, j] = cost.max()
            elif metric == "min-max":
                d[i, j] = max(cost.min(1).max(), cost.min(0).max())
            else:
                rows, cols = linear_sum_assignment(cost)
                d[i, j] = cost[rows, cols].mean()
    return d + d.T


def raw_object_crops(batch: dict, cfg) -> torch.Tensor:
    """(B, N, C, s, s, s) crops of the back-projected tokens; `cfg` is a ModelConfig."""
    tokens = batch["tokens"]
    B, V, _, _, C = tokens.shape
    feats = F.interpolate(
        tokens.flatten(0, 1).permute(0, 3, 1, 2).float(), size=(cfg.map_size,) * 2, mode="bilinear"
    ).view(B, V, C, cfg.map_size, cfg.map_size)
    return volume_crops(feats, batch, cfg)


@torch.no_grad()
def object_features(urls, cfg: Config, device, model=None, set_metrics=()) -> list[dict]:
    """One dict per scene: key, features (n, C) pooled over each crop, labels (n,) and, per metric of
    `set_metrics`, the (n, n) distances between the objects' voxel sets (computed here: the crops are large)."""
    scenes = []
    if model is not None:
        model.eval()
    for batch in scene_loader(urls, cfg.data, train=False, batch_size=cfg.eval.batch_size):
        b = to_device(batch, device)
        crops = model.crops(b) if model is not None else raw_object_crops(b, cfg.model)
        pooled = crops.mean((3, 4, 5))
        for i, key in enumerate(batch["keys"]):
            n = int(batch["mask"][i].sum())
            voxels = crops[i, :n].flatten(2).transpose(1, 2).double().cpu().numpy() if set_metrics else None
            scenes.append(
                {
                    "key": key,
                    "features": pooled[i, :n].double().cpu().numpy(),
                    "labels": batch["labels"][i, :n].numpy(),
                    "distances": {m: set_distances(voxels, m) for m in set_metrics},
                }
            )
    return scenes


def distances(x: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        return np.clip(1 - x @ x.T, 0, 2)
    return np.sqrt(np.maximum(((x[:, None] - x[None]) ** 2).sum(-1), 0))


def affinity(d: np.ndarray) -> np.ndarray:
    """Gaussian affinity at the scene's mean distance (the median would be the normal objects' spacing and cut
    the odd ones off the graph entirely, leaving the spectral methods a degenerate eigenproblem)."""
    off = d[~np.eye(len(d), dtype=bool)]
    scale = off.mean() if len(off) and off.mean() > 0 else 1.0
    w = np.exp(-(d**2) / (2 * scale**2))
    np.fill_diagonal(w, 0)
    return w


def kmeans2(x: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Lloyd's k-means with k = 2, started from the two most distant points (deterministic)."""
    d = distances(x, "euclidean")
    i, j = np.unravel_index(d.argmax(), d.shape)
    centres = x[[i, j]]
    assign = None
    for _ in range(iterations):
        new = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
        if assign is not None and (new == assign).all():
            break
        assign = new
        centres = np.stack([x[assign == c].mean(0) if (assign == c).any() else centres[c] for c in (0, 1)])
    return assign


def spectral2(w: np.ndarray) -> np.ndarray:
    inv_sqrt = 1 / np.sqrt(np.maximum(w.sum(1), 1e-12))
    laplacian = np.eye(len(w)) - inv_sqrt[:, None] * w * inv_sqrt[None]
    _, vectors = np.linalg.eigh(laplacian)
    u = vectors[:, :2]
    return kmeans2(u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-12))


def dbscan(d: np.ndarray, eps: float, min_samples: int = 2) -> np.ndarray:
    """Cluster ids; noise objects get ids of their own (each is a group of one)."""
    near = d <= eps
    core = near.sum(1) >= min_samples
    _, component = connected_components(near & core[:, None] & core[None], directed=False)
    labels = np.where(core, component, -1)
    for i in np.flatnonzero(~core):  # border objects join a core neighbour's cluster
        neighbours = np.flatnonzero(near[i] & core)
        labels[i] = component[neighbours[0]] if len(neighbours) else -1
    noise = labels == -1
    labels[noise] = labels.max() + 1 + np.arange(noise.sum())
    return labels


def graph_cut(w: np.ndarray) -> np.ndarray:
    n = len(w)
    if n < 2:
        return np.zeros(n, int)
    if n > 20:
        raise ValueError("graph-cut enumerates all bipartitions: scenes of more than 20 objects are too large")
    subsets = (np.arange(1, 2 ** (n - 1))[:, None] >> np.arange(n)) & 1  # the last object is never in S
    cut = np.einsum("si,ij,sj->s", subsets, w, 1 - subsets)
    return subsets[cut.argmin()]


def ncut(w: np.ndarray) -> np.ndarray:
    degree = np.maximum(w.sum(1), 1e-12)
    _, vectors = eigh(np.diag(degree) - w, np.diag(degree))
    return (vectors[:, 1] > 0).astype(int) if len(w) > 1 else np.zeros(len(w), int)


def partition_to_prediction(groups: np.ndarray, d: np.ndarray) -> np.ndarray:
    ids, sizes = np.unique(groups, return_counts=True)
    largest = ids[sizes == sizes.max()]
    medoid_group = groups[d.sum(1).argmin()]
    normal = medoid_group if medoid_group in largest else largest[0]
    return (groups != normal).astype(int)


def run_method(method: str, x: np.ndarray, metric: str, d: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores, partition) of one scene's objects: features x (n, C), distances d (n, n) if already known."""
    d = distances(x, metric) if d is None else d
    if method == "mean-distance":
        mean = d.sum(1) / max(len(d) - 1, 1)
        scores = mean / (2 * mean.mean()) if mean.mean() > 0 else np.zeros(len(d))
        return scores, (scores > 0.5).astype(int)
    if method == "kmeans":
        groups = kmeans2(x / np.linalg.norm(x, axis=1, keepdims=True) if metric == "cosine" else x)
    elif method == "dbscan":
        nearest = np.where(np.eye(len(d), dtype=bool), np.inf, d).min(1) if len(d) > 1 else np.ones(1)
        groups = dbscan(d, 2 * np.median(nearest))
    else:
        groups = {"spectral": spectral2, "graph-cut": graph_cut, "ncut": ncut}[method](affinity(d))
    return partition_to_prediction(groups, d).astype(float), groups


def run_baselines(scenes: list[dict], methods=METHODS, metrics=METRICS) -> dict:
    """Set metrics need the distances `object_features` computed for them; k-means skips them."""
    results = {}
    for method in methods:
        for metric in metrics:
            if method == "kmeans" and metric in SET_METRICS:
                continue
            scores, labels, ari = [], [], []
            for scene in scenes:
                d = scene["distances"][metric] if metric in SET_METRICS else None
                s, groups = run_method(method, scene["features"], metric, d)
                scores.append(s)
                labels.append(scene["labels"])
                ari.append(adjusted_rand(scene["labels"], groups))
            scores, labels = np.concatenate(scores), np.concatenate(labels)
            results[f"{method}/{metric}"] = {
                "auroc": auroc(labels, scores),
                "accuracy": accuracy(labels, scores),
                "ari_mean": float(np.mean(ari)),
                "ari_std": float(np.std(ari)),
                "n_scenes": len(scenes),
                "n_objects": len(labels),
            }
    return results


def write_results(out: Path, results: dict, source: str) -> None:
    """results: split -> method/metric -> metrics."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(json.dumps({"features": source, "splits": results}, indent=1))
    lines = [f"Object features: {source}", ""]
    for split, rows in results.items():
        lines += [
            f"## {split}",
            "",
            "| method | distance | AUROC | ACC | ARS / std |",
            "|---|---|---:|---:|---:|",
        ]
        for name, r in rows.items():
            method, metric = name.split("/")
            lines.append(
                f"| {method} | {metric} | {100 * r['auroc']:.2f} | {100 * r['accuracy']:.2f} "
                f"| {r['ari_mean']:.4f} / {r['ari_std']:.4f} |"
            )
        lines.append("")
    (out / "baselines.md").write_text("\n".join(lines))
