"""Variants per minute and rejection rate of every anomaly type on the built-in shapes, on this machine.

    .venv/bin/python benchmarks/bench_anomalies.py --instances 2 [--types bump crack] [--json out.json]

A rejection is one `apply` call that raised AnomalyRejected (the generator's own retries are inside the call);
the time per variant counts rejected calls too, as a run would pay for them.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

import numpy as np

from generation.anomalies import GENERATORS, TYPE_CODES, AnomalyRejected
from generation.shapes.builtin import PART_CATEGORIES, TOY_CATEGORIES, builtin_shape


def bench(types: list[str], instances: int) -> dict:
    shapes = [builtin_shape(c, i) for c in TOY_CATEGORIES + PART_CATEGORIES for i in range(instances)]
    results = {}
    for name in types:
        generator, made, reasons = GENERATORS[name], 0, Counter()
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
        }
        print(f"{name:18s} {results[name]['variants_per_minute']:8.1f}/min  rejected "
              f"{results[name]['rejection_rate']:.1%}  {dict(reasons.most_common(2))}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2, help="instances of each of the 25 built-in categories")
    parser.add_argument("--types", nargs="*", default=sorted(GENERATORS))
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    results = bench(args.types, args.instances)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)


if __name__ == "__main__":
    main()
