"""Metrics in numpy: AUROC (ties count one half) pooled over objects (the published protocol) and averaged per
scene, accuracy at 0.5, adjusted Rand."""

from __future__ import annotations

import numpy as np
from scipy.special import comb
from scipy.stats import rankdata


def auroc(labels, scores) -> float:
    """Area under the ROC curve with 1 = positive (anomalous): the Mann-Whitney U statistic on average ranks,
    so tied scores count one half. NaN when one class is absent."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_per_scene(scenes, labels, scores) -> tuple[float, int]:
    """Mean over scenes of each scene's AUROC, and how many scenes count (those with both classes): whether a
    model ranks the odd objects of a scene above its normal ones, free of score offsets between scenes."""
    scenes, labels, scores = np.asarray(scenes), np.asarray(labels), np.asarray(scores)
    values = [auroc(labels[scenes == s], scores[scenes == s]) for s in np.unique(scenes)]
    values = [v for v in values if np.isfinite(v)]
    return (float(np.mean(values)) if values else float("nan")), len(values)


def accuracy(labels, scores, threshold: float = 0.5) -> float:
    labels, scores = np.asarray(labels), np.asarray(scores)
    return float(((scores > threshold) == labels.astype(bool)).mean()) if len(labels) else float("nan")


def adjusted_rand(truth, predicted) -> float:
    """Adjusted Rand index of two partitions (Hubert & Arabie); 1.0 when both are the same trivial one."""
    _, t = np.unique(np.asarray(truth), return_inverse=True)
    _, p = np.unique(np.asarray(predicted), return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(table, (t, p), 1)
    pairs = comb(table, 2).sum()
    rows, cols = comb(table.sum(1), 2).sum(), comb(table.sum(0), 2).sum()
    expected = rows * cols / comb(len(t), 2)
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else float((pairs - expected) / (maximum - expected))
