"""Writers for the performance MODEL: bench/results/model-<date>.json and a matching .md table.

Input: {"meta": {...}, "cases": [row, ...]} from bench.model.run_model.  Output: the paths
written.  Every heading says MODEL: these are predictions, not GPU timings.
"""

from __future__ import annotations

import json
import os
from typing import Any


def _mb(b: int | None) -> str:
    return "?" if b is None else f"{b / 1e6:.1f}"


def _bits(bits: list[int] | None) -> str:
    return "?" if bits is None else "/".join(map(str, bits)) or "-"


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        f"# nvfuse performance MODEL, {meta['date']} ({meta['arch']}) -- not GPU timings",
        "",
        f"{meta['what']}.  Device: {meta['device_model']}.  NVRTC {meta['nvrtc']}, "
        f"torch {meta['torch']}.",
        "",
        f"- predicted = {meta['predicted_fraction']}; occupancy_eff = {meta['occupancy_eff']}; "
        f"wave_eff: {meta['wave_eff']}; width_eff by access bits {meta['width_eff']}; "
        f"spill_eff {meta['spill_eff']}; coalesce_eff = {meta['coalesce_eff']}.",
        f"- moved bytes: {meta['moved_bytes']}.",
        "- flags: moved > 1.05x min; over 5% of the bytes in accesses narrower than 128 bits "
        "(each warp-level access weighs the distinct bytes its active lanes touch: a "
        "warp-uniform load counts its element once per warp; the SASS columns list every "
        "global access width); sectors requested > 1.05x the fewest that hold each warp "
        "access's bytes; spills; occupancy < 50%. A kernel moving under 1 MiB is flagged "
        "latency-bound instead (its time is a launch's, whatever its widths). A horizontal "
        "bundle's members that share a launch are one row (the shared kernel's SASS; bytes "
        "and grid summed).",
        "",
        "| case | kernel | stage | block | grid | min MB | moved MB | moved/min | load bits "
        "| store bits | regs | spills | smem | occ | MODEL % copy bw | flags |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["cases"]:
        ratio = ("?" if r["moved_bytes"] is None or not r["min_bytes"]
                 else f"{r['moved_bytes'] / r['min_bytes']:.2f}")
        pred = "?" if r["predicted_fraction"] is None else f"{100 * r['predicted_fraction']:.0f}"
        lines.append(
            f"| {r['case']} | {r['kernel']} | {r['stage']} | {r['block']} | {r['grid']} "
            f"| {_mb(r['min_bytes'])} | {_mb(r['moved_bytes'])} | {ratio} "
            f"| {_bits(r['load_bits'])} | {_bits(r['store_bits'])} | {r['regs']} "
            f"| {r['spills']} | {r['smem']} | {100 * r['occupancy']:.0f}% | {pred} "
            f"| {'; '.join(r['flags'])} |")
    for name, why in meta.get("not_modeled", {}).items():
        lines.append(f"\nNot modeled: {name} ({why}).")
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, f"model-{results['meta']['date']}")
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    with open(stem + ".md", "w") as f:
        f.write(render(results))
    return [stem + ".json", stem + ".md"]
