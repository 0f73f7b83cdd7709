"""The run summary and gallery on a tiny generated variant."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from generation.reports import gallery_image, reason_key, write_summary
from generation.runner import run_scenes
from generation.scenefile import read_scene
from tests.test_generation import tiny_config


def test_summary_counts_types_and_rejections_and_gallery_shows_the_mask(tmp_path):
    config = tiny_config("n_scenes=2", "cameras.views=3", "scene.objects=[3,3]", "scene.normal_scene_fraction=0.0",
                         "anomalies.weights={material=1.0,bump=1.0}")
    run_scenes(config, tmp_path, workers=1, progress=False)
    summary = json.loads((tmp_path / "summary.json").read_text())
    index = json.loads((tmp_path / "index.json").read_text())
    assert summary["scenes"] == index["counts"]
    types = {t for row in index["scenes"] for t in row["anomaly_types"]}
    assert types and set(summary["gallery"]) == types
    n_objects = sum(row["n_objects"] for row in index["scenes"])
    assert sum(n for counts in summary["objects_per_type"].values() for n in counts.values()) == n_objects
    for anomaly_type, entry in summary["gallery"].items():
        image = np.asarray(Image.open(tmp_path / entry["file"]).convert("RGB")).astype(int)
        plain = gallery_image(read_scene(tmp_path / "scenes" / f"{entry['scene_id']}.h5"), anomaly_type, alpha=0.0)
        assert image.shape == plain.shape and image.shape[0] == 128
        changed = np.abs(image - plain).sum(axis=-1) > 0
        cols = np.flatnonzero(changed.any(axis=0))  # the overlay lies on the anomalous (right) crop only
        assert changed.sum() > 5 and cols.min() > np.flatnonzero((plain == 255).all(axis=(0, 2)))[0], anomaly_type
        assert (image - plain)[changed][:, 0].mean() > 0 > (image - plain)[changed][:, 1].mean()  # redder
    overview = np.asarray(Image.open(tmp_path / "gallery/overview.png").convert("RGB"))
    widths = [Image.open(tmp_path / summary["gallery"][t]["file"]).width for t in sorted(types)]
    column_widths = [max(widths[c::3]) + 8 for c in range(min(3, len(widths)))]
    assert overview.shape[0] == -(-len(types) // 3) * (128 + 14 + 8) and overview.shape[1] == sum(column_widths)
    first = np.asarray(Image.open(tmp_path / summary["gallery"][sorted(types)[0]]["file"]).convert("RGB"))
    np.testing.assert_array_equal(overview[4 + 14:4 + 14 + 128, 4:4 + first.shape[1]], first)  # pasted as is
    assert (overview[4:4 + 14, 4:200] < 128).any()  # a caption

    # a scene rejected for good counts its attempts; reasons differing only in numbers are grouped
    reasons = [f"attempt {k}: objects {k} and {k + 1} touch after the drop ({k}.5 mm apart)" for k in range(3)]
    (tmp_path / "rejected" / "scene_000009.json").write_text(json.dumps({"reasons": reasons}))
    again = write_summary(tmp_path)
    assert again["rejected_scenes"]["count"] == 1
    assert again["attempts"]["rejected"] == summary["attempts"]["rejected"] + 3
    key = reason_key(reasons[0])
    assert key == "objects # and # touch after the drop"
    assert again["rejection_reasons"][key]["count"] >= 3
    assert abs(sum(r["rate"] for r in again["rejection_reasons"].values()) - again["attempts"]["rate"]) < 1e-9
