"""Evaluation with the published protocol, per test split.

Scores are object-wise sigmoid outputs pooled over all scenes of a split (no per-scene averaging); AUROC
over them, accuracy at 0.5, anomalous = positive, with `data.eval_views` = 5 test views (the papers' M). Also
reported: AUROC averaged per scene; the `box-only` baseline (|z-score| of the box volume within its scene), which
shows how much the ground-truth boxes alone give away; as in the thesis's figure 5.4, accuracy per anomaly type
(normal objects as `none`), AUROC versus the number of test views (fixed, evenly spaced subsets; 10 and 20
beside the headline 5) and versus the number of objects in the scene.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from training.baselines import box_only_scores
from training.config import Config
from training.data import eval_view_indices, scene_loader, to_device
from training.metrics import accuracy, auroc, auroc_per_scene
from training.plots import figure


@torch.no_grad()
def predict(model, urls, cfg: Config, device, n_views: int, amp: bool = False) -> dict:
    """Per-object scores, labels and anomaly types of every scene in `urls`, seen through `n_views` views."""
    model.eval()
    rows = {"scene": [], "object": [], "n_objects": [], "label": [], "type": [], "score": [], "box_only": []}
    n_total = set()
    loader = scene_loader(urls, cfg.data, train=False, n_views=n_views, batch_size=cfg.eval.batch_size)
    for batch in loader:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits, _ = model(to_device(batch, device))
        scores = torch.sigmoid(logits.float()).cpu().numpy()
        extents = (batch["boxmax"] - batch["boxmin"]).numpy()
        for i, key in enumerate(batch["keys"]):
            n = int(batch["mask"][i].sum())
            rows["box_only"] += box_only_scores(extents[i, :n]).tolist()
            rows["scene"] += [key] * n
            rows["object"] += list(range(n))
            rows["n_objects"] += [n] * n
            rows["label"] += batch["labels"][i, :n].tolist()
            rows["type"] += batch["anomaly_types"][i]
            rows["score"] += scores[i, :n].tolist()
        n_total.update(batch["n_total_views"])
    out = {k: np.asarray(v) for k, v in rows.items()}
    out["n_total_views"] = sorted(n_total)
    return out


def ranking(pred: dict, scores: str = "score") -> dict:
    """AUROC pooled over all objects (the published protocol) and averaged per scene."""
    per_scene, n = auroc_per_scene(pred["scene"], pred["label"], pred[scores])
    return {"auroc": auroc(pred["label"], pred[scores]), "auroc_per_scene": per_scene, "n_scenes_per_scene": n}


def summarise(pred: dict, object_bins) -> dict:
    labels, scores, types = pred["label"], pred["score"], pred["type"]
    result = {
        **ranking(pred),
        "accuracy": accuracy(labels, scores),
        "box_only": ranking(pred, "box_only"),
        "n_scenes": len(set(pred["scene"].tolist())),
        "n_objects": len(labels),
        "n_anomalous": int(labels.sum()),
        "accuracy_by_type": {
            t: {
                "accuracy": accuracy(labels[types == t], scores[types == t]),
                "n_objects": int((types == t).sum()),
            }
            for t in sorted(set(types.tolist()))
        },
        "by_object_count": {},
    }
    for lo, hi in object_bins:
        sel = (pred["n_objects"] >= lo) & (pred["n_objects"] <= hi)
        if sel.any():
            result["by_object_count"][f"{lo}-{hi}"] = {
                "auroc": auroc(labels[sel], scores[sel]),
                "accuracy": accuracy(labels[sel], scores[sel]),
                "n_scenes": len(set(pred["scene"][sel].tolist())),
            }
    return result


def evaluate(model, splits: dict[str, list[str]], cfg: Config, device, out: Path, amp: bool = False) -> dict:
    """Evaluate each split (name -> shard urls); write results.json, results.md, per-object scores, PNGs."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for split, urls in splits.items():
        pred = predict(model, urls, cfg, device, cfg.data.eval_views, amp)
        result = summarise(pred, cfg.eval.object_bins)
        v_total = max(pred["n_total_views"])
        result["views"] = min(cfg.data.eval_views, v_total)
        result["view_indices"] = {
            str(v): {str(n): eval_view_indices(v, n).tolist() for n in sorted({*cfg.eval.views, result["views"]})}
            for v in pred["n_total_views"]
        }
        result["by_views"] = {}
        for n in sorted({min(n, v_total) for n in cfg.eval.views}):
            p = pred if n == result["views"] else predict(model, urls, cfg, device, n, amp)
            result["by_views"][str(n)] = {**ranking(p), "accuracy": accuracy(p["label"], p["score"])}
        results[split] = result
        _write_scores(out / f"{split}_scores.csv", pred)
        _plot(out / f"{split}.png", split, result)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    return results


def _write_scores(path: Path, pred: dict):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        columns = ("scene", "object", "n_objects", "label", "type", "score", "box_only")
        writer.writerow(columns)
        writer.writerows(zip(*(pred[c].tolist() for c in columns), strict=True))


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.2f}"


def markdown(results: dict) -> str:
    lines = [
        "| split | scenes | objects | anomalous | views | AUROC | AUROC per scene | ACC | box-only AUROC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split, r in results.items():
        lines.append(
            f"| {split} | {r['n_scenes']} | {r['n_objects']} | {r['n_anomalous']} | {r['views']} "
            f"| {_pct(r['auroc'])} | {_pct(r['auroc_per_scene'])} | {_pct(r['accuracy'])} "
            f"| {_pct(r['box_only']['auroc'])} |"
        )
    for split, r in results.items():
        lines += ["", f"## {split}", "", "| anomaly type | objects | ACC |", "|---|---:|---:|"]
        lines += [f"| {t} | {v['n_objects']} | {_pct(v['accuracy'])} |" for t, v in r["accuracy_by_type"].items()]
        lines += ["", "| test views | AUROC | AUROC per scene | ACC |", "|---:|---:|---:|---:|"]
        lines += [
            f"| {n} | {_pct(v['auroc'])} | {_pct(v['auroc_per_scene'])} | {_pct(v['accuracy'])} |"
            for n, v in r["by_views"].items()
        ]
        lines += ["", "| objects per scene | scenes | AUROC | ACC |", "|---|---:|---:|---:|"]
        lines += [
            f"| {b} | {v['n_scenes']} | {_pct(v['auroc'])} | {_pct(v['accuracy'])} |"
            for b, v in r["by_object_count"].items()
        ]
    return "\n".join(lines) + "\n"


def _plot(path: Path, split: str, r: dict):
    views = [int(n) for n in r["by_views"]]
    figure(
        path,
        [
            {
                "title": f"{split}: accuracy per anomaly type",
                "bars": {t: v["accuracy"] for t, v in r["accuracy_by_type"].items()},
                "ylim": (0, 1),
                "ylabel": "ACC",
            },
            {
                "title": f"{split}: AUROC vs test views",
                "series": {"AUROC": (views, [v["auroc"] for v in r["by_views"].values()])},
                "xlabel": "views",
                "ylabel": "AUROC",
            },
            {
                "title": f"{split}: AUROC vs objects per scene",
                "bars": {b: v["auroc"] for b, v in r["by_object_count"].items()},
                "ylim": (0, 1),
                "xlabel": "objects",
                "ylabel": "AUROC",
            },
        ],
    )
