"""Command line: `python -m preprocessing features --variant DIR --out DIR` (also `ooo-features features`)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from preprocessing.encoder import DTYPES, EncoderLoadError
from preprocessing.pipeline import DEFAULT_MODEL, FeatureOptions, extract_features
from preprocessing.shardfiles import SettingsMismatch


def _parse_part(ctx, param, text: str) -> tuple[int, int]:
    if text == "slurm":
        from generation.runner import slurm_shard

        try:
            text = slurm_shard()
        except ValueError as err:
            raise click.BadParameter(str(err)) from None
    try:
        part, parts = (int(x) for x in text.split("/"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected i/N, e.g. 0/4") from None
    if not 0 <= part < parts:
        raise click.BadParameter(f"{text!r}: need 0 <= i < N")
    return part, parts


def _parse_splits(ctx, param, text: str | None) -> list[str] | None:
    return [s.strip() for s in text.split(",") if s.strip()] if text else None


@click.group()
def main() -> None:
    """Feature cache of oddbench: DINOv2 tokens of every view, in WebDataset shards."""


@main.command()
@click.option(
    "--variant",
    "variant",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Generated variant folder (scenes/, index.json, splits.json).",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder. Default: <variant>/features.",
)
@click.option(
    "--model",
    default=DEFAULT_MODEL,
    show_default=True,
    help="Hugging Face hub id or local folder (save_pretrained) of a DINOv2, with or without registers.",
)
@click.option(
    "--image-size",
    default=252,
    show_default=True,
    type=click.IntRange(min=1),
    help="Views are resized whole to this square size; a multiple of the patch size.",
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), help="Views per forward pass. Default: 64 GPU, 8 CPU."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option(
    "--dtype",
    type=click.Choice(["auto", *DTYPES]),
    default="auto",
    show_default=True,
    help="Compute precision (autocast). auto: bfloat16/float16 on a GPU, float32 on a CPU. "
    "Tokens are always stored as float16.",
)
@click.option(
    "--shard-size-mb",
    default=1000.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Target shard size; a shard holds whole scenes.",
)
@click.option(
    "--shard",
    "part",
    default="0/1",
    show_default=True,
    callback=_parse_part,
    help="Write only shards k with k % N == i (job arrays; every job writes the manifest); "
    "'slurm': i/N of this Slurm job array task.",
)
@click.option(
    "--executor",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: this process; ray: one Ray task per shard, the manifest written at the end (docs/scaling.md).",
)
@click.option("--address", help="ray: the cluster to join ('auto': this machine's). Default: a local Ray instance.")
@click.option("--task-cpus", default=1, show_default=True, type=click.IntRange(min=1), help="ray: CPUs per shard task.")
@click.option("--pca-dim", type=click.IntRange(min=1), help="Reduce token channels to this many with a PCA.")
@click.option("--splits", callback=_parse_splits, help="Comma-separated splits to encode. Default: all.")
@click.option(
    "--read-workers",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Scene decoding: 1 = a background thread; more = that many processes (for fast GPUs).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def features(
    variant,
    out,
    model,
    image_size,
    batch_size,
    device,
    dtype,
    shard_size_mb,
    part,
    pca_dim,
    splits,
    read_workers,
    no_progress,
    executor,
    address,
    task_cpus,
) -> None:
    """Encode every view of a variant with DINOv2 and write WebDataset shards plus manifest.json.

    Rerunning the same command resumes: finished shards are kept, partial ones redone.
    """
    options = FeatureOptions(
        variant=variant,
        out=out or variant / "features",
        model=model,
        image_size=image_size,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        shard_size_mb=shard_size_mb,
        part=part[0],
        parts=part[1],
        pca_dim=pca_dim,
        splits=splits,
        read_workers=read_workers,
        progress=not no_progress,
    )
    try:
        if executor == "ray":
            from preprocessing.ray_executor import extract_features_ray

            summary = extract_features_ray(options, address, task_cpus)
        else:
            summary = extract_features(options)
    except (EncoderLoadError, SettingsMismatch, ValueError, OSError) as err:  # one line, no traceback
        raise click.ClickException(str(err)) from err
    manifest = summary.manifest
    counts = ", ".join(f"{split} {info['samples']}" for split, info in manifest["splits"].items())
    click.echo(
        f"{len(summary.written)} shard(s) written, {len(summary.kept)} kept; {summary.images} images in "
        f"{summary.seconds['encode_and_write']:.1f} s; {len(summary.skipped)} scene(s) skipped this run.\n"
        f"samples: {counts}; {len(manifest['skipped'])} skipped in total; "
        f"manifest: {options.out / 'manifest.json'}",
        err=True,
    )
    for failure in summary.failed:
        click.echo(f"failed {failure['shard']}: {failure['reason']}", err=True)
    if not manifest["complete"]:
        click.echo(
            f"incomplete: {len(manifest['missing_shards'])} shard(s) still to be written by other jobs "
            f"(e.g. {manifest['missing_shards'][0]})",
            err=True,
        )
    if summary.failed:
        sys.exit(1)


@main.command()
@click.argument("features_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
def verify(features_dir: Path) -> None:
    """Check every shard of a feature folder against the sizes and sha256 of its manifest."""
    from preprocessing.shards import verify_shards

    try:
        problems = verify_shards(features_dir)
    except (ValueError, OSError, KeyError, TypeError) as err:  # an unreadable or malformed manifest
        message = str(err) if str(features_dir) in str(err) else f"{features_dir}: {type(err).__name__}: {err}"
        raise click.ClickException(message) from err
    for problem in problems:
        click.echo(problem, err=True)
    if problems:
        sys.exit(1)
    click.echo("all shards match the manifest", err=True)
