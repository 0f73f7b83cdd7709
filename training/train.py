"""The training loop, plain PyTorch.

AdamW with linear warm-up then cosine decay (per step), gradient clipping, bf16 autocast on CUDA only, one
checkpoint per epoch (`checkpoints/last.pt`, written atomically) and `--resume` from it, DDP when started by
`torchrun` (detected from the environment), a CSV log of losses, learning rate and throughput plus PNG curves.
Epoch e's data order and augmentations depend only on (seed, e) and the RNG states are checkpointed, so a
resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pickle
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from generation.safefiles import writing
from preprocessing.shards import load_manifest
from training.config import Config, config_from_dict
from training.data import scene_loader, to_device
from training.evaluate import evaluate
from training.model import OddOneOutModel
from training.plots import figure

LOG_COLUMNS = (
    "step",
    "epoch",
    "loss",
    "bce",
    "normality",
    "grad_norm",
    "lr",
    "scenes_per_s",
    "objects_per_s",
    "time_s",
)
LOSSES = ("loss", "bce", "normality")


def eval_split_names(features, train_split: str) -> list[str]:
    """Splits evaluated after training: the non-empty ones named like a test split (`test`, `seen-test`),
    else all non-empty ones but the training split."""
    others = [name for name, n in features.samples.items() if n and name != train_split]
    return [name for name in others if "test" in name] or others


def open_features(path: str, cfg: Config, adopt: bool):
    """Shard urls per split; `adopt` takes the token sizes from the manifest, else they must match."""
    if adopt:
        features = load_manifest(path)
        model = dataclasses.replace(cfg.model, token_dim=features.token_dim, cls_dim=features.cls_dim)
        return features, dataclasses.replace(cfg, model=model)
    return load_manifest(path, expect={"token_dim": cfg.model.token_dim, "cls_dim": cfg.model.cls_dim}), cfg


def lr_factor(step: int, total: int, warmup: int, min_frac: float) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * progress))


def setup_distributed():
    """(rank, world size, device) from torchrun's environment; a plain process is rank 0 of 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local = int(os.environ["LOCAL_RANK"])
        if torch.cuda.is_available():
            torch.cuda.set_device(local)
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        device = torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")
        return dist.get_rank(), world, device
    return 0, 1, torch.device("cuda" if torch.cuda.is_available() else "cpu")


def save_checkpoint(path: Path, **state):
    """Atomically: a failed write (full disk) leaves the previous checkpoint in place and names the file."""
    tmp = path.with_suffix(".tmp")
    try:
        with writing(path, "checkpoint"):
            torch.save(state, tmp)
            os.replace(tmp, path)
    except RuntimeError as err:  # torch's zip writer reports a failed write as a RuntimeError
        raise OSError(f"{path}: cannot write the checkpoint ({err})") from err
    finally:
        tmp.unlink(missing_ok=True)


