"""Training benchmark: step time and peak memory per batch size, inference time per scene, parameters per
head, and the speed-up of training from feature shards over recomputing DINOv2 features from the scene files.

    python benchmarks/bench_training.py                                   # demo-sized model (CPU default)
    python benchmarks/bench_training.py --config assets/configs/train_default.toml --batch-sizes 1,4,20

Scenes are synthetic (ring cameras, boxes on the floor, 20 views of 256 x 256) and written both as scene files
(HDF5, as the generator does) and as feature shards (as preprocessing does), so both paths read real files.
The recompute path reads the sampled views' pixels from the scene file, resizes them to 252 x 252 and runs a
full-size DINOv2 ViT-S/14 (random weights) before the same model step. Peak memory: torch's allocator peak on
CUDA; on a CPU the growth of the process's peak resident set (VmHWM, reset before each measurement) over its
resident set at that moment, after freed heap memory has been handed back (malloc_trim).
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import json
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import webdataset as wds
from vit_s14 import vit_s14

from generation.cameras import intrinsics, orbit_views
from generation.scenefile import Scene, write_scene
from preprocessing.images import to_model_input
from preprocessing.samples import scene_sample
from training.config import load_config
from training.data import DataConfig, collate, prepare_scene, scene_loader, to_device
from training.model import HEADS, ModelConfig, OddOneOutModel

IMAGE, INPUT, GRID = 256, 252, 18


def synthetic_scene(rng: np.random.Generator, index: int, n_objects: int, n_views: int) -> Scene:
    size = 0.4
    cols = int(np.ceil(np.sqrt(n_objects)))
    xy = np.stack([np.arange(n_objects) % cols, np.arange(n_objects) // cols], -1) * 1.5 * size
    boxmin = np.c_[xy - xy.mean(0) - size / 2, np.zeros(n_objects)]
    boxmax = boxmin + size
    k = intrinsics(IMAGE, IMAGE)
    corners = np.concatenate([boxmin, boxmax])
    w2c, _ = orbit_views(rng, n_views, np.array([0, 0, size / 2]), (0.7, 0.8), (25, 32), k, IMAGE, IMAGE, corners)
    # smooth "renders": low-frequency colour fields plus mild noise compress like real images do
    base = rng.uniform(0, 255, size=(n_views, 8, 8, 3))
    rgb = np.repeat(np.repeat(base, IMAGE // 8, 1), IMAGE // 8, 2) + rng.normal(0, 4, (n_views, IMAGE, IMAGE, 3))
    labels = np.zeros(n_objects, np.int8)
    labels[0] = 1
    return Scene(
        scene_id=f"scene_{index:06d}",
        split="train",
        seed=0,
        scene_index=index,
        rgb=np.clip(rgb, 0, 255).astype(np.uint8),
        depth=np.zeros((n_views, IMAGE, IMAGE), np.float32),
        instance=np.zeros((n_views, IMAGE, IMAGE), np.uint8),
        anomaly=np.zeros((n_views, IMAGE, IMAGE), np.uint8),
        intrinsics=np.repeat(k[None], n_views, 0),
        world_to_camera=w2c,
        labels=labels,
        anomaly_types=["material"] + ["none"] * (n_objects - 1),
        source_ids=["s"] * n_objects,
        categories=["c"] * n_objects,
        object_to_world=np.repeat(np.eye(4)[None], n_objects, 0),
        box_min=boxmin,
        box_max=boxmax,
        local_extents=np.full((n_objects, 3), size),
    )


def write_dataset(root: Path, n_scenes: int, n_objects: int, n_views: int, token_dim: int) -> list[str]:
    """Scene files under root/scenes and one feature shard; returns the scene file paths."""
    rng = np.random.default_rng(0)
    (root / "scenes").mkdir(parents=True)
    paths = []
    with wds.TarWriter(str(root / "train-000000.tar")) as sink:
        for i in range(n_scenes):
            scene = synthetic_scene(rng, i, n_objects, n_views)
            paths.append(str(root / "scenes" / f"{scene.scene_id}.h5"))
            write_scene(paths[-1], scene)
            tokens = rng.normal(size=(n_views, GRID, GRID, token_dim)).astype(np.float16)
            sink.write(scene_sample(scene, tokens, tokens.mean((1, 2))))
    return paths


def _proc_status_gib(field: str) -> float:
    status = Path("/proc/self/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith(field))) / 2**20


def reset_peak(device: torch.device) -> float:
    """Start a peak-memory measurement; returns the baseline to subtract."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return 0.0
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _proc_status_gib("VmRSS")


