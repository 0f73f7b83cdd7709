"""Streaming the feature shards (docs/feature-shards.md) into padded batches of scenes.

One pipeline serves training and evaluation:

    shards -> split by DDP rank (training) -> split by data-loader worker -> decode .npy/.json
           -> [training: shuffle buffer] -> pick views -> [training: quarter-turn the scene about z] -> batch + pad

All randomness comes from generators seeded with (seed, epoch, rank, worker), so an epoch is a pure function
of the config and its number: resuming at an epoch boundary replays what an uninterrupted run would see.
"""

from __future__ import annotations

import io
import json
import zlib
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import webdataset as wds

from preprocessing.shards import SAMPLE_MEMBERS


@dataclass
class DataConfig:
    features: str = ""  # feature folder written by `python -m preprocessing features`
    train_split: str = "train"
    batch_size: int = 20
    train_views_sampled: int = 10  # views drawn per scene and step ...
    train_views_used: int = 5  # ... of which the first ones are used (the public code's 10 / 5)
    eval_views: int = 5  # fixed, evenly spaced subset used by evaluation: the papers' M = 5
    rotate: bool = True  # random quarter turn of the whole scene about the world z axis (training only)
    shuffle_buffer: int = 200
    num_workers: int = 4


def eval_view_indices(n_total: int, n: int) -> np.ndarray:
    """The fixed views of an n-view evaluation: evenly spaced along the ring (views are in azimuth order)."""
    n = min(n, n_total)
    return np.floor(np.arange(n) * n_total / n).astype(np.int64)


