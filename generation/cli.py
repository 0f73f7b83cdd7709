"""`python -m generation …` / `ooo-generate …`: make, index and validate benchmark variants."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from generation.config import load_config


@click.group()
def main() -> None:
    """Manufacture odd-one-out anomaly-detection benchmark variants with Blender."""


@main.command()
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), help="TOML config file.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Variant folder.")
@click.option("--workers", default=1, show_default=True, help="Local worker processes (Blender sessions).")
@click.option("--shard", default="0/1", show_default=True,
              help="Generate only scenes with index % N == i; 'slurm': i/N of this Slurm job array task.")
@click.option("--set", "overrides", multiple=True, help="Override a config value, e.g. --set n_scenes=4.")
@click.option("--shape-timeout", default=120.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds each mesh file may take to load when the shapes are checked; slower ones are skipped.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: --workers processes on this machine; ray: one Ray task per scene (docs/scaling.md).")
@click.option("--address", help="ray: the cluster to join ('auto': the one this machine is part of). "
              "Default: start a local Ray instance.")
@click.option("--task-cpus", default=1, show_default=True, type=click.IntRange(min=1),
              help="ray: CPUs each scene task reserves (its Cycles threads).")
@click.option("--scenes-per-task", default=1, show_default=True, type=click.IntRange(min=1),
              help="ray: scenes per task; more amortise scheduling of very fast scenes.")
def scenes(config_path, out_dir, workers, shard, overrides, shape_timeout, executor, address, task_cpus,
           scenes_per_task) -> None:
    """Generate (or resume) the scenes of a variant."""
    from generation.runner import parse_shard, run_scenes

    ray = ({"address": address, "task_cpus": task_cpus, "scenes_per_task": scenes_per_task}
           if executor == "ray" else None)
    try:
        config = load_config(config_path, list(overrides))
        report = run_scenes(config, Path(out_dir), workers=workers, shard=parse_shard(shard),
                            shape_timeout=shape_timeout, ray=ray)
    except (ValueError, OSError) as err:  # bad input, a full disk: one line
        raise click.ClickException(str(err)) from err
    seconds = report["seconds"]
    click.echo(f"done {report['done_this_run']} (already done {report['already_done']}), "
               f"rejected {len(report['rejected_this_run'])}, skipped shapes {len(report['skipped_shapes'])}")
    if seconds["per_scene"]:
        click.echo(f"{seconds['per_scene']:.1f} s/scene, {seconds['per_view']:.2f} s/view, "
                   f"overhead ratio {seconds['overhead_ratio']:.3f}")
    for shape_id, reason in report["skipped_shapes"].items():
        click.echo(f"skipped shape {shape_id}: {reason}", err=True)
    for sid, failure in report["failed_this_run"].items():
        click.echo(f"failed {sid}: {failure['reason']}", err=True)
    if report["failed_this_run"]:
        click.echo(f"{len(report['failed_this_run'])} scene(s) failed (report.json); rerun the same command to "
                   "retry them", err=True)
        sys.exit(1)


@main.command()
@click.argument("variant", type=click.Path(exists=True, file_okay=False))
def index(variant) -> None:
    """Rebuild index.json and splits.json from the scene files (e.g. after sharded jobs)."""
    from generation.runner import write_index

    try:
        result = write_index(Path(variant))
    except (ValueError, OSError) as err:  # a damaged scene file or an unwritable folder: one line naming it
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(result["counts"]))


@main.command()
@click.argument("variant", type=click.Path(exists=True, file_okay=False))
def validate(variant) -> None:
    """Check a variant against the scene contract; exits non-zero on any problem."""
    from generation.validate import validate_variant

    report = validate_variant(Path(variant))
    for problem in report.problems:
        click.echo(problem, err=True)
    click.echo(f"{report.scenes} scenes, {len(report.problems)} problems, "
               f"{report.boxes.share:.4%} of instance pixels inside their projected boxes")
    if report.without_checksums:
        click.echo(f"{report.without_checksums} scene(s) of schema version 1 carry no checksums: their contents "
                   "could only be checked against the contract", err=True)
    sys.exit(0 if report.ok else 1)


@main.command()
@click.option("--format", "export_format", type=click.Choice(["ooo", "mvtec3d"]), required=True,
              help="ooo: the published ToysAD/PartsAD release layout; mvtec3d: object crops as MVTec 3D-AD.")
@click.option("--variant", type=click.Path(exists=True, file_okay=False), required=True, help="Variant folder.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="Export folder.")
@click.option("--crop-size", default=256, show_default=True, help="mvtec3d: side of the square crops in pixels.")
def export(export_format, variant, out_dir, crop_size) -> None:
    """Export (or resume exporting) a variant into a layout existing training code reads (docs/exports.md)."""
    try:
        if export_format == "ooo":
            from generation.export.ooo import export_ooo

            report = export_ooo(Path(variant), Path(out_dir))
        else:
            from generation.export.mvtec3d import export_mvtec3d

            report = export_mvtec3d(Path(variant), Path(out_dir), size=crop_size)
    except ValueError as err:
        raise click.ClickException(str(err)) from err
    click.echo(f"exported {report.exported_this_run} scenes (already done {report.already_done}) to {report.out}")
