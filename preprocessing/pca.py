"""Optional PCA of the token channels, as the published model cached 128 of DINOv2's 384 dimensions.

Fitted once on a sample of tokens, stored beside the manifest (`pca/mean.npy`, `pca/components.npy`) and
applied on the device before the float16 conversion. `--shard i/N` jobs that fit concurrently all end up
using the first fit stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PCA_FOLDER = "pca"
MEAN_FILE = "mean.npy"
COMPONENTS_FILE = "components.npy"
FIT_FILE = "fit.json"
MAX_FIT_TOKENS = 200_000


@dataclass(frozen=True)
class Pca:
    mean: np.ndarray  # float32 (C,)
    components: np.ndarray  # float32 (k, C), rows orthonormal, by decreasing variance
    fit: dict  # how it was fitted: explained variance ratio, tokens, scenes

    @property
    def dim(self) -> int:
        return int(self.components.shape[0])


def fit_pca(tokens: torch.Tensor, dim: int, scene_ids: list[str], seed: int = 0) -> Pca:
    """Principal directions of (n, C) tokens, from at most MAX_FIT_TOKENS of them, in float64."""
    if dim > tokens.shape[1]:
        raise ValueError(f"--pca-dim {dim} exceeds the token dimension {tokens.shape[1]}")
    if tokens.shape[0] > MAX_FIT_TOKENS:
        keep = torch.randperm(tokens.shape[0], generator=torch.Generator().manual_seed(seed))[:MAX_FIT_TOKENS]
        tokens = tokens[keep]
    sample = tokens.double()
    mean = sample.mean(0)
    centred = sample - mean
    covariance = centred.T @ centred / max(len(sample) - 1, 1)
    variances, vectors = torch.linalg.eigh(covariance)  # ascending
    order = torch.argsort(variances, descending=True)[:dim]
    components = vectors[:, order].T
    # eigenvectors are defined up to sign: fix it so refits on the same sample agree
    signs = torch.sign(components[torch.arange(dim), components.abs().argmax(1)])
    fit = {
        "explained_variance_ratio": float(variances[order].sum() / variances.clamp(min=0).sum()),
        "tokens": len(sample),
        "scenes": scene_ids,
        "seed": seed,
    }
    return Pca(mean.float().numpy(), (components * signs[:, None]).float().numpy(), fit)


def save_pca(out: Path, pca: Pca) -> Pca:
    """Store `pca` in `<out>/pca/` unless another job got there first; return the stored one.

    The files are written into a private folder that is then renamed into place: a rename onto an existing
    non-empty folder fails, so the three files always come from the same fit.
    """
    tmp = Path(tempfile.mkdtemp(prefix=".pca-", dir=out))
    np.save(tmp / MEAN_FILE, pca.mean)
    np.save(tmp / COMPONENTS_FILE, pca.components)
    (tmp / FIT_FILE).write_text(json.dumps(pca.fit, indent=1, sort_keys=True))
    try:
        os.rename(tmp, out / PCA_FOLDER)
    except OSError:
        shutil.rmtree(tmp)
    return load_pca(out)


def load_pca(out: Path) -> Pca | None:
    """The PCA stored under `out`, or None if there is none yet."""
    folder = out / PCA_FOLDER
    if not (folder / FIT_FILE).is_file():
        return None
    fit = json.loads((folder / FIT_FILE).read_text())
    return Pca(np.load(folder / MEAN_FILE), np.load(folder / COMPONENTS_FILE), fit)


def pca_manifest_entry(out: Path, pca: Pca) -> dict:
    """How the manifest describes the PCA: dimension, fit summary, files relative to `out`, checksums."""
    files = {name: f"{PCA_FOLDER}/{name}" for name in (MEAN_FILE, COMPONENTS_FILE)}
    return {
        "dim": pca.dim,
        "fit": pca.fit,
        "mean": files[MEAN_FILE],
        "components": files[COMPONENTS_FILE],
        "sha256": {path: hashlib.sha256((out / path).read_bytes()).hexdigest() for path in files.values()},
        "applies_to": "tokens.npy (cls.npy keeps the encoder's full dimension)",
        "formula": "(token - mean) @ components.T, then float16",
    }
