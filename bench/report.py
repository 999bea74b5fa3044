"""Writers for the benchmark results: the JSON record, a Markdown table, a PNG plot.

Contract:
    results = {"meta": meta(...), "cases": [row, ...]} with exactly META_KEYS and ROW_KEYS.
    derived(row, copy_bw) -> the per-row metrics the targets use (nvfuse GB/s, % of copy
        bandwidth, speedups vs eager and inductor); geomeans(results) over the throughput cases.
    render(results) -> the Markdown text (also what `python -m bench` prints).
    write_all(results, out_dir) -> paths written: <date>-<gpu-slug>.json, .md and .png (the PNG
        is skipped with a printed note when matplotlib is missing).
Times are ms; NaN marks a variant that failed, mismatched or was skipped (Python's json writes
it as the NaN literal).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
from typing import Any

import torch

META_KEYS = ("gpu", "torch", "cupy", "nvrtc", "date", "copy_bw_gbps")
ROW_KEYS = ("case", "kind", "dtype", "shape", "bytes", "eager_ms", "inductor_ms", "nvfuse_ms")
THROUGHPUT_KINDS = ("pointwise", "reduction", "normalization", "training", "optimizer")


def meta(device: torch.device, copy_bw_gbps: float) -> dict[str, Any]:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu-interpreter"
    return {"gpu": gpu, "torch": torch.__version__, "cupy": _cupy_version(),
            "nvrtc": _nvrtc_version(), "date": datetime.date.today().isoformat(),
            "copy_bw_gbps": float(copy_bw_gbps)}


def _cupy_version() -> str:
    try:
        import cupy

        return str(cupy.__version__)
    except Exception as e:
        return f"unavailable ({type(e).__name__})"


def _nvrtc_version() -> str:
    try:
        from nvfuse.runtime.nvrtc import nvrtc_version

        return nvrtc_version()
    except Exception as e:
        return f"unavailable ({type(e).__name__})"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def stem(results: dict[str, Any]) -> str:
    return f"{results['meta']['date']}-{slug(results['meta']['gpu'])}"


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(a) and math.isfinite(b) and a > 0 else math.nan


def derived(row: dict[str, Any], copy_bw: float) -> dict[str, float]:
    """nvfuse's GB/s and % of copy bandwidth (throughput kinds only) and its speedups."""
    out = {"x_eager": _ratio(row["eager_ms"], row["nvfuse_ms"]),
           "x_inductor": _ratio(row["inductor_ms"], row["nvfuse_ms"]),
           "gbps": math.nan, "pct_copy": math.nan}
    if row["kind"] in THROUGHPUT_KINDS and row["nvfuse_ms"] > 0:
        out["gbps"] = row["bytes"] / (row["nvfuse_ms"] * 1e-3) / 1e9
        out["pct_copy"] = 100.0 * out["gbps"] / copy_bw if copy_bw > 0 else math.nan
    return out


def pct_copy(row: dict[str, Any], variant: str, copy_bw: float) -> float:
    ms = row[f"{variant}_ms"]
    if row["kind"] not in THROUGHPUT_KINDS or not ms > 0 or not copy_bw > 0:
        return math.nan
    return 100.0 * row["bytes"] / (ms * 1e-3) / 1e9 / copy_bw


def geomean(values: list[float]) -> float:
    vals = [v for v in values if math.isfinite(v) and v > 0]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else math.nan


def geomeans(results: dict[str, Any]) -> dict[str, float]:
    """Geomean speedups of nvfuse over the throughput cases (not overhead, not compile)."""
    bw = results["meta"]["copy_bw_gbps"]
    rows = [derived(r, bw) for r in results["cases"] if r["kind"] in THROUGHPUT_KINDS]
    return {"x_eager": geomean([d["x_eager"] for d in rows]),
            "x_inductor": geomean([d["x_inductor"] for d in rows])}


def _f(value: float, fmt: str) -> str:
    return format(value, fmt) if math.isfinite(value) else "-"


