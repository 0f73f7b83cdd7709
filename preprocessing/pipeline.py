"""The feature stage end to end: list the variant, plan shards, encode what is not done, write the manifest.

reader thread/processes -> cross-scene batches on the device -> one sample per scene -> atomic shards
"""

from __future__ import annotations

import sys
import time
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from preprocessing.batching import encode_scenes
from preprocessing.encoder import ViewEncoder, load_model, resolve_device, resolve_dtype
from preprocessing.manifest import build_manifest, write_manifest
from preprocessing.pca import Pca, fit_pca, load_pca, pca_manifest_entry, save_pca
from preprocessing.prefetch import prefetch_map
from preprocessing.samples import scene_sample
from preprocessing.shardfiles import (
    SettingsMismatch,
    ShardBuilder,
    ShardPlan,
    check_finished,
    estimated_scene_bytes,
    plan_shards,
    read_record,
    select_part,
)
from preprocessing.variant import Variant, count_views, open_variant, read_entry

DEFAULT_MODEL = "facebook/dinov2-small"
PCA_FIT_SCENES = 32  # spread evenly over the train split; 32 x 20 views x 324 tokens is plenty for 384 dims


@dataclass
class FeatureOptions:
    variant: Path
    out: Path
    model: str = DEFAULT_MODEL
    image_size: int = 252
    batch_size: int | None = None  # None: 64 views on a GPU, 8 on a CPU
    device: str = "auto"
    dtype: str = "auto"
    shard_size_mb: float = 1000.0
    part: int = 0  # --shard part/parts
    parts: int = 1
    pca_dim: int | None = None
    splits: list[str] | None = None  # None: every split of the variant
    read_workers: int = 1
    progress: bool = True


@dataclass
class RunSummary:
    manifest: dict
    written: list[str] = field(default_factory=list)  # shards written by this run
    kept: list[str] = field(default_factory=list)  # shards of this job already finished before
    images: int = 0
    skipped: list[dict] = field(default_factory=list)  # scenes skipped by this run
    failed: list[dict] = field(default_factory=list)  # Ray: shards whose task failed ({"shard", "reason"})
    seconds: dict = field(default_factory=dict)


def _selected_splits(variant: Variant, wanted: list[str] | None) -> list[str]:
    if wanted is None:
        return list(variant.splits)
    unknown = sorted(set(wanted) - set(variant.splits))
    if unknown:
        raise ValueError(f"{variant.root}: no split(s) {unknown}; the variant has {sorted(variant.splits)}")
    return wanted


def _fit_pca_on_variant(
    variant: Variant, encoder: ViewEncoder, dim: int, options: FeatureOptions, batch_size: int
) -> Pca:
    """Fit on PCA_FIT_SCENES readable scenes spread over `train` (or the first split if there is none)."""
    split = "train" if "train" in variant.splits else next(iter(variant.splits))
    entries = variant.splits[split]
    picks = np.unique(np.linspace(0, len(entries) - 1, min(PCA_FIT_SCENES, len(entries))).round().astype(int))
    reads = prefetch_map(read_entry, [entries[i] for i in picks], workers=options.read_workers)
    tokens, scene_ids = [], []
    for item in encode_scenes(reads, encoder, batch_size):
        if item.tokens is not None:
            tokens.append(torch.from_numpy(item.tokens.reshape(-1, item.tokens.shape[-1])))
            scene_ids.append(item.read.entry.scene_id)
    if not tokens:
        raise ValueError(f"no readable scene in split {split!r} to fit the PCA on")
    return fit_pca(torch.cat(tokens), dim, scene_ids)


def _prepare_pca(variant, encoder, options, batch_size) -> Pca:
    pca = load_pca(options.out)
    if pca is None:
        pca = save_pca(
            options.out, _fit_pca_on_variant(variant, encoder, options.pca_dim, options, batch_size)
        )
    if pca.dim != options.pca_dim or pca.mean.shape[0] != encoder.info.hidden_size:
        raise SettingsMismatch(
            f"{options.out}/pca holds a {pca.mean.shape[0]}->{pca.dim} PCA, this run asks for "
            f"{encoder.info.hidden_size}->{options.pca_dim}. Write to a new --out folder."
        )
    return pca


@dataclass
class FeatureRun:
    """What every job of one feature run agrees on: the encoder, the settings each shard records, the shard plan."""

    options: FeatureOptions
    variant: Variant
    splits: list[str]
    encoder: ViewEncoder
    batch_size: int
    settings: dict
    plans: list[ShardPlan]
    pca_entry: dict | None
    sharding: dict
    n_views: int

    def pending(self) -> tuple[list[ShardPlan], list[ShardPlan]]:
        """This job's shards (`--shard part/parts`, selected splits) and those of them not finished yet."""
        options = self.options
        mine = [plan for plan in select_part(self.plans, options.part, options.parts) if plan.split in self.splits]
        return mine, [plan for plan in mine if not check_finished(options.out, plan, self.settings)]

    def write_manifest(self) -> dict:
        """The manifest over every shard of the selected splits (and of splits an earlier run wrote)."""
        out = self.options.out
        with_records = {plan.split for plan in self.plans if read_record(out, plan) is not None}
        described = [plan for plan in self.plans if plan.split in set(self.splits) | with_records]
        source = {
            "variant": str(self.variant.root.resolve()),
            "variant_id": self.variant.variant_id,
            "config_digest": self.variant.config_digest,
        }
        manifest = build_manifest(out, described, self.settings, self.pca_entry, source, self.sharding)
        write_manifest(out, manifest)
        return manifest