# what checkpoints written before RNG states became tensors hold besides them: numpy's uint32 MT19937 key
OLD_CHECKPOINT_GLOBALS = [np.array(0).__reduce__()[0], np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents, read without unpickling arbitrary objects (`weights_only`): a checkpoint from
    an untrusted source can hold tensors and plain values (and older ones a uint32 numpy array), never code."""
    try:
        with torch.serialization.safe_globals(OLD_CHECKPOINT_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: not a readable checkpoint of this version ({first})") from err


def load_model(path: str | Path, device) -> tuple[OddOneOutModel, Config, dict]:
    state = read_checkpoint(path)
    cfg = config_from_dict(state["config"])
    model = OddOneOutModel(cfg.model)
    model.load_state_dict(state["model"])
    return model.to(device), cfg, state


def _rng_state() -> dict:
    """Every RNG's state as tensors and plain values, so a checkpoint loads with `weights_only=True`."""
    name, key, pos, has_gauss, gauss = np.random.get_state()
    numpy_state = (name, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss)
    state = {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict):
    random.setstate(state["python"])
    name, key, pos, has_gauss, gauss = state["numpy"]
    key = key.numpy() if torch.is_tensor(key) else key  # a numpy array in checkpoints of earlier versions
    np.random.set_state((name, key.astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def plot_log(log_path: Path, png: Path):
    with open(log_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    step = [int(r["step"]) for r in rows]

    def column(name):
        return [float(r[name]) if r[name] != "" else None for r in rows]

    losses = {name: (step, column(name)) for name in LOSSES if rows[0][name] != ""}
    figure(
        png,
        [
            {"title": "training loss", "series": losses, "xlabel": "step"},
            {"title": "learning rate", "series": {"lr": (step, column("lr"))}, "xlabel": "step"},
            {"title": "throughput", "series": {"scenes/s": (step, column("scenes_per_s"))}, "xlabel": "step"},
        ],
    )


def train(
    cfg: Config,
    out: str | Path,
    *,
    resume: bool = False,
    shuffle_labels: bool = False,
    run_eval: bool = True,
    max_steps: int | None = None,
) -> dict:
    """Train on `cfg.data.features`, write everything under `out`, evaluate the test splits at the end.

    `shuffle_labels` permutes the labels within each training scene (a fixed permutation per scene): the
    control run of the learning check. `max_steps` stops early (tests, benchmarks).
    """
    if not cfg.data.features:
        raise ValueError("no feature folder: pass --features or set data.features")
    out = Path(out)
    rank, world, device = setup_distributed()
    features, cfg = open_features(cfg.data.features, cfg, adopt=True)
    checkpoint = out / "checkpoints" / "last.pt"
    state = None
    if resume:
        if not checkpoint.is_file():
            raise FileNotFoundError(f"--resume: {checkpoint} does not exist")
        state = read_checkpoint(checkpoint)
        if state["config"] != dataclasses.asdict(cfg) or state["shuffle_labels"] != shuffle_labels:
            raise ValueError(f"--resume: the config differs from the one {checkpoint} was trained with")
    elif checkpoint.exists():
        raise FileExistsError(f"{out} already holds a run: pass --resume to continue it, or choose another --out")
    train_urls = features.shard_urls[cfg.data.train_split]
    if world > len(train_urls):
        raise ValueError(f"{world} DDP processes but only {len(train_urls)} training shards: write more shards")

    random.seed(cfg.train.seed)
    np.random.seed(cfg.train.seed)
    torch.manual_seed(cfg.train.seed)
    model = OddOneOutModel(cfg.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    steps_per_epoch = math.ceil(features.samples[cfg.data.train_split] / (cfg.data.batch_size * world))
    total = cfg.train.epochs * steps_per_epoch
    warmup = max(1, round(cfg.train.warmup_frac * total))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total, warmup, cfg.train.min_lr_frac)
    )
    start_epoch, step = 0, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step = state["epoch"], state["step"]
        _set_rng_state(state["rng"])
    net = model
    if world > 1:
        if device.type == "cuda":
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    amp = cfg.train.bf16 and device.type == "cuda"

    log_path = out / "log.csv"
    if rank == 0:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        run = {
            "config": dataclasses.asdict(cfg),
            "seeds": {
                "torch": cfg.train.seed,
                "numpy": cfg.train.seed,
                "python": cfg.train.seed,
                "data": "(seed, epoch, rank, worker)",
                "label_shuffle": cfg.train.seed if shuffle_labels else None,
            },
            "shuffle_labels": shuffle_labels,
            "world_size": world,
            "device": str(device),
            "steps_per_epoch": steps_per_epoch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "versions": {"torch": torch.__version__, "python": platform.python_version()},
            "features": {"root": str(features.root), "samples": features.samples},
        }
        with writing(out / "config.json"):
            (out / "config.json").write_text(json.dumps(run, indent=1))
        if state is None:
            with writing(log_path), open(log_path, "w", newline="") as f:
                csv.writer(f).writerow(LOG_COLUMNS)
        else:
            _truncate_log(log_path, state["step"])

    window = _new_window()
    tick = time.perf_counter()
    for epoch in range(start_epoch, cfg.train.epochs):
        net.train()
        loader = scene_loader(
            train_urls,
            cfg.data,
            train=True,
            seed=cfg.train.seed,
            epoch=epoch,
            label_seed=cfg.train.seed if shuffle_labels else None,
            pin_memory=device.type == "cuda",
        )
        batches = iter(loader)
        while max_steps is None or step < max_steps:
            batch = next(batches, None)
            if world > 1:  # every rank stops at the first rank that runs out, so collectives stay matched
                more = torch.tensor(float(batch is not None), device=device)
                dist.all_reduce(more, op=dist.ReduceOp.MIN)
                if more.item() == 0:
                    break
            if batch is None:
                break
            n_scenes, n_objects = len(batch["keys"]), int(batch["mask"].sum())
            batch = to_device(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                _, losses = net(batch, batch["labels"])
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            for name in LOSSES:  # tensors: no device sync until a log row is written
                window[name] += losses[name].detach() if name in losses else 0.0
            window["grad_norm"] += grad_norm.detach()
            window["n"] += 1
            window["scenes"] += n_scenes
            window["objects"] += n_objects
            if rank == 0 and step % cfg.train.log_every == 0:
                _log_row(
                    log_path,
                    window,
                    step,
                    epoch,
                    scheduler.get_last_lr()[0],
                    time.perf_counter() - tick,
                    "normality" in losses,
                )
                window = _new_window()
                tick = time.perf_counter()
        if rank == 0:
            save_checkpoint(
                checkpoint,
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                epoch=epoch + 1,
                step=step,
                config=dataclasses.asdict(cfg),
                shuffle_labels=shuffle_labels,
                rng=_rng_state(),
            )
            with writing(out / "curves.png"):
                plot_log(log_path, out / "curves.png")
        if max_steps is not None and step >= max_steps:
            break

    if world > 1:  # leave together (Gloo aborts a rank torn down while its peer still trains), before evaluation
        del net  # the DDP reducer must not outlive its process group
        dist.barrier()
        dist.destroy_process_group()
    results = {}
    if rank == 0 and run_eval:
        splits = {s: features.shard_urls[s] for s in eval_split_names(features, cfg.data.train_split)}
        results = evaluate(model, splits, cfg, device, out / "eval", amp)
    return results


def _truncate_log(path: Path, step: int) -> None:
    """Drop the rows a killed run logged after its last checkpoint: the resumed run logs those steps again."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    kept = [rows[0], *(row for row in rows[1:] if row and int(row[0]) <= step)]
    tmp = path.with_name(path.name + ".tmp")
    with writing(path), open(tmp, "w", newline="") as f:
        csv.writer(f).writerows(kept)
    os.replace(tmp, path)


def _new_window() -> dict:
    return dict.fromkeys((*LOSSES, "grad_norm", "n", "scenes", "objects"), 0.0)


def _log_row(path: Path, window: dict, step: int, epoch: int, lr: float, seconds: float, has_normality: bool):
    n = max(window["n"], 1)
    row = {
        "step": step,
        "epoch": epoch,
        "loss": float(window["loss"]) / n,
        "bce": float(window["bce"]) / n,
        "normality": float(window["normality"]) / n if has_normality else "",
        "grad_norm": float(window["grad_norm"]) / n,
        "lr": lr,
        "scenes_per_s": window["scenes"] / seconds,
        "objects_per_s": window["objects"] / seconds,
        "time_s": seconds,
    }
    with writing(path), open(path, "a", newline="") as f:
        csv.writer(f).writerow([row[c] for c in LOG_COLUMNS])
