"""Vector column reductions end to end through the interpreter (strict, outputs poisoned),
against eager: a column-schedule thread owns L consecutive kept elements and reads and writes
them as one 16-byte vector (nvfuse/schedule/reduction.py `column_lanes`,
nvfuse/lower/column.py).  Covers every reduction op x dtype with the lanes the schedule must
pick (16 bytes of the widest operand, halved until the innermost kept size divides), the
halving on ragged sizes and misaligned pointers and strides (down to L = 1), Welford, several
reductions in one kernel, full-size outputs, broadcast and row-invariant operands, epilogues,
the split column schedule's stage 1, a new batch reusing the kernel, and every generated
kernel compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from cases import check_fused, compare

import nvfuse
from nvrtc_batch import compile_all
from test_reductions import _make
from nvfuse.runtime import executor
from nvfuse.schedule import split
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.split import SplitSignature

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
i8, i32, i64 = torch.int8, torch.int32, torch.int64
FLOATS = (f32, f16, bf16, f64)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _tol(dtype: torch.dtype, n: int) -> tuple[float, float] | None:
    if not dtype.is_floating_point:
        return None
    eps = {f32: 1.2e-7, f64: 2.3e-16, f16: 1e-3, bf16: 8e-3}[dtype]
    return (max(4 * n * eps, 1e-5 if dtype is f32 else 0), 4 * n * eps + 1e-5)


def _column_lanes(fm: nvfuse.FusedModule) -> set[int]:
    """The lanes of every column kernel of `fm` (a split's stages report their base's)."""
    out = set()
    for k in fm.kernels:
        sig = k.signature[1]
        base = sig.base if isinstance(sig, SplitSignature) else sig
        assert base.kind is ScheduleKind.COLUMN, (k.name, sig)
        out.add(base.lanes)
    return out


def _run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
         tol: tuple[float, float] | None = None, launches: int = 1) -> nvfuse.FusedModule:
    return check_fused(fn, inputs, dtype, tol, launches=launches, generated=_generated)


def _lanes_for(dtype: torch.dtype, inner: int) -> int:
    lanes = min(16 // torch.empty((), dtype=dtype).element_size(), 8)
    while inner % lanes:
        lanes //= 2
    return lanes


# -- every op x dtype, lanes as the schedule must pick them ---------------------------------------
# (shape, reduced dims): kept dims innermost in memory; the innermost kept size picks the lanes
PATTERNS = {
    "dim0": ((37, 64), (0,)),          # f16: 8 lanes, f32: 4, f64: 2
    "mid3": ((3, 29, 32), (1,)),       # two kept dims, the outer one above the reduced one
    "lead2": ((3, 7, 24), (0, 1)),     # two reduced dims
    "halved": ((31, 36), (0,)),        # 36: f16 falls from 8 lanes to 4
    "narrow": ((45, 16), (0,)),        # fewer kept elements than a block's 32: dead lanes
}
OPS: dict[str, tuple[Callable[..., torch.Tensor], tuple[torch.dtype, ...]]] = {
    "sum": (lambda x, d: x.sum(d), (*FLOATS, i8, i32, i64)),
    "mean": (lambda x, d: x.mean(d, keepdim=True), FLOATS),
    "amax": (lambda x, d: x.amax(d), (*FLOATS, i32)),
    "amin": (lambda x, d: x.amin(d, keepdim=True), (f32, bf16, i64)),
    "prod": (lambda x, d: x.prod(d[0]), (f32, f16)),
    "var": (lambda x, d: x.var(d), FLOATS),
    "std": (lambda x, d: x.std(d, correction=0, keepdim=True), (f32, bf16)),
    "var_mean": (lambda x, d: torch.var_mean(x, d), (f32, f16)),
    "sum_amax": (lambda x, d: (x.sum(d), x.amax(d)), (f32, bf16)),  # two reductions, one kernel
}
PARAMS = [pytest.param(op, dtype, pattern, id=f"{op}-{str(dtype)[6:]}-{pattern}")
          for op, (_, dtypes) in OPS.items() for dtype in dtypes for pattern in PATTERNS
          if not (op == "prod" and len(PATTERNS[pattern][1]) > 1)]


@pytest.mark.parametrize(("op", "dtype", "pattern"), PARAMS)
def test_vector_column_reduction(op: str, dtype: torch.dtype, pattern: str,
                                 interpret: None) -> None:
    shape, dims = PATTERNS[pattern]
    fn, _ = OPS[op]
    x = _make(shape, dtype, f"vcol{op}{pattern}", near_one=op == "prod")
    n = 1
    for d in dims:
        n *= shape[d]
    fm = _run(lambda x: fn(x, dims), (x,), dtype, _tol(dtype, n))
    # an integer sum's int64 result is the widest operand
    widest = i64 if op == "sum" and not dtype.is_floating_point else dtype
    assert _column_lanes(fm) == {_lanes_for(widest, shape[-1])}


def test_nan_and_inf_in_one_lane_stay_in_it(interpret: None) -> None:
    x = _make((40, 64), f32, "vcolnan")
    x[3, 5] = float("nan")
    x[7, 6] = float("inf")
    x[9, 13] = float("-inf")
    for fn in (lambda x: x.sum(0), lambda x: x.amax(0), lambda x: x.amin(0),
               lambda x: x.var(0)):
        fm = _run(fn, (x,), f32)
        assert _column_lanes(fm) == {4}


# -- alignment: pointers and strides halve the lanes --------------------------------------------
@pytest.mark.parametrize(("offset", "lanes"), [(0, 4), (1, 1), (2, 2), (4, 4), (6, 2)])
def test_misaligned_pointer_halves_the_lanes(offset: int, lanes: int, interpret: None) -> None:
    """An f32 [37, 64] view at `offset` elements into its storage: 16-byte aligned at 0 and 4,
    8-byte at 2 and 6, 4-byte at 1."""
    base = _make((37 * 64 + offset,), f32, f"vcolptr{offset}")
    x = base[offset:].view(37, 64)
    fm = _run(lambda x: x.sum(0), (x,), f32, _tol(f32, 37))
    assert _column_lanes(fm) == {lanes}


@pytest.mark.parametrize(("row_stride", "lanes"), [(66, 2), (65, 1), (72, 4)])
def test_row_stride_halves_the_lanes(row_stride: int, lanes: int, interpret: None) -> None:
    """The first 64 columns of an f16 [29, row_stride] tensor summed in f32 (the f32 result
    is the widest operand: 4 lanes at most): the reduced dim's stride must be a multiple of the
    lanes too."""
    x = _make((29, row_stride), f16, f"vcolstride{row_stride}")[:, :64]
    fm = _run(lambda x: (x.float() * 2).sum(0), (x,), f16, _tol(f16, 29))
    assert _column_lanes(fm) == {lanes}


def test_a_new_pointer_alignment_gets_its_own_kernel(interpret: None) -> None:
    """An aligned call then a misaligned one of the same shape: both right, the second on a
    narrower kernel (the alignment class is part of the key)."""
    x = _make((37, 64), f32, "vcolnew")
    fm = _run(lambda x: x.sum(0), (x,), f32, _tol(f32, 37))
    base = _make((37 * 64 + 1,), f32, "vcolnew1")
    y = base[1:].view(37, 64)
    compare(fm(y), y.sum(0), f32, _tol(f32, 37))
    assert {k.signature[1].lanes for k in fm.kernels} == {4, 1}


# -- fusions: full outputs, broadcast and row-invariant operands, epilogues --------------------
FUSED: dict[str, tuple[Callable[..., object], Callable[[torch.dtype], tuple[torch.Tensor, ...]],
                       int]] = {
    # a bias gradient with the full-size gradient it sums (GELU backward): one vector store each
    "bias_grad_full_output": (
        lambda dy, x: (lambda g: (g, g.sum(0)))(dy * torch.sigmoid(1.702 * x) * 1.5),
        lambda dt: (_make((33, 48), dt, "fa"), _make((33, 48), dt, "fb")), 4),
    # a per-row scale broadcast along the kept dim (stride 0: one element serves every lane)
    "row_scale": (lambda x, s: (x * s).sum(0),
                  lambda dt: (_make((41, 40), dt, "ra"), _make((41, 1), dt, "rb")), 0),
    # a [N] weight along the kept dim, hoisted out of the column loop as one vector
    "weight_in_loop": (lambda x, w: (x * w).sum(0),
                       lambda dt: (_make((29, 64), dt, "wa"), _make((64,), dt, "wb")), 0),
    # an epilogue on the row result with row-invariant weight and bias
    "epilogue": (lambda x, w, b: x.sum(0) * w + b,
                 lambda dt: (_make((30, 32), dt, "ea"), _make((32,), dt, "eb"),
                             _make((32,), dt, "ec")), 0),
    # softmax down the columns: two reductions and a full-size output
    "column_softmax": (lambda x: torch.softmax(x, 0),
                       lambda dt: (_make((23, 64), dt, "sa"),), 0),
    # mean and variance of a [N, C] batch, normalized: batch norm's statistics + full output
    "normalize": (lambda x: (x - x.mean(0)) * torch.rsqrt(x.var(0, correction=0) + 1e-5),
                  lambda dt: (_make((50, 24), dt, "na") + 3,), 0),
}


@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_vector_columns(name: str, dtype: torch.dtype, interpret: None) -> None:
    fn, make, _ = FUSED[name]
    inputs = make(dtype)
    fm = _run(fn, inputs, dtype, _tol(dtype, inputs[0].shape[0]))
    assert _column_lanes(fm) == {_lanes_for(dtype, inputs[0].shape[-1])}


@pytest.mark.parametrize("dtype", [f32, f16], ids=str)
def test_batch_norm_training_channels_last(dtype: torch.dtype, interpret: None) -> None:
    x = (_make((4, 16, 3, 5), dtype, "vcolbn") + 2).contiguous(memory_format=torch.channels_last)
    w, b = _make((16,), dtype, "vcolbnw"), _make((16,), dtype, "vcolbnb")

    def bn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, None, None, w, b, training=True)

    expected = bn(x, w, b)
    fm = nvfuse.fuse(bn, (x, w, b))
    compare(fm(x, w, b), expected, dtype, _tol(dtype, 60))
    column = [k for k in fm.kernels if k.signature[1].kind is ScheduleKind.COLUMN]
    assert column and {k.signature[1].lanes for k in column} == {_lanes_for(dtype, 16)}
    _generated.update((k.name, k.source) for k in fm.kernels)


def test_new_batch_reuses_the_vector_kernel(interpret: None) -> None:
    """Lanes depend on the innermost kept size and alignment only: another reduced extent in
    the same block bucket (up to 64) and another batch of kept rows reuse the kernel."""
    fm = _run(lambda x: x.sum(0), (_make((37, 64), f16, "vcolr1"),), f16, _tol(f16, 37))
    y = _make((60, 64), f16, "vcolr2")
    compare(fm(y), y.sum(0), f16, _tol(f16, 60))
    z = _make((3, 37, 64), f16, "vcolr3")
    compare(fm(z[0]), z[0].sum(0), f16, _tol(f16, 37))
    assert len(fm.kernels) == 1 and _column_lanes(fm) == {8}


# -- the split column schedule: stage 1 keeps the lanes ----------------------------------------
@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
@pytest.mark.parametrize("op", ["sum", "var", "amax"])
def test_split_vector_columns(op: str, dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch,
                              interpret: None) -> None:
    monkeypatch.setattr(split, "SPLIT_MIN_NUMEL", 512)
    monkeypatch.setattr(split, "MIN_CHUNK", 128)
    fn = {"sum": lambda x: x.sum(0), "var": lambda x: x.var(0),
          "amax": lambda x: x.amax(0)}[op]
    x = _make((1500, 16), dtype, f"vcolsplit{op}")
    fm = _run(fn, (x,), dtype, _tol(dtype, 64), launches=2)
    sigs = [k.signature[1] for k in fm.kernels]
    assert all(isinstance(s, SplitSignature) for s in sigs)
    assert _column_lanes(fm) == {_lanes_for(dtype, 16)}


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    assert any("float4" in s or "uint4" in s or "vec" in s for s in _generated.values())
    compile_all(_generated, arch, "vector_columns")


ONE_PASS: dict[str, Callable[..., object]] = {
    # a GELU backward's gradient and its bias gradient: the gradient depends on no reduction,
    # so the reduction's loop stores it
    "prologue_output": FUSED["bias_grad_full_output"][0],
    # layer-norm backward's dw and db: two independent sums, one loop
    "two_sums": lambda g, x: ((g * x).sum(0), g.sum(0)),
    # both, and a max
    "sums_max_output": lambda g, x: (lambda p: (p, p.sum(0), g.amax(0)))(g * x),
}


@pytest.mark.parametrize("name", sorted(ONE_PASS))
@pytest.mark.parametrize(("kept", "lanes"), [(48, 8), (45, 1)])
def test_one_pass_over_the_inputs(name: str, kept: int, lanes: int, interpret: None) -> None:
    """Each element of each tensor is accessed once (the interpreter's counts): independent
    reductions share one loop, and it stores the full outputs that depend on no reduction."""
    from bench.model import count_traffic
    from bench.model.plan import plan_call

    dy, x = _make((33, kept), f16, "pa"), _make((33, kept), f16, "pb")
    fm = _run(ONE_PASS[name], (dy, x), f16, _tol(f16, 33))
    assert _column_lanes(fm) == {lanes}
    call, _ = plan_call(fm.fusion_groups[0], (dy, x), "sm_90", torch.device("cpu"))
    assert call is not None
    (stage,) = call.stages
    kir = stage.kernel.kernel_ir
    t = count_traffic(kir, call.tensors, call.scalars[0], stage.grid)
    for param, tensor in zip(kir.tensors, call.tensors):
        assert t.elements[param.name] == tensor.nbytes, param.name
