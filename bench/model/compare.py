"""The static MODEL against GPU timings: which predictions held.

    python -m bench.model.compare MODEL.json BENCH.json [BENCH.json ...] [--out FILE.md]

Per bench case timed on the GPU (the throughput kinds of bench/__main__.py) that the model
covers: the measured fraction of copy bandwidth (the case's floor bytes over nvfuse's time, as
the bench reports it) beside the model's prediction for the same floor.  The model predicts
each kernel's time as moved_bytes / (predicted_fraction x copy bandwidth); a case's prediction
is its floor bytes over the sum of its kernels' times (a split reduction's two stages, a
backward's several groups).  `ratio` = measured / predicted: near 1 the model holds; well
below, the kernel loses time to something the model does not count (it counts bytes, access
widths, occupancy and waves; not instructions, barriers or latency chains).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from bench.report import THROUGHPUT_KINDS


def predicted_fractions(model: dict[str, Any]) -> dict[str, float]:
    """case -> the model's fraction of copy bandwidth for the case's floor bytes, per unit of
    bandwidth: floor / sum over its kernels of moved / predicted_fraction."""
    cost: dict[str, float] = defaultdict(float)
    for row in model["cases"]:
        fraction = row.get("predicted_fraction")
        if not fraction or row.get("moved_bytes") is None:
            cost[row["case"]] = math.inf
            continue
        cost[row["case"]] += row["moved_bytes"] / fraction
    return {case: c for case, c in cost.items()}


def compare(model: dict[str, Any], benches: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per timed case the model covers: case, measured, predicted, ratio."""
    costs = predicted_fractions(model)
    rows = []
    for bench in benches:
        bw = bench["meta"]["copy_bw_gbps"] * 1e9
        for r in bench["cases"]:
            ms, floor = r.get("nvfuse_ms"), r.get("bytes", 0)
            if r["kind"] not in THROUGHPUT_KINDS or r["case"] not in costs or not floor:
                continue
            if ms is None or math.isnan(ms):
                continue
            measured = floor / (ms * 1e-3) / bw
            predicted = floor / costs[r["case"]] if costs[r["case"]] else math.nan
            rows.append({"case": r["case"], "measured": round(measured, 3),
                         "predicted": round(predicted, 3),
                         "ratio": round(measured / predicted, 2) if predicted else math.nan,
                         "eager_ms": r["eager_ms"], "inductor_ms": r["inductor_ms"],
                         "nvfuse_ms": ms})
    return rows


def render(rows: list[dict[str, Any]], gpu: str) -> str:
    lines = [f"# MODEL against GPU timings ({gpu})", "",
             "measured: floor bytes / nvfuse time / copy bandwidth (the bench's % copy); "
             "predicted: the MODEL's fraction for the same floor (bench/model/compare.py); "
             "ratio: measured / predicted.", "",
             "| case | measured | predicted | ratio | eager ms | inductor ms | nvfuse ms |",
             "|---|--:|--:|--:|--:|--:|--:|"]
    for r in sorted(rows, key=lambda r: r["ratio"]):
        lines.append(f"| {r['case']} | {r['measured']:.0%} | {r['predicted']:.0%} | "
                     f"{r['ratio']:.2f} | {r['eager_ms']:.4f} | {r['inductor_ms']:.4f} | "
                     f"{r['nvfuse_ms']:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.model.compare", description=__doc__)
    p.add_argument("model")
    p.add_argument("bench", nargs="+")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    with open(args.model) as f:
        model = json.load(f)
    benches = []
    for path in args.bench:
        with open(path) as f:
            benches.append(json.load(f))
    text = render(compare(model, benches), benches[0]["meta"]["gpu"])
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