def rotate_scene(w2c: np.ndarray, boxmin: np.ndarray, boxmax: np.ndarray, angle: float):
    """Rotate the world by `angle` about the z axis: cameras follow (pixels unchanged), boxes become the
    axis-aligned bounds of the rotated boxes. Exact for quarter turns only: any other angle widens the box of
    the object (training uses quarter turns, so its crops have the scale of the test crops)."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    inverse = np.eye(4, dtype=np.float32)
    inverse[:3, :3] = rot.T
    corners = np.stack(np.meshgrid([0, 1], [0, 1], [0, 1], indexing="ij"), -1).reshape(8, 3)
    boxes = np.where(corners[None], boxmax[:, None], boxmin[:, None]) @ rot.T  # (N, 8, 3)
    return w2c @ inverse, boxes.min(1), boxes.max(1)


def _shuffled(samples, bufsize: int, rng: np.random.Generator):
    buffer = []
    for sample in samples:
        buffer.append(sample)
        if len(buffer) >= bufsize:
            yield buffer.pop(int(rng.integers(len(buffer))))
    rng.shuffle(buffer)
    yield from buffer


def decode_sample(sample: dict) -> dict:
    """One shard sample decoded: exactly the members of the format, `.npy` without pickle and `.json`.
    webdataset's own `decode()` would unpickle a `.pyd` or `.pth` member of a foreign shard; here any missing,
    foreign or undecodable member is a ValueError naming the shard and the sample."""
    where = f"{sample.get('__url__')}: sample {sample.get('__key__')!r}"
    found = {name for name in sample if not name.startswith("__")}
    if found != SAMPLE_MEMBERS:
        missing, extra = sorted(SAMPLE_MEMBERS - found), sorted(found - SAMPLE_MEMBERS)
        raise ValueError(f"{where}: lacks {missing or 'nothing'}, has unexpected {extra or 'nothing'}")
    decoded = {name: value for name, value in sample.items() if name.startswith("__")}
    for name in sorted(found):
        try:
            if name.endswith(".json"):
                decoded[name] = json.loads(sample[name])
            else:
                decoded[name] = np.lib.format.read_array(io.BytesIO(sample[name]), allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{where}: {name} does not decode ({err})") from err
    return decoded


def prepare_scene(sample: dict, rng: np.random.Generator, cfg: DataConfig, train: bool, n_views, label_seed):
    """Pick views, maybe rotate and shuffle labels; arrays keep their shard dtypes (tokens stay float16)."""
    meta = sample["meta.json"]
    n_total = sample["tokens.npy"].shape[0]
    if train:
        drawn = rng.choice(n_total, min(cfg.train_views_sampled, n_total), replace=False)
        views = drawn[: cfg.train_views_used]
    else:
        views = eval_view_indices(n_total, n_views)
    w2c, boxmin, boxmax = sample["w2c.npy"][views], sample["boxmin.npy"], sample["boxmax.npy"]
    if train and cfg.rotate:
        w2c, boxmin, boxmax = rotate_scene(w2c, boxmin, boxmax, rng.integers(4) * np.pi / 2)
    labels = sample["labels.npy"].astype(np.int64)
    if label_seed is not None:  # control run: a fixed permutation of the labels within each scene
        scene_rng = np.random.default_rng([label_seed, zlib.crc32(sample["__key__"].encode())])
        labels = scene_rng.permutation(labels)
    return {
        "key": sample["__key__"],
        "views": views,
        "n_total_views": n_total,
        "tokens": sample["tokens.npy"][views],
        "cls": sample["cls.npy"][views],
        "kfeat": sample["kfeat.npy"][views].astype(np.float32),
        "w2c": w2c.astype(np.float32),
        "boxmin": boxmin.astype(np.float32),
        "boxmax": boxmax.astype(np.float32),
        "labels": labels,
        "anomaly_types": list(meta["anomaly_types"]),
    }


def _scenes(samples, cfg: DataConfig, train: bool, seed: int, epoch: int, n_views: int, label_seed):
    rank, _, worker, _ = wds.utils.pytorch_worker_info()
    rng = np.random.default_rng([seed, epoch, rank, worker])
    if train:
        samples = _shuffled(samples, cfg.shuffle_buffer, rng)
    for sample in samples:
        yield prepare_scene(sample, rng, cfg, train, n_views, label_seed)


def collate(scenes: list[dict]) -> dict:
    """Stack scenes, padding objects to the largest count: labels -1 and mask False mark the padding."""
    if len({s["tokens"].shape for s in scenes}) != 1:
        raise ValueError("scenes of one batch need the same number of views and token grid")
    B, N = len(scenes), max(len(s["labels"]) for s in scenes)
    boxmin, boxmax = np.zeros((B, N, 3), np.float32), np.zeros((B, N, 3), np.float32)
    labels, mask = np.full((B, N), -1, np.int64), np.zeros((B, N), bool)
    for i, s in enumerate(scenes):
        n = len(s["labels"])
        boxmin[i, :n], boxmax[i, :n], labels[i, :n], mask[i, :n] = s["boxmin"], s["boxmax"], s["labels"], True
    stacked = ("tokens", "cls", "kfeat", "w2c")
    batch = {name: torch.from_numpy(np.stack([s[name] for s in scenes])) for name in stacked}
    batch.update(
        boxmin=torch.from_numpy(boxmin),
        boxmax=torch.from_numpy(boxmax),
        labels=torch.from_numpy(labels),
        mask=torch.from_numpy(mask),
        keys=[s["key"] for s in scenes],
        views=[s["views"].tolist() for s in scenes],
        n_total_views=[s["n_total_views"] for s in scenes],
        anomaly_types=[s["anomaly_types"] for s in scenes],
    )
    return batch


def scene_loader(
    urls: list[str],
    cfg: DataConfig,
    *,
    train: bool,
    seed: int = 0,
    epoch: int = 0,
    n_views: int | None = None,
    batch_size: int | None = None,
    label_seed: int | None = None,
    pin_memory: bool = False,
):
    """Batches of one pass over the shards (this rank's share of them when training under DDP).

    Evaluation reads every shard in order on the calling process, with `n_views` fixed views per scene.
    Workers are capped at the number of shards this process reads, so no worker idles on an empty stream.
    """
    world = wds.utils.pytorch_worker_info()[1] if train else 1
    dataset = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if train else False,
        seed=seed * 100_003 + epoch,
        nodesplitter=wds.split_by_node if train else None,
        workersplitter=wds.split_by_worker,
        empty_check=False,
    )
    scenes = partial(
        _scenes,
        cfg=cfg,
        train=train,
        seed=seed,
        epoch=epoch,
        n_views=n_views or cfg.eval_views,
        label_seed=label_seed,
    )
    dataset = dataset.map(decode_sample).compose(scenes).batched(batch_size or cfg.batch_size, collation_fn=collate)
    rank = wds.utils.pytorch_worker_info()[0] if train else 0
    workers = min(cfg.num_workers, len(urls[rank::world]))
    return wds.WebLoader(dataset, batch_size=None, num_workers=workers, pin_memory=pin_memory)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
