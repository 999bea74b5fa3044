"""`python -m bench --model`: a static performance MODEL of every bench kernel (no GPU needed).

For every case of bench/cases.py at its real GPU size, nvfuse plans and builds the kernels it
would launch (bench/model/plan.py: meta tensors, nothing runs), and each kernel gets one row:

  min_bytes        each tensor the kernel reads or writes, once, at full size (a broadcast
                   operand counts its storage once; a split reduction's workspaces count);
  moved_bytes      DRAM bytes by the traffic model below, from the interpreter's counts on a
                   scaled copy of the call (bench/model/traffic.py), scaled to the full size;
  requested_bytes  the 32-byte sectors the kernel's warps ask L1/L2 for, same scaling;
  sector_ratio     requested_bytes / the bytes of the fewest sectors that hold each warp
                   access's distinct elements (traffic.py `needed`);
  narrow_share     the share of the bytes accessed (per warp access, its distinct bytes) by
                   accesses narrower than 128 bits;
  load_bits / store_bits  widths of the global loads / stores in the sm_90 SASS (nvdisasm);
  regs, spills, smem      ptxas -v (spills: spill store + load bytes; smem: static bytes plus
                          the launch's dynamic shared memory);
  occupancy        theoretical, on an H100 (bench/model/occupancy.py);
  predicted_fraction      THE MODEL's fraction of copy bandwidth (formula in occupancy.py).

Traffic model (per tensor, full size; `unique` = distinct bytes the kernel touches,
`per_block` = distinct bytes per block summed over blocks, `elements` = bytes of the elements
accessed, summed over accesses):
    moved = unique
          + (elements - per_block)  if a block's footprint (all tensors) > L1_REUSE_BYTES
          + (per_block - unique)    if the tensor's footprint > L2_RESIDENT_BYTES
i.e. an element accessed again by the same block hits L1 only while the block's data fits
there, one accessed by several blocks hits L2 only for tensors small enough to stay resident
(a norm's weight); every other re-read (a looped row's second pass) goes to DRAM again.
Sectors requested beyond the fewest that hold each warp access's distinct elements (a warp's
scattered, strided or misaligned access: each instruction touches more 32-byte sectors than
its bytes need; a warp-uniform 2-byte load needs and touches one) are L1/L2 traffic, not DRAM
traffic: they enter the prediction as `coalesce_eff` (bench/model/occupancy.py) and are
flagged.  Access widths are weighed the same way (bench/model/traffic.py): per warp-level
access, the distinct bytes its active lanes touch, so a warp-uniform scalar counts once per
warp, not once per thread.
A static model: it says where bytes and instructions are wasted; GPU timings (python -m bench)
say what they cost.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch

from bench.cases import CASES, Case
from bench.model import occupancy as occ
from bench.model import sass
from bench.model.plan import PlannedCall, ScaledCall, Stage, plan_case, scaled_copy
from bench.model.traffic import Traffic, count_traffic
from nvfuse import pipeline
from nvfuse.lower.horizontal import param_bytes, shared_bytes
from nvfuse.lower.kir import Load, Store, dynamic_shared_bytes
from nvfuse.runtime.horizontal import param_space
from nvfuse.schedule import horizontal as hschedule

ARCH = "sm_90"
L1_REUSE_BYTES = 32 * 1024
L2_RESIDENT_BYTES = 50 * 1024 * 1024 // 4
BUDGETS = (1 << 19, 1 << 21, 1 << 23, 1 << 24)  # scaled-copy sizes tried, in elements
MOVED_SLACK = 1.05
NARROW_SHARE = 0.05  # flag a kernel moving more than this share of its bytes below 128 bits
TARGET_OCCUPANCY = 0.5
LATENCY_BOUND_BYTES = 1 << 20  # under this, a kernel's time is its launch's (flags())


@dataclass
class Disasm:
    """The disassembler, found once per run (None: widths are reported as unknown)."""

    path: str | None


def tensors_accessed(kernel_ir: Any) -> set[str]:
    names: set[str] = set()

    def walk(body: tuple[Any, ...]) -> None:
        for s in body:
            if isinstance(s, (Load, Store)):
                names.add(s.tensor)
            inner = getattr(s, "body", None)
            if inner:
                walk(inner)

    walk(kernel_ir.body)
    return names


def nbytes_reachable(t: torch.Tensor) -> int:
    if t.numel() == 0:
        return 0
    return (1 + sum((n - 1) * st for n, st in zip(t.shape, t.stride()))) * t.element_size()


def moved_bytes(traffic: Traffic, grid: int) -> tuple[float, float, float]:
    """(moved, requested, element) bytes by the traffic model (module docstring); the
    sector ratio's denominator is `sum(traffic.needed.values())`."""
    footprint = sum(traffic.per_block.values()) / max(grid, 1)
    moved = requested = elements = 0.0
    for name, unique in traffic.unique.items():
        per_block = traffic.per_block[name]
        moved += unique
        if footprint > L1_REUSE_BYTES:
            moved += max(0.0, traffic.elements[name] - per_block)
        if unique > L2_RESIDENT_BYTES:
            moved += max(0.0, per_block - unique)
        requested += traffic.requested[name]
        elements += traffic.elements[name]
    return moved, requested, elements


