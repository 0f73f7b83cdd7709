"""What both exporters share: the published anomaly codes and the resumable, streaming loop over scene files.

Scenes are read one at a time (metadata first, pixels only for scenes still to do), so memory does not grow with
the variant, and a scene counts as exported only once its completion marker exists, so a killed export resumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from generation.anomalies import TYPE_CODES
from generation.runner import write_json
from generation.scenefile import Scene, read_scene


def published_code(anomaly_type: str) -> str:
    """The `-<code>-<k>` file-name tag of a type (generation.anomalies.TYPE_CODES); unknown types keep their name."""
    return TYPE_CODES.get(anomaly_type, anomaly_type)


@dataclass(frozen=True)
class SceneRow:
    """The little an exporter needs to remember about every scene (kept for all scenes, so no arrays)."""

    scene_id: str
    split: str
    scene_index: int
    shape_id: str
    category: str


@dataclass
class ExportReport:
    out: Path
    scenes: list[SceneRow] = field(default_factory=list)
    exported_this_run: int = 0
    already_done: int = 0


def scene_files(variant: Path) -> list[Path]:
    files = sorted((Path(variant) / "scenes").glob("*.h5"))
    if not files:
        raise ValueError(f"{variant}: no scene files under scenes/ (is this a variant folder?)")
    return files


def guard_settings(out: Path, variant: Path, settings: dict) -> None:
    """Refuse to resume into a folder exported with other settings or from another variant: files would mix."""
    variant_file = Path(variant) / "variant.json"
    digest = json.loads(variant_file.read_text())["config_digest"] if variant_file.exists() else None
    record = {"settings": settings, "variant_config_digest": digest}
    path = out / "export.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if {k: previous.get(k) for k in record} != record:
            raise ValueError(f"{out}: holds an export with other settings or of another variant "
                             f"({previous.get('settings')}, digest {previous.get('variant_config_digest')}); "
                             "use a new --out folder")
    else:
        write_json(path, {**record, "variant": str(Path(variant).resolve())})


def export_scenes(variant: Path, done_marker: Callable[[Scene], Path], export_scene: Callable[[Scene], None],
                  out: Path, description: str, progress: bool = True) -> ExportReport:
    """Export every scene whose `done_marker` is missing; `export_scene` must create the marker last."""
    report = ExportReport(out=out)
    files = scene_files(variant)
    for path in tqdm(files, desc=description, unit="scene", disable=not progress, dynamic_ncols=True):
        meta = read_scene(path, views=False)
        report.scenes.append(SceneRow(meta.scene_id, meta.split, meta.scene_index, meta.source_ids[0],
                                      meta.categories[0]))
        if done_marker(meta).exists():
            report.already_done += 1
            continue
        export_scene(read_scene(path))
        report.exported_this_run += 1
    return report
