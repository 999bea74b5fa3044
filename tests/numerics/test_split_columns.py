"""Split column reductions (few kept elements, a long reduced extent: two kernels) through the
interpreter: the [splits, kept] workspace layout and kernel 2's threads across the kept
elements (nvfuse/lower/split.py, nvfuse/lower/split_columns.py).  End to end against eager
(strict, outputs poisoned): sum / mean / var / std / var_mean (a Welford and its sum) / amax /
amin / prod in float32 / bfloat16 / float16 / float64 / int64 / int32, kept sizes that are and
are not multiples of the vector width (lanes 8, 4, 2, 1), split counts from 2 to 256 (every
depth of kernel 2's fold, thread rows left empty, chunks past the reduced extent), several
outputs, a full output stored by kernel 1, NaN; kernel 2 against the row layout's kernel 2 on
the same partials, bit for bit (its block combine is the order the column layout reproduces);
and every generated kernel compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from cases import check_fused

import nvfuse
from nvrtc_batch import compile_all
from test_reductions import _make
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.fusion.build import build_fusion
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.partition import partition
from nvfuse.interpret.machine import run_kernel
from nvfuse.lower.kir import bind_scalars
from nvfuse.lower.split import lower_split
from nvfuse.lower.verify import verify_kernel
from nvfuse.runtime import executor
from nvfuse.schedule import split
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.split import SplitSignature
from nvfuse.schedules import plan_launch

f16, bf16, f32, f64, i32, i64 = (torch.float16, torch.bfloat16, torch.float32, torch.float64,
                                 torch.int32, torch.int64)

_generated: dict[str, str] = {}  # kernel name -> source

Fn = Callable[..., object]
# name -> (function of (x, y, the reduced dim), dtypes); y is a second input of x's shape where
# the case reads it
OPS: dict[str, tuple[Fn, tuple[torch.dtype, ...]]] = {
    "sum": (lambda x, y, d: x.sum(d), (f32, bf16, f16, f64, i64, i32)),
    "mean": (lambda x, y, d: x.mean(d), (f32, bf16)),
    "var": (lambda x, y, d: x.var(d), (f32, bf16, f64)),
    "std": (lambda x, y, d: x.std(d, correction=0), (f32,)),
    "var_mean": (lambda x, y, d: torch.var_mean(x, d), (f32, f64)),
    "amax_nan": (lambda x, y, d: x.amax(d), (f32, bf16, i64)),
    "amin": (lambda x, y, d: x.amin(d), (f64,)),
    "prod": (lambda x, y, d: x.prod(d), (f64,)),
    # layer-norm backward's weight and bias gradients: two sums, one workspace each
    "ln_grads": (lambda g, x, d: ((g * x).sum(d), g.sum(d)), (f32, bf16)),
    "sums_max": (lambda x, y, d: (x.sum(d), x.amax(d), (x * x).sum(d)), (f32,)),
    # a GELU-backward-like gradient beside its bias gradient: kernel 1 stores the gradient
    "prologue": (lambda g, x, d: (lambda t: (t, t.sum(d)))(g * torch.sigmoid(x)), (bf16, f32)),
    "keepdim_epilogue": (lambda x, y, d: (x * 3 + 1).sum(d, keepdim=True) * 0.5, (f32,)),
}
# (kept, splits): lanes 4 / 8 (f32 / bf16) at 40, 4 at 12 (bf16 halves 8), 8 / 2 at 72, 1 at 3;
# 2 splits fold in one thread row, 256 fill every level of the fold and every thread row, 64
# and 256 at 300 reduced indices leave the last chunks empty; (40, 8) for sums and bf16 only
SIZES = [(12, 2), (40, 256), (72, 64), (3, 16), (40, 8)]
ROWS = 300


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _force_splits(monkeypatch: pytest.MonkeyPatch, splits: int) -> None:
    """Every column / row reduction below splits, into exactly `splits` chunks."""
    monkeypatch.setattr(split, "choose_splits", lambda *args, **kwargs: splits)


def _inputs(op: str, dtype: torch.dtype, kept: int, splits: int) -> tuple[torch.Tensor, ...]:
    seed = f"splitcol{op}{dtype}{kept}{splits}"
    x = _make((ROWS, kept), dtype, seed, near_one=op == "prod")
    if op == "amax_nan" and dtype.is_floating_point:
        x[ROWS // 2, kept - 1] = float("nan")
    return x, _make((ROWS, kept), dtype, seed + "y")


def _tol(op: str, dtype: torch.dtype) -> tuple[float, float] | None:
    if not dtype.is_floating_point or op.startswith(("amax", "amin")):
        return None
    eps = {f32: 1.2e-7, f64: 2.3e-16, f16: 1e-3, bf16: 8e-3}[dtype]
    return (max(64 * eps, 1e-5), 64 * eps + 1e-5)


PARAMS = [pytest.param(op, dtype, kept, splits, id=f"{op}-{str(dtype)[6:]}-{kept}x{splits}")
          for op, (_, dtypes) in OPS.items() for dtype in dtypes for kept, splits in SIZES
          if not (dtype is not bf16 and op != "sum" and (kept, splits) == (40, 8))]


@pytest.mark.parametrize(("op", "dtype", "kept", "splits"), PARAMS)
def test_column_split_matches_eager(op: str, dtype: torch.dtype, kept: int, splits: int,
                                    monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    _force_splits(monkeypatch, splits)
    fn, _ = OPS[op]
    x, y = _inputs(op, dtype, kept, splits)
    fm = check_fused(lambda x, y: fn(x, y, 0), (x, y), dtype, _tol(op, dtype), launches=2,
                     generated=_generated)
    sigs = [k.signature[1] for k in fm.kernels]
    assert all(isinstance(s, SplitSignature) and s.base.kind is ScheduleKind.COLUMN
               for s in sigs), sigs


def _ir(fn: Fn, *inputs: torch.Tensor) -> FusionIR:
    gm, names = partition(trace_to_aten(fn, inputs))
    (name,) = names
    return build_fusion(name, getattr(gm, name))


def _kernels(fn: Fn, inputs: tuple[torch.Tensor, ...]):  # type: ignore[no-untyped-def]
    """The fusion's inputs (x, and y where it reads it), split plan, two kernels (verified)
    and poisoned outputs."""
    ir = _ir(fn, *inputs)
    want = fn(*inputs)
    ins = list(inputs[:len(ir.inputs)])
    outs = [torch.full_like(w, float("nan") if w.is_floating_point() else -7)
            for w in (want if isinstance(want, tuple) else (want,))]
    launch = plan_launch(ir, ins, outs, "sm_90")
    plan = split.plan_split(ir, launch)
    assert plan is not None
    k1, k2 = (verify_kernel(lower_split(ir, s)) for s, _, _ in plan.stages)
    return ins, plan, (k1, k2), outs


def _bits(t: torch.Tensor) -> torch.Tensor:
    if not t.is_floating_point():
        return t
    return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


BITS = {"sum": (f32, bf16, i64), "var": (f32,), "var_mean": (f64,), "amax_nan": (f32,),
        "prod": (f64,), "ln_grads": (bf16,), "mean": (f32,)}


@pytest.mark.parametrize("splits", [2, 4, 8, 32, 64, 128, 256])
@pytest.mark.parametrize(("op", "dtype"), [(op, d) for op, ds in BITS.items() for d in ds],
                         ids=lambda v: v if isinstance(v, str) else str(v)[6:])
def test_combine_has_the_row_layouts_bits(op: str, dtype: torch.dtype, splits: int,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The column kernel 2 on [splits, kept] partials gives the bits of the row layout's kernel 2
    (a block per kept element over [kept, splits] partials: the order the column kernel
    reproduces) on the same partials: the column fusion's kernel 1 writes them, the row
    fusion over the transposed input combines them transposed."""
    _force_splits(monkeypatch, splits)
    fn, _ = OPS[op]
    kept = 40
    x, y = _inputs(op, dtype, kept, splits)
    ins, plan, (k1, k2), outs = _kernels(lambda x, y: fn(x, y, 0), (x, y))
    assert plan.stages[0][0].base.kind is ScheduleKind.COLUMN
    ws = [torch.full((n,), 7, dtype=d.torch) for d, n in plan.workspaces]
    args1, args2 = bind_scalars([k1, k2], plan.scalars)
    run_kernel(k1, [*ins, *outs, *ws], args1, plan.stages[0][2])
    run_kernel(k2, [*ins, *outs, *ws], args2, plan.stages[1][2])

    rows_in = tuple(t.t().contiguous() for t in (x, y))  # the same reduction over the last dim
    row_ins, row_plan, (_, r2), row_outs = _kernels(lambda x, y: fn(x, y, -1), rows_in)
    (s1, _, _), (s2, _, g2) = row_plan.stages
    assert s1.base.kind is ScheduleKind.ROW and row_plan.splits == splits
    assert s2.lanes == plan.stages[1][0].lanes  # the same leaves
    transposed = [w.view(splits, kept).t().contiguous().view(-1) for w in ws]
    (r2_args,) = bind_scalars([r2], row_plan.scalars)
    run_kernel(r2, [*row_ins, *row_outs, *transposed], r2_args, g2)
    for column, row in zip(outs, row_outs):
        assert torch.equal(_bits(column).flatten(), _bits(row).flatten()), (column, row)
    want = fn(x, y, 0)
    for got, w in zip(outs, want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(got, w, rtol=1e-2, atol=1e-2, equal_nan=True)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    assert any("nvfuse_split2_" in name for name in _generated)
    compile_all(_generated, arch, "split_columns")


def test_a_new_kept_size_reuses_both_kernels(monkeypatch: pytest.MonkeyPatch,
                                             interpret: None) -> None:
    """The layout is addressed by the kept count (a kernel argument): another kept size and
    another reduced extent in the same buckets reuse both kernels."""
    _force_splits(monkeypatch, 16)
    fm = check_fused(lambda x: x.sum(0), (_make((ROWS, 40), f32, "reuse1"),), f32,
                     _tol("sum", f32), launches=2)
    for shape in ((ROWS + 20, 80), (ROWS, 120)):
        x = _make(shape, f32, f"reuse{shape}")
        nvfuse.reset_stats()
        torch.testing.assert_close(fm(x), x.sum(0), rtol=1e-5, atol=1e-4)
        assert nvfuse.stats()["compiles"] == 0 and nvfuse.stats()["launches"] == 2