def _scaled(call: PlannedCall) -> ScaledCall | None:
    """The smallest scaled copy with the full call's kernels: fewer outer elements first; only
    where no budget gives one, fewer kept elements at the full call's split count (a split
    column reduction, bench/model/plan.py)."""
    for pinned in (False, True):
        for budget in BUDGETS:
            copy = scaled_copy(call, budget, ARCH, pinned)
            if copy is not None:
                return copy
    return None


def _full_traffic(stage_index: int, call: PlannedCall, copy: ScaledCall) -> Traffic:
    """The stage's traffic on the scaled copy, scaled per tensor to the full size."""
    small = copy.call.stages[stage_index]
    kernel_ir = small.kernel.kernel_ir
    t = count_traffic(kernel_ir, copy.call.tensors, copy.call.scalars[stage_index], small.grid)
    names = [p.name for p in kernel_ir.tensors]
    full = Traffic()
    for k, name in enumerate(names):
        if name in t.unique:
            full.unique[name] = t.unique[name] * copy.unique[k]
            full.requested[name] = t.requested[name] * copy.requested[k]
            full.elements[name] = t.elements[name] * copy.requested[k]
            full.needed[name] = t.needed[name] * copy.requested[k]
            full.per_block[name] = t.per_block[name] * copy.requested[k]
    total_req = sum(t.requested.values()) or 1.0
    scale = sum(full.requested.values()) / total_req
    full.width_bytes = {w: b * scale for w, b in t.width_bytes.items()}
    return full


def flags(row: dict[str, Any]) -> list[str]:
    """What is off the targets (meta["targets"]).  A kernel moving under LATENCY_BOUND_BYTES
    (a split reduction's second stage, an optimizer's step counters) runs for about a launch's
    latency whatever its access widths: its bandwidth targets do not apply, and it says so."""
    if row["min_bytes"] < LATENCY_BOUND_BYTES:
        out = [f"latency-bound: {row['min_bytes']} B moved"]
        if row["spills"]:
            out.append("spills")
        return out
    out = []
    if row["moved_bytes"] is not None and row["moved_bytes"] > MOVED_SLACK * row["min_bytes"]:
        out.append(f"moved {row['moved_bytes'] / row['min_bytes']:.2f}x min")
    if row["narrow_share"] is not None and row["narrow_share"] > NARROW_SHARE:
        out.append(f"{row['narrow_share']:.0%} of bytes in <128-bit accesses")
    if row["sector_ratio"] is not None and row["sector_ratio"] > MOVED_SLACK:
        out.append(f"sectors {row['sector_ratio']:.2f}x the fewest needed")
    if row["spills"]:
        out.append("spills")
    if row["occupancy"] < TARGET_OCCUPANCY:
        out.append(f"occupancy {row['occupancy']:.0%}")
    return out