def render(results: dict[str, Any]) -> str:
    m = results["meta"]
    bw = m["copy_bw_gbps"]
    header = ("| case | kind | dtype | shape | MB | eager ms | inductor ms | nvfuse ms "
              "| nvfuse GB/s | % copy | x eager | x inductor |")
    method = ("Throughput kinds: median device ms per call (CUDA events, inputs rotated past L2); "
              "overhead: host ms per call on tiny tensors; compile: ms to the first result of a "
              "fresh module. GB/s and % copy are nvfuse's; x eager / x inductor are speedups of "
              "nvfuse.")
    lines = [f"# nvfuse benchmarks: {m['gpu']}, {m['date']}", "",
             (f"torch {m['torch']}, CuPy {m['cupy']}, NVRTC {m['nvrtc']}; "
              f"device-to-device copy: {bw:.1f} GB/s (bytes read + written)."), "",
             method, "", *([f"Not run: {m['left_out']}.", ""] if m.get("left_out") else []),
             header, "|---|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in results["cases"]:
        d = derived(r, bw)
        lines.append(
            f"| {r['case']} | {r['kind']} | {r['dtype']} | {r['shape']} | "
            f"{r['bytes'] / 1e6:.2f} | {_f(r['eager_ms'], '.4f')} | "
            f"{_f(r['inductor_ms'], '.4f')} | {_f(r['nvfuse_ms'], '.4f')} | "
            f"{_f(d['gbps'], '.1f')} | {_f(d['pct_copy'], '.1f')} | {_f(d['x_eager'], '.2f')} | "
            f"{_f(d['x_inductor'], '.2f')} |")
    g = geomeans(results)
    summary = (f"Geomean speedup of nvfuse over the {', '.join(THROUGHPUT_KINDS)} cases: "
               f"{_f(g['x_eager'], '.3f')}x vs eager, {_f(g['x_inductor'], '.3f')}x vs "
               "torch.compile (cases with a NaN are left out).")
    lines += ["", summary]
    if m["gpu"] == "cpu-interpreter":
        lines += ["", "CPU run through nvfuse's interpreter: wall-clock times, no timing claims."]
    return "\n".join(lines) + "\n"


def write_json(results: dict[str, Any], path: str) -> None:
    clean = {"meta": {k: results["meta"][k] for k in META_KEYS},
             "cases": [{k: r[k] for k in ROW_KEYS} for r in results["cases"]]}
    with open(path, "w") as f:
        json.dump(clean, f, indent=1)
        f.write("\n")


def write_png(results: dict[str, Any], path: str) -> bool:
    """Grouped bars: % of copy bandwidth per throughput case for eager, inductor and nvfuse."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed; skipping the PNG plot")
        return False
    bw = results["meta"]["copy_bw_gbps"]
    rows = [r for r in results["cases"] if r["kind"] in THROUGHPUT_KINDS]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(10, 0.3 * len(rows) + 1.5))
    height = 0.27
    for i, variant in enumerate(("eager", "inductor", "nvfuse")):
        values = [pct_copy(r, variant, bw) for r in rows]
        ys = [j + (i - 1) * height for j in range(len(rows))]
        ax.barh(ys, [v if math.isfinite(v) else 0.0 for v in values], height, label=variant)
    ax.set_yticks(range(len(rows)), [r["case"] for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(100.0, color="black", linewidth=0.8, linestyle="--")
    ax.set_xlabel(f"% of copy bandwidth ({bw:.0f} GB/s); bytes = inputs read + outputs written")
    ax.set_title(f"nvfuse benchmarks: {results['meta']['gpu']}, {results['meta']['date']}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_all(results: dict[str, Any], out_dir: str) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, stem(results))
    write_json(results, base + ".json")
    with open(base + ".md", "w") as f:
        f.write(render(results))
    written = [base + ".json", base + ".md"]
    if write_png(results, base + ".png"):
        written.append(base + ".png")
    return written
