"""Writing `manifest.json`: what the shards hold and how they were made, assembled from the shard records.

Built from the records on disk rather than from this run's memory, so any job of a `--shard i/N` array (or a
rerun) writes the same, complete manifest once every shard exists.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from generation.safefiles import writing
from preprocessing.images import IMAGENET_MEAN, IMAGENET_STD
from preprocessing.shardfiles import ShardPlan, read_record
from preprocessing.shards import FORMAT_NAME, FORMAT_VERSION, MANIFEST_FILE, TOKEN_LAYOUT


def _versions() -> dict:
    found = {}
    for package in ("oddbench", "torch", "transformers", "webdataset"):
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = None
    return found


def build_manifest(
    out: Path, plans: list[ShardPlan], settings: dict, pca_entry: dict | None, source: dict, sharding: dict
) -> dict:
    """The manifest of the shards of `plans` found in `out`; `settings` is what each shard record carries."""
    splits: dict[str, dict] = {}
    skipped, missing = [], []
    for plan in plans:
        split = splits.setdefault(plan.split, {"samples": 0, "bytes": 0, "shards": []})
        record = read_record(out, plan)
        if record is None:
            missing.append(plan.tar)
            continue
        split["shards"].append({key: record[key] for key in ("path", "samples", "bytes", "sha256")})
        split["samples"] += record["samples"]
        split["bytes"] += record["bytes"]
        skipped.extend(record["skipped"])
    return {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "complete": not missing,
        "encoder": settings["encoder"],
        "input": {
            "image_size": settings["image_size"],
            "resize": "whole view, bilinear with antialiasing, no crop",
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        },
        "compute_dtype": settings["compute_dtype"],
        "tokens": {
            "layout": TOKEN_LAYOUT,
            "grid": settings["grid"],
            "dim": settings["token_dim"],
            "cls_dim": settings["encoder"]["hidden_size"],
            "dtype": "float16",
            "which": "last_hidden_state after the final layer norm; CLS and registers not in the map",
        },
        "pca": pca_entry,
        "source": source,
        "sharding": sharding,
        "splits": splits,
        "skipped": skipped,
        "missing_shards": missing,
        "created_with": _versions(),
    }


def write_manifest(out: Path, manifest: dict) -> Path:
    path = out / MANIFEST_FILE
    tmp = out / f"{MANIFEST_FILE}.{os.getpid()}.tmp"  # per process: parallel jobs may write it at once
    try:
        with writing(path, "manifest"):
            tmp.write_text(json.dumps(manifest, indent=1))
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failed write; the previous manifest stays as it was
    return path