def _compiled(kernel: Any, disasm: Disasm,
              compiled: dict[str, Any]) -> tuple[sass.Resources, Any, Any]:
    """(ptxas resources, global load widths, store widths) of `kernel`, compiled once."""
    if kernel.source not in compiled:
        res, cubin = sass.compile_report(kernel.source, ARCH)
        loads = stores = None
        if disasm.path is not None:
            loads, stores = sass.global_widths(sass.disassemble(cubin, disasm.path))
        compiled[kernel.source] = (res, loads, stores)
    return compiled[kernel.source]  # type: ignore[no-any-return]


def _measures(block: int, grid: int, smem: int, res: sass.Resources, loads: Any, stores: Any,
              min_b: float, moved: float | None, requested: float | None,
              needed: float | None, widths: dict[int, float]) -> dict[str, Any]:
    """A row's resources, bytes, occupancy and prediction (the report's columns; `needed`:
    the sector ratio's denominator, module docstring)."""
    blocks, occupancy = occ.occupancy(block, res.regs, smem)
    predicted = narrow = sectors = None
    if moved is not None and requested and needed is not None:
        sectors = requested / max(needed, 1.0)
        predicted = occ.predicted_fraction(min_b, moved, widths, occupancy, grid, blocks,
                                           res.spills, sectors)
        narrow = sum(b for w, b in widths.items() if w < 128) / (sum(widths.values()) or 1.0)
    return {"block": block, "grid": grid, "min_bytes": int(min_b),
            "moved_bytes": None if moved is None else int(moved),
            "requested_bytes": None if requested is None else int(requested),
            "load_bits": loads, "store_bits": stores, "regs": res.regs, "spills": res.spills,
            "smem": smem, "blocks_per_sm": blocks, "occupancy": round(occupancy, 4),
            "predicted_fraction": None if predicted is None else round(predicted, 4),
            "narrow_share": None if narrow is None else round(narrow, 4),
            "sector_ratio": None if sectors is None else round(sectors, 4)}


def model_stage(case: Case, call: PlannedCall, index: int, stage: Stage,
                copy: ScaledCall | None, disasm: Disasm,
                compiled: dict[str, tuple[sass.Resources, list[int], list[int]] | None]
                ) -> dict[str, Any]:
    kernel = stage.kernel
    kir = kernel.kernel_ir
    used = tensors_accessed(kir)
    min_b = sum(nbytes_reachable(t) for p, t in zip(kir.tensors, call.tensors)
                if p.name in used)
    moved = requested = needed = None
    widths: dict[int, float] = {}
    note = "no scaled copy with the same kernel: moved bytes unknown"
    if copy is not None:
        traffic = _full_traffic(index, call, copy)
        moved, requested, _ = moved_bytes(traffic, stage.grid)
        needed = sum(traffic.needed.values())
        widths = traffic.width_bytes
        rows = call.stages[index].grid / max(copy.call.stages[index].grid, 1)
        note = (f"interpreter on a scaled copy ({copy.call.stages[index].grid} of "
                f"{stage.grid} blocks, x{rows:.3g})")
        if copy.pinned:
            note += ("; fewer kept elements (the innermost included) at the full size's "
                     f"split count {call.splits}")
    res, loads, stores = _compiled(kernel, disasm, compiled)
    # ptxas reports the static shared memory; a dynamic array's size is the launch's
    smem = res.smem + dynamic_shared_bytes(kir, call.scalars[index])
    row = {"case": case.name, "kernel": kernel.name, "stage": index + 1,
           **_measures(kir.block, stage.grid, smem, res, loads, stores, min_b, moved,
                       requested, needed, widths),
           "moved_method": note,
           # what a shared launch's row is recomputed from (dropped before the report)
           "_raw": {"widths": widths, "needed": needed, "kernel": kernel}}
    return row


