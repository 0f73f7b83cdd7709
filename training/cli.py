"""Command line: `python -m training train|eval|baselines` (console script `ooo-train`)."""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from pathlib import Path

import click
import torch

from training.config import load_config


@click.group()
def main():
    """Train and evaluate the Residual Anomaly model and its baselines on cached DINOv2 feature shards."""


def _echo(results: dict):
    for split, r in results.items():
        click.echo(
            f"{split}: AUROC {100 * r['auroc']:.2f} (per scene {100 * r['auroc_per_scene']:.2f})  "
            f"ACC {100 * r['accuracy']:.2f}  box-only AUROC {100 * r['box_only']['auroc']:.2f}  "
            f"{r['n_objects']} objects, {r['views']} views"
        )


def _with(cfg, **data):
    """cfg with some data.* values replaced."""
    return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, **data))


@contextmanager
def _refusals():
    """Bad configs, features, checkpoints or output folders end a command with one line naming the file or key,
    not a traceback."""
    try:
        yield
    except (ValueError, OSError) as err:
        text = str(err).strip()
        if "Original Traceback" in text:  # raised in a DataLoader worker: torch prepends the worker's traceback
            text = text.splitlines()[-1]
        raise click.ClickException(text) from err


def _device(name: str | None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TOML config file.")
@click.option("--features", help="Feature folder (overrides data.features).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--set", "sets", multiple=True, help="Override: section.key=value (TOML value), repeatable.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from checkpoints/last.pt.")
@click.option("--shuffle-labels", is_flag=True, help="Control run: permute the labels within each training scene.")
@click.option("--no-eval", is_flag=True, help="Skip the evaluation of the test splits after training.")
def train(config_path, features, out, sets, resume, shuffle_labels, no_eval):
    """Train (torchrun for several GPUs), then evaluate the test splits into OUT/eval."""
    from training.train import train as run

    with _refusals():
        cfg = load_config(config_path, sets)
        cfg = _with(cfg, features=features) if features else cfg
        results = run(cfg, out, resume=resume, shuffle_labels=shuffle_labels, run_eval=not no_eval)
    _echo(results)


@main.command("eval")
@click.option("--run", type=click.Path(exists=True, file_okay=False), help="Run folder: its checkpoints/last.pt.")
@click.option("--checkpoint", type=click.Path(exists=True, dir_okay=False), help="Or a checkpoint file.")
@click.option("--features", help="Feature folder (default: the one the checkpoint was trained on).")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default: RUN/eval).")
@click.option("--split", "splits", multiple=True, help="Splits to evaluate (default: the test splits).")
@click.option(
    "--views", type=click.IntRange(min=1), help="Test views per scene (default: data.eval_views of the checkpoint)."
)
@click.option("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available).")
def evaluate_cmd(run, checkpoint, features, out, splits, views, device):
    """Evaluate a checkpoint with the published protocol: results.json, results.md, scores and PNGs."""
    from training.evaluate import evaluate
    from training.train import eval_split_names, load_model, open_features

    if bool(run) == bool(checkpoint) or not (out or run):
        raise click.UsageError("give --run, or --checkpoint and --out")
    device = _device(device)
    with _refusals():
        model, cfg, _ = load_model(checkpoint or Path(run) / "checkpoints" / "last.pt", device)
        if views:
            cfg = _with(cfg, eval_views=views)
        found, cfg = open_features(features or cfg.data.features, cfg, adopt=False)
        names = list(splits) or eval_split_names(found, cfg.data.train_split)
        out = out or Path(run) / "eval"
        results = evaluate(
            model,
            {s: found.shard_urls[s] for s in names},
            cfg,
            device,
            Path(out),
            amp=cfg.train.bf16 and device.type == "cuda",
        )
    _echo(results)


@main.command()
@click.option("--features", required=True, help="Feature folder.")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML config (grid, views) when no checkpoint is given.",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False),
    help="Cluster this model's 3D CNN crops instead of the raw back-projected tokens.",
)
@click.option("--split", "splits", multiple=True, help="Splits (default: the test splits).")
@click.option("--views", type=click.IntRange(min=1), help="Views per scene (default: data.eval_views).")
@click.option(
    "--metric",
    "metrics",
    multiple=True,
    type=click.Choice(["euclidean", "cosine", "max", "min-max", "ot"]),
    help="Distances, repeatable (default: euclidean and cosine; max, min-max and ot compare voxel sets, ot slowly).",
)
@click.option("--device", help="cpu, cuda ... (default: cuda if available).")
def baselines(features, out, config_path, checkpoint, splits, views, metrics, device):
    """Training-free clustering baselines: AUROC, ACC and adjusted Rand score per method and distance."""
    from training.baselines import METRICS, SET_METRICS, object_features, run_baselines, write_results
    from training.train import eval_split_names, load_model, open_features

    device = _device(device)
    model = None
    with _refusals():
        if checkpoint:
            model, cfg, _ = load_model(checkpoint, device)
        else:
            cfg = load_config(config_path)
        if views:
            cfg = _with(cfg, eval_views=views)
        found, cfg = open_features(features, cfg, adopt=model is None)
        names = list(splits) or eval_split_names(found, cfg.data.train_split)
        metrics = metrics or METRICS
        set_metrics = [m for m in metrics if m in SET_METRICS]
        results = {
            s: run_baselines(object_features(found.shard_urls[s], cfg, device, model, set_metrics), metrics=metrics)
            for s in names
        }
        source = f"crops of {checkpoint}" if checkpoint else "back-projected DINOv2 tokens (no trained part)"
        write_results(Path(out), results, source)
    click.echo((Path(out) / "baselines.md").read_text())
