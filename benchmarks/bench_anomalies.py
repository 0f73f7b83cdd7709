"""Variants per minute and rejection rate of every anomaly type on the built-in shapes, on this machine.

    .venv/bin/python benchmarks/bench_anomalies.py --instances 2 [--types bump crack] [--json out.json]
        [--encoder facebook/dinov2-small]

A rejection is one `apply` call that raised AnomalyRejected (the generator's own retries are inside the call);
the time per variant counts rejected calls too, as a run would pay for them. `similar_shape` first describes
every shape with `--encoder` (its seconds per shape are reported apart; by default a full-size ViT-S/14 with
random weights, enough for timing) and looks for look-alikes among all of them.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from vit_s14 import save_vit_s14

from generation.anomalies import GENERATORS, TYPE_CODES, AnomalyRejected
from generation.shape_index import SimilarShapes, build_shape_index
from generation.shapes.sources import BuiltinSource

RANDOM_VIT_S14 = "random-vit-s14"


def bench(types: list[str], instances: int, encoder: str) -> dict:
    source = BuiltinSource(instances_per_category=instances)
    shapes = [source.load(shape_id) for shape_id in source.shape_ids()]
    results = {}
    for name in types:
        generator, made, reasons = GENERATORS[name], 0, Counter()
        extra = {}
        if name == "similar_shape":
            with tempfile.TemporaryDirectory() as folder:
                if encoder == RANDOM_VIT_S14:
                    encoder = str(save_vit_s14(Path(folder) / "vit-s14"))
                start = time.perf_counter()
                index = build_shape_index(folder, source, source.shape_ids(), encoder, generator.views,
                                          generator.image_size)
                extra["index_seconds_per_shape"] = round((time.perf_counter() - start) / len(shapes), 3)
                generator = generator.among(SimilarShapes(index, source, {"all": source.shape_ids()}), 0)
        start = time.perf_counter()
        for k, shape in enumerate(shapes):
            try:
                generator.apply(shape, np.random.default_rng(k))
                made += 1
            except AnomalyRejected as err:
                reasons[str(err).split(": ", 1)[-1][:80]] += 1
        seconds = time.perf_counter() - start
        results[name] = {
            "code": TYPE_CODES[name], "calls": len(shapes), "variants": made,
            "variants_per_minute": round(60 * made / seconds, 1), "seconds_per_call": round(seconds / len(shapes), 3),
            "rejection_rate": round(1 - made / len(shapes), 3), "rejection_reasons": dict(reasons.most_common(5)),
            **extra,
        }
        print(f"{name:18s} {results[name]['variants_per_minute']:8.1f}/min  rejected "
              f"{results[name]['rejection_rate']:.1%}  {dict(reasons.most_common(2))}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2, help="instances of each of the 25 built-in categories")
    parser.add_argument("--types", nargs="*", default=sorted(GENERATORS))
    parser.add_argument("--encoder", default=RANDOM_VIT_S14,
                        help="descriptor model for similar_shape: hub id, local folder, or a random ViT-S/14")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    results = bench(args.types, args.instances, args.encoder)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