def shared_launch_row(members: list[dict[str, Any]], disasm: Disasm,
                      compiled: dict[str, Any]) -> dict[str, Any]:
    """One row for a horizontal launch of `members` (their single-stage rows): the kernel the
    runtime builds for them (pipeline.build_horizontal), compiled for its resources and widths;
    bytes and the grid summed over the members; the prediction recomputed on the sums."""
    kernel = pipeline.build_horizontal([m["_raw"]["kernel"] for m in members], ARCH, False)
    res, loads, stores = _compiled(kernel, disasm, compiled)
    known = all(m["moved_bytes"] is not None for m in members)
    widths: dict[int, float] = {}
    for m in members:
        for w, b in m["_raw"]["widths"].items():
            widths[w] = widths.get(w, 0.0) + b
    needed = sum(m["_raw"]["needed"] for m in members) if known else None
    kinds = sorted({m["kernel"] for m in members})
    return {**members[0], "kernel": kernel.name,
            **_measures(kernel.kernel_ir.block, sum(m["grid"] for m in members),
                        max(res.smem, *(m["smem"] for m in members)), res, loads, stores,
                        sum(m["min_bytes"] for m in members),
                        sum(m["moved_bytes"] for m in members) if known else None,
                        sum(m["requested_bytes"] for m in members) if known else None,
                        needed, widths),
            "moved_method": (f"one horizontal launch of {len(members)} members "
                             f"({', '.join(kinds)}); bytes summed over the members'"),
            "_raw": {"widths": widths, "needed": needed, "kernel": kernel}}


def _shared_launches(calls: list[PlannedCall], rows: list[list[dict[str, Any]]],
                     disasm: Disasm, compiled: dict[str, Any]) -> list[dict[str, Any]]:
    """The case's rows in launch order, a horizontal bundle's members that share a launch
    (the runtime's rule: nvfuse/schedule/horizontal.py `bundle`) merged into one row."""
    out: list[dict[str, Any]] = []
    done: set[int] = set()
    for i, call in enumerate(calls):
        if i in done:
            continue
        if call.bundle is None:
            out += rows[i]
            continue
        members = [j for j, c in enumerate(calls) if c.bundle == call.bundle]
        done.update(members)
        single = [j for j in members if len(calls[j].stages) == 1]
        plan = hschedule.bundle([
            hschedule.Member(calls[j].stages[0].kernel.kernel_ir.block, calls[j].stages[0].grid,
                             param_bytes(calls[j].stages[0].kernel.kernel_ir),
                             shared_bytes(calls[j].stages[0].kernel.kernel_ir))
            for j in single], param_space())
        together = {single[p]: launch for launch in plan for p in launch}
        emitted: set[int] = set()
        for j in members:
            launch = together.get(j)
            if launch is None:
                out += rows[j]
            elif id(launch) not in emitted:
                emitted.add(id(launch))
                out.append(shared_launch_row([rows[single[p]][0] for p in launch],
                                             disasm, compiled))
    return out


def model_case(case: Case, disasm: Disasm,
               compiled: dict[str, Any]) -> list[dict[str, Any]]:
    calls = plan_case(case, ARCH)
    per_call = []
    for call in calls:
        copy = _scaled(call)
        per_call.append([model_stage(case, call, index, stage, copy, disasm, compiled)
                         for index, stage in enumerate(call.stages)])
    rows = _shared_launches(calls, per_call, disasm, compiled)
    for row in rows:
        del row["_raw"]
        row["flags"] = flags(row)
    return rows


