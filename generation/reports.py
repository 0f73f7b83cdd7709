"""Run summary over a variant folder: counts per anomaly type and split, rejection rates, a gallery per type.

Built from the files (scenes/, rejected/), not from one run's outcomes, so it covers every run and shard that
wrote into the folder; rewritten at the end of each run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from generation.safefiles import writing
from generation.scenefile import Scene, read_scene

CROP_PX = 128  # height of each crop in a gallery image
MASK_RGB = np.array([255, 0, 0])


def reason_key(reason: str) -> str:
    """Group reasons that differ only in attempt, object index or measured value."""
    reason = re.sub(r"^attempt \d+: ", "", reason).split(" (")[0]
    return re.sub(r"\d+(\.\d+)?", "#", reason)


def write_summary(out_dir: Path) -> dict:
    """Write `summary.json`, `gallery/<type>.png` and `gallery/overview.png` (all types); return the summary."""
    out_dir = Path(out_dir)
    scenes, objects, with_type = {}, {}, {}
    reasons: dict[str, int] = {}
    attempts = rejected_attempts = 0
    examples: dict[str, Path] = {}  # anomaly type -> first scene (by id) that shows it
    for path in sorted((out_dir / "scenes").glob("*.h5")):
        scene = read_scene(path, views=False)
        scenes[scene.split] = scenes.get(scene.split, 0) + 1
        per_type = objects.setdefault(scene.split, {})
        for anomaly_type in scene.anomaly_types:
            per_type[anomaly_type] = per_type.get(anomaly_type, 0) + 1
        scenes_of_type = with_type.setdefault(scene.split, {})
        for anomaly_type in set(scene.anomaly_types) - {"none"}:
            scenes_of_type[anomaly_type] = scenes_of_type.get(anomaly_type, 0) + 1
            examples.setdefault(anomaly_type, path)
        failed = scene.attrs.get("generation", {}).get("rejected_attempts", [])
        attempts += len(failed) + 1
        rejected_attempts += len(failed)
        for reason in failed:
            reasons[reason_key(reason)] = reasons.get(reason_key(reason), 0) + 1
    rejected_scenes = sorted((out_dir / "rejected").glob("*.json"))
    for path in rejected_scenes:
        failed = json.loads(path.read_text()).get("reasons") or []
        attempts += len(failed)
        rejected_attempts += len(failed)
        for reason in failed:
            reasons[reason_key(reason)] = reasons.get(reason_key(reason), 0) + 1
    n_scenes = sum(scenes.values()) + len(rejected_scenes)
    gallery, sheet = {}, {}
    for anomaly_type, path in sorted(examples.items()):
        image = gallery_image(read_scene(path), anomaly_type)
        if image is not None:
            target = out_dir / "gallery" / f"{anomaly_type}.png"
            target.parent.mkdir(exist_ok=True)
            _save_png(image, target)
            gallery[anomaly_type] = {"file": f"gallery/{target.name}", "scene_id": path.stem}
            sheet[f"{anomaly_type} ({path.stem})"] = image
    if sheet:
        _save_png(contact_sheet(sheet), out_dir / "gallery" / "overview.png")
    summary = {
        "scenes": dict(sorted(scenes.items())),
        "objects_per_type": {split: dict(sorted(c.items())) for split, c in sorted(objects.items())},
        "scenes_with_type": {split: dict(sorted(c.items())) for split, c in sorted(with_type.items())},
        "rejected_scenes": {"count": len(rejected_scenes), "rate": len(rejected_scenes) / n_scenes if n_scenes else 0},
        "attempts": {"total": attempts, "rejected": rejected_attempts,
                     "rate": rejected_attempts / attempts if attempts else 0.0},
        "rejection_reasons": {key: {"count": n, "rate": n / attempts}
                              for key, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))},
        "gallery": gallery,
    }
    tmp = out_dir / "summary.json.tmp"
    with writing(out_dir / "summary.json"):
        tmp.write_text(json.dumps(summary, indent=1))
        tmp.replace(out_dir / "summary.json")
    return summary


def gallery_image(scene: Scene, anomaly_type: str, alpha: float = 0.5) -> np.ndarray | None:
    """Normal object | anomalous object with its mask blended `alpha` into red, in the view that shows most of the
    anomaly (and a normal object: the one covering most pixels there); None if no view shows both."""
    anomalous = [i for i, t in enumerate(scene.anomaly_types) if t == anomaly_type]
    normal = [i for i, t in enumerate(scene.anomaly_types) if t == "none"]
    if not normal:
        return None
    normal_pixels = np.stack([(scene.instance == n + 1).sum(axis=(1, 2)) for n in normal])  # (normals, V)
    best, best_score = None, 0
    for a in anomalous:
        visible = ((scene.anomaly == 1) & (scene.instance == a + 1)).sum(axis=(1, 2)) * (normal_pixels.max(0) > 0)
        v = int(np.argmax(visible))
        if visible[v] > best_score:
            best, best_score = (v, normal[int(np.argmax(normal_pixels[:, v]))], a), visible[v]
    if best is None:
        return None
    v, n, a = best
    overlay = scene.rgb[v].astype(np.float64)
    mask = (scene.anomaly[v] == 1) & (scene.instance[v] == a + 1)
    overlay[mask] = (1 - alpha) * overlay[mask] + alpha * MASK_RGB
    left = _crop(scene.rgb[v], scene.instance[v] == n + 1)
    right = _crop(overlay.astype(np.uint8), scene.instance[v] == a + 1)
    return np.concatenate([left, np.full((CROP_PX, 4, 3), 255, np.uint8), right], axis=1)


def contact_sheet(images: dict[str, np.ndarray], columns: int = 3, caption_px: int = 14) -> np.ndarray:
    """Captioned images (all CROP_PX high) in a grid on white: every type of a variant at one glance."""
    from PIL import ImageDraw

    widths = [0] * columns
    for k, image in enumerate(images.values()):
        widths[k % columns] = max(widths[k % columns], image.shape[1] + 8)
    left = np.concatenate([[0], np.cumsum(widths)])
    rows = -(-len(images) // columns)
    cell = CROP_PX + caption_px + 8
    sheet = Image.new("RGB", (int(left[-1]), rows * cell), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (caption, image) in enumerate(images.items()):
        x, y = int(left[k % columns]) + 4, (k // columns) * cell + 4
        draw.text((x, y), caption, fill=(0, 0, 0))
        sheet.paste(Image.fromarray(image), (x, y + caption_px))
    return np.asarray(sheet)


def _crop(rgb: np.ndarray, mask: np.ndarray, margin: int = 2) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    top, left = max(rows.min() - margin, 0), max(cols.min() - margin, 0)
    crop = Image.fromarray(rgb[top:rows.max() + margin + 1, left:cols.max() + margin + 1])
    width = max(1, round(crop.width * CROP_PX / crop.height))
    return np.asarray(crop.resize((width, CROP_PX), Image.Resampling.LANCZOS))


def _save_png(image: np.ndarray, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with writing(path):
        Image.fromarray(image).save(tmp, format="PNG")
        tmp.replace(path)