def peak_gib(device: torch.device, baseline: float) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return _proc_status_gib("VmHWM") - baseline


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def model_step(model, optimizer, batch, amp: bool):
    with torch.autocast(batch["tokens"].device.type, dtype=torch.bfloat16, enabled=amp):
        _, losses = model(batch, batch["labels"])
    optimizer.zero_grad(set_to_none=True)
    losses["loss"].backward()
    optimizer.step()


def bench_steps(cfg: ModelConfig, batches: dict[int, dict], steps: int, device, amp: bool) -> dict:
    rows = {}
    for b, batch in batches.items():
        torch.manual_seed(0)
        model = OddOneOutModel(cfg).to(device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
        batch = to_device(batch, device)
        for _ in range(3):  # warm-up: kernels and allocator pools are set up per shape on first use
            model_step(model, optimizer, batch, amp)
        baseline = reset_peak(device)
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model_step(model, optimizer, batch, amp)
        sync(device)
        seconds = (time.perf_counter() - start) / steps
        rows[b] = {"step_s": seconds, "scenes_per_s": b / seconds, "peak_gib": peak_gib(device, baseline)}
        print(f"  batch {b:3d}: {seconds * 1000:8.1f} ms/step  {b / seconds:7.2f} scenes/s", end="")
        print(f"  peak {rows[b]['peak_gib']:.2f} GiB")
    return rows


@torch.no_grad()
def bench_inference(cfg: ModelConfig, batch: dict, repeats: int, device, amp: bool) -> dict:
    rows = {}
    for head in HEADS:
        model = OddOneOutModel(dataclasses.replace(cfg, head=head)).to(device).eval()
        b = to_device(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            for _ in range(2):  # warm-up
                model(b)
            baseline = reset_peak(device)
            sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                model(b)
            sync(device)
        rows[head] = {
            "ms_per_scene": (time.perf_counter() - start) / repeats * 1000,
            "peak_gib": peak_gib(device, baseline),
        }
        print(f"  {head:13s} {rows[head]['ms_per_scene']:8.1f} ms/scene  peak {rows[head]['peak_gib']:.2f} GiB")
    return rows


def recompute_batch(paths, encoder, device, rng, data: DataConfig, amp: bool) -> tuple[dict, dict]:
    """What training without the cache does each step: read views, resize, encode; batch and timings."""
    t0 = time.perf_counter()
    scenes, views = [], []
    for path in paths:
        with h5py.File(path, "r") as f:
            n_total = f["views/rgb"].shape[0]
            idx = np.sort(
                rng.choice(n_total, min(data.train_views_sampled, n_total), replace=False)[: data.train_views_used]
            )
            views.append(f["views/rgb"][idx])
            scenes.append(
                {
                    "idx": idx,
                    "k": f["cameras/K"][idx],
                    "w2c": f["cameras/world_to_camera"][idx],
                    "boxmin": f["objects/box_min"][()],
                    "boxmax": f["objects/box_max"][()],
                    "labels": f["objects/label"][()],
                    "key": Path(path).stem,
                }
            )
    t1 = time.perf_counter()
    pixels = to_model_input(views, (INPUT, INPUT), device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
        hidden = encoder(pixel_values=pixels).last_hidden_state.float()
    sync(device)
    t2 = time.perf_counter()
    tokens = hidden[:, 1:].unflatten(1, (GRID, GRID)).half().cpu().numpy()
    samples, v = [], data.train_views_used
    for i, s in enumerate(scenes):
        kfeat = np.diag([GRID / IMAGE, GRID / IMAGE, 1.0]) @ s["k"]
        samples.append(
            {
                "__key__": s["key"],
                "meta.json": {"anomaly_types": ["none"] * len(s["labels"])},
                "tokens.npy": tokens[i * v : (i + 1) * v],
                "cls.npy": hidden[i * v : (i + 1) * v, 0].half().cpu().numpy(),
                "kfeat.npy": kfeat.astype(np.float32),
                "w2c.npy": s["w2c"].astype(np.float32),
                "boxmin.npy": s["boxmin"].astype(np.float32),
                "boxmax.npy": s["boxmax"].astype(np.float32),
                "labels.npy": s["labels"].astype(np.int64),
            }
        )
    every = dataclasses.replace(data, train_views_sampled=v, train_views_used=v)
    batch = collate([prepare_scene(s, rng, every, True, v, None) for s in samples])
    return batch, {"read_s": t1 - t0, "encode_s": t2 - t1}


def bench_speedup(cfg: ModelConfig, data: DataConfig, root: Path, paths, batch_size: int, steps: int, device, amp):
    torch.manual_seed(0)
    model = OddOneOutModel(cfg).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4)
    loader_cfg = dataclasses.replace(data, batch_size=batch_size, num_workers=0, shuffle_buffer=8)
    urls = [str(root / "train-000000.tar")]

    def shard_batches():
        epoch = 0
        while True:
            yield from scene_loader(urls, loader_cfg, train=True, epoch=epoch)
            epoch += 1

    batches = shard_batches()
    model_step(model, optimizer, to_device(next(batches), device), amp)  # warm-up
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        model_step(model, optimizer, to_device(next(batches), device), amp)
    sync(device)
    cached = (time.perf_counter() - start) / steps

    encoder = vit_s14().to(device)
    rng = np.random.default_rng(0)
    recompute_batch(paths[:batch_size], encoder, device, rng, data, amp)  # warm-up
    parts = {"read_s": 0.0, "encode_s": 0.0}
    start = time.perf_counter()
    for step in range(steps):
        chosen = [paths[(step * batch_size + i) % len(paths)] for i in range(batch_size)]
        batch, timing = recompute_batch(chosen, encoder, device, rng, data, amp)
        model_step(model, optimizer, to_device(batch, device), amp)
        parts = {k: parts[k] + timing[k] for k in parts}
    sync(device)
    recompute = (time.perf_counter() - start) / steps
    result = {
        "batch_size": batch_size,
        "views_per_scene": data.train_views_used,
        "shards_step_s": cached,
        "recompute_step_s": recompute,
        "recompute_read_s": parts["read_s"] / steps,
        "recompute_dinov2_s": parts["encode_s"] / steps,
        "speedup": recompute / cached,
    }
    print(
        f"  from shards {cached * 1000:.1f} ms/step; recomputing {recompute * 1000:.1f} ms/step "
        f"(read {result['recompute_read_s'] * 1000:.1f}, DINOv2 {result['recompute_dinov2_s'] * 1000:.1f}) "
        f"-> speed-up {result['speedup']:.1f}x"
    )
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="assets/configs/train_demo.toml")
    parser.add_argument("--batch-sizes", default="1,2,4")
    parser.add_argument("--speedup-batch", type=int, default=4)
    parser.add_argument("--objects", type=int, default=6)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's); 1 is steadier on a busy host")
    parser.add_argument("--json", help="Write the figures here too.")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    amp = device.type == "cuda"
    cfg = load_config(args.config)
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()}",
        "config": args.config,
        "objects_per_scene": args.objects,
        "load_average": os.getloadavg(),
    }
    print(f"device {report['device']}, config {args.config}, {args.objects} objects per scene, bf16 autocast {amp}")

    print("parameters per head (full-size model; DINOv2 ViT-S/14 not included):")
    report["parameters_full_size"] = {
        h: sum(p.numel() for p in OddOneOutModel(ModelConfig(head=h)).parameters()) for h in HEADS
    }
    report["parameters_full_size"]["dinov2_vits14"] = sum(p.numel() for p in vit_s14().parameters())
    for name, n in report["parameters_full_size"].items():
        print(f"  {name:13s} {n / 1e6:6.2f} M")
    report["parameters_config"] = {
        h: sum(p.numel() for p in OddOneOutModel(dataclasses.replace(cfg.model, head=h)).parameters()) for h in HEADS
    }

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_scenes = max(max(sizes), args.speedup_batch) * 2
        paths = write_dataset(root, n_scenes, args.objects, 20, cfg.model.token_dim)
        eval_loader = scene_loader([str(root / "train-000000.tar")], cfg.data, train=False, batch_size=max(sizes))
        full = next(iter(eval_loader))
        train_loader = scene_loader(
            [str(root / "train-000000.tar")],
            dataclasses.replace(cfg.data, num_workers=0),
            train=True,
            batch_size=max(sizes),
        )
        train_batch = next(iter(train_loader))
        batches = {b: collate_slice(train_batch, b) for b in sizes}
        print(f"training step ({cfg.model.head} head, {cfg.data.train_views_used} views per scene):")
        report["train_step"] = bench_steps(cfg.model, batches, args.steps, device, amp)
        print(f"inference per scene ({cfg.data.eval_views} views, batch 1):")
        report["inference"] = bench_inference(cfg.model, collate_slice(full, 1), args.steps, device, amp)
        print(f"training from shards vs recomputing DINOv2 ViT-S/14 features (batch {args.speedup_batch}):")
        report["speedup"] = bench_speedup(cfg.model, cfg.data, root, paths, args.speedup_batch, args.steps, device, amp)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


def collate_slice(batch: dict, b: int) -> dict:
    return {k: v[:b] for k, v in batch.items()}


if __name__ == "__main__":
    main()