def meta(disasm: Disasm) -> dict[str, Any]:
    from nvfuse.runtime.nvrtc import nvrtc_version

    return {
        "what": "MODEL: static predictions from kernel IR, SASS and ptxas; NOT GPU timings",
        "date": datetime.date.today().isoformat(), "arch": ARCH,
        "device_model": (f"H100 SXM: {occ.SM_COUNT} SMs, {occ.REGS_PER_SM} registers, "
                         f"{occ.MAX_THREADS} threads, {occ.MAX_BLOCKS} blocks and "
                         f"{occ.SMEM_PER_SM // 1024} KiB shared memory per SM"),
        "torch": torch.__version__, "nvrtc": nvrtc_version(),
        "nvdisasm": disasm.path or "not found: load_bits / store_bits are null",
        "predicted_fraction": ("min(1, min_bytes / moved_bytes) x width_eff x occupancy_eff x "
                               "wave_eff x spill_eff x coalesce_eff "
                               "(bench/model/occupancy.py)"),
        "coalesce_eff": f"min(1, {occ.L2_HEADROOM} / sector_ratio), sector_ratio = requested "
                        "sector bytes / bytes of the fewest sectors that hold each warp-level "
                        "access's distinct elements (a warp-uniform or one-lane access needs "
                        "one)",
        "width_eff": {str(k): v for k, v in occ.WIDTH_EFF.items()},
        "occupancy_eff": "min(1, 0.25 + 1.5 x occupancy)",
        "wave_eff": "w = grid / (132 x blocks per SM); w <= 1: min(grid, 132) / 132; "
                    "else w / ceil(w)",
        "spill_eff": occ.SPILL_EFF,
        "moved_bytes": ("per tensor: unique + (elements - per_block if a block's footprint > "
                        f"{L1_REUSE_BYTES} B) + (per_block - unique if the tensor's footprint "
                        f"> {L2_RESIDENT_BYTES} B); counted by the interpreter on a scaled "
                        "copy of the call (fewer rows / outer elements, the same kernel "
                        "signature; where the reduced dims cannot shrink without another "
                        "signature, e.g. a split column reduction: fewer kept elements, the "
                        "innermost included, at the full size's split count) and scaled per "
                        "tensor (bench/model/__init__.py)"),
        "targets": {"moved_over_min": MOVED_SLACK, "access_bits": 128,
                    "narrow_share_flagged_over": NARROW_SHARE,
                    "sector_ratio": MOVED_SLACK, "spills": 0, "occupancy": TARGET_OCCUPANCY,
                    "bandwidth_targets_from_bytes": LATENCY_BOUND_BYTES},
        "narrow_share": "share of the kernel's accessed bytes in accesses narrower than 128 "
                        "bits (the kernel IR's widths; each warp-level access weighted by the "
                        "distinct bytes its active lanes touch, so a warp-uniform load counts "
                        "its element once per warp)",
    }


def run_model(only: str | None = None, out_dir: str = os.path.join("bench", "results")
              ) -> tuple[dict[str, Any], list[str]]:
    """Model every case (or those whose name contains one of the comma-separated substrings
    of `only`, as `bench --only`); write the JSON and Markdown."""
    from bench.model import report

    disasm = Disasm(sass.find_nvdisasm())
    if disasm.path is None:
        print("note: nvdisasm not found (pip install nvidia-cuda-nvdisasm): no SASS widths")
    compiled: dict[str, Any] = {}
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    wanted = [w for w in (only or "").split(",") if w]
    for case in CASES:
        if case.kind in ("overhead", "compile") or (
                wanted and not any(w in case.name for w in wanted)):
            continue
        print(f"{case.name} ...", flush=True)
        try:
            rows.extend(model_case(case, disasm, compiled))
        except Exception as e:  # one case the model cannot plan never stops the report
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            print(f"  [{case.name}] not modeled: {why}", flush=True)
            skipped[case.name] = why
    results = {"meta": {**meta(disasm), "not_modeled": skipped}, "cases": rows}
    paths = report.write(results, out_dir)
    return results, paths