def prepare_run(options: FeatureOptions) -> FeatureRun:
    """Open the variant, load the encoder, fit (or load) the PCA and plan the shards."""
    variant = open_variant(options.variant)
    splits = _selected_splits(variant, options.splits)
    device = resolve_device(options.device)
    dtype = resolve_dtype(options.dtype, device)
    model, info = load_model(options.model)
    encoder = ViewEncoder(model, info, device, dtype, (options.image_size, options.image_size))
    batch_size = options.batch_size or (64 if device.type == "cuda" else 8)
    options.out.mkdir(parents=True, exist_ok=True)

    pca = _prepare_pca(variant, encoder, options, batch_size) if options.pca_dim else None
    if pca is not None:
        encoder.set_pca(pca)
    pca_entry = pca_manifest_entry(options.out, pca) if pca else None

    n_views = count_views(variant.entries()) or 1
    scene_bytes = estimated_scene_bytes(n_views, encoder.grid, encoder.token_dim, info.hidden_size)
    scenes_per_shard = max(1, int(options.shard_size_mb * 1e6 // scene_bytes))
    settings = {
        "encoder": info.to_dict(),
        "image_size": list(encoder.image_size),
        "grid": list(encoder.grid),
        "token_dim": encoder.token_dim,
        "compute_dtype": str(dtype).removeprefix("torch."),
        "pca_sha256": pca_entry["sha256"] if pca_entry else None,
        "scenes_per_shard": scenes_per_shard,
        "variant_id": variant.variant_id,
        "config_digest": variant.config_digest,
    }
    sharding = {
        "shard_size_mb": options.shard_size_mb,
        "scenes_per_shard": scenes_per_shard,
        "estimated_scene_bytes": scene_bytes,
    }
    return FeatureRun(options, variant, splits, encoder, batch_size, settings, plan_shards(variant, scenes_per_shard),
                      pca_entry, sharding, n_views)


def extract_features(options: FeatureOptions) -> RunSummary:
    """Encode the scenes of the selected splits whose shard is not finished yet; then rewrite the manifest."""
    start = time.perf_counter()
    run = prepare_run(options)
    mine, todo = run.pending()
    summary = RunSummary(manifest={}, kept=[plan.tar for plan in mine if plan not in todo])
    setup_done, setup_done_cpu = time.perf_counter(), time.process_time()

    total_views = sum(len(plan.entries) for plan in todo) * run.n_views
    with tqdm(
        total=total_views, unit="img", desc="features", disable=not options.progress, dynamic_ncols=True
    ) as bar:
        _write_shards(todo, run.encoder, run.batch_size, options, run.settings, bar, summary)
    finished, finished_cpu = time.perf_counter(), time.process_time()

    summary.manifest = run.write_manifest()
    summary.seconds = {
        "setup": setup_done - start,
        "encode_and_write": finished - setup_done,
        "encode_and_write_cpu": finished_cpu - setup_done_cpu,  # all threads of this process
        "total": time.perf_counter() - start,
    }
    return summary


def _write_shards(
    todo: list[ShardPlan],
    encoder: ViewEncoder,
    batch_size: int,
    options: FeatureOptions,
    settings: dict,
    bar: tqdm,
    summary: RunSummary,
) -> None:
    def on_views(count: int) -> None:
        summary.images += count
        bar.update(count)

    entries = [entry for plan in todo for entry in plan.entries]
    with closing(prefetch_map(read_entry, entries, workers=options.read_workers)) as reads:
        encoded = encode_scenes(reads, encoder, batch_size, on_views)
        for plan in todo:
            builder = ShardBuilder(options.out, plan, settings)
            try:
                for entry in plan.entries:
                    item = next(encoded)
                    assert item.read.entry == entry, "encode_scenes must keep the input order"
                    if item.read.error is not None:
                        builder.skip(entry, item.read.error)
                        summary.skipped.append(builder.skipped[-1])
                        bar.write(f"skipped {entry.scene_id} ({entry.split}): {item.read.error}", file=sys.stderr)
                    else:
                        builder.add(scene_sample(item.read.scene, item.tokens, item.cls))
                builder.finish()
            except OSError as err:  # a full disk or a lost folder: name the shard, leave no partial file
                builder.abandon()
                raise OSError(err.errno, f"{options.out / plan.tar}: cannot write the shard ({err})") from err
            summary.written.append(plan.tar)
