"""Reductions over non-trailing dims end to end through the interpreter (strict, outputs
poisoned), against eager: every reduction op x dtype x dim pattern (dim 0 of 2D, the middle dim
of 3D, (0, 2) of 3D, all but the last, permuted inputs) x keepdim, which schedule the strides
pick, softmax over a leading dim, Welford's large-mean case, the prologue / epilogue patterns
that must be one kernel, kernel reuse across sizes, training batch norm and group norm with
their extra outputs and running stats, and every generated kernel compiled by NVRTC for sm_80
and sm_90."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from cases import compare

import nvfuse
from nvrtc_batch import compile_all
from test_reductions import _make
from nvfuse.runtime import executor
from nvfuse.schedule.kind import ScheduleKind

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
i32, i64 = torch.int32, torch.int64
FLOATS = (f32, f16, bf16, f64)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _tol(op: str, dtype: torch.dtype, n: int) -> tuple[float, float] | None:
    """Reassociated sums and products differ from eager's order by about n ulps."""
    if not dtype.is_floating_point or op in ("amax", "amin"):
        return None
    eps = {f32: 1.2e-7, f64: 2.3e-16, f16: 1e-3, bf16: 8e-3}[dtype]
    return (max(4 * n * eps, 1e-5 if dtype is f32 else 0), 4 * n * eps + 1e-5)


def _run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
         tol: tuple[float, float] | None = None, kernels: int | None = 1) -> nvfuse.FusedModule:
    expected = fn(*inputs)
    fm = nvfuse.fuse(fn, inputs)
    nvfuse.reset_stats()
    actual = fm(*inputs)
    if kernels is not None:
        assert nvfuse.stats()["launches"] == kernels, [g.ops for g in fm.fusion_groups]
    assert nvfuse.stats()["fallbacks"] == 0
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


def _schedules(fm: nvfuse.FusedModule) -> set[str]:
    return {"column" if k.signature[1].kind is ScheduleKind.COLUMN else "row"
            for k in fm.kernels}


# -- every op x dtype x dim pattern --------------------------------------------------------------
# (shape, dims, transposed input, the schedule the strides pick)
PATTERNS = {
    "dim0": ((37, 45), (0,), False, "column"),
    "dim0_long": ((300, 40), (0,), False, "column"),
    "mid3": ((4, 37, 9), (1,), False, "column"),
    "outer_inner3": ((5, 6, 70), (0, 2), False, "row"),
    "all_but_last": ((3, 5, 33), (0, 1), False, "column"),
    "transposed_last": ((40, 30), (-1,), True, "column"),
    "transposed_dim0": ((40, 30), (0,), True, "row"),
}
REDUCE_OPS: dict[str, tuple[Callable[..., torch.Tensor], tuple[torch.dtype, ...]]] = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), (*FLOATS, i32, i64)),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), FLOATS),
    "amax": (lambda x, d, k: x.amax(d, keepdim=k), (*FLOATS, i64)),
    "amin": (lambda x, d, k: x.amin(d, keepdim=k), (f32, bf16, i32)),
    "prod": (lambda x, d, k: x.prod(d[0], keepdim=k), (f32, f16, i64)),
    "var": (lambda x, d, k: x.var(d, keepdim=k), FLOATS),
    "std": (lambda x, d, k: x.std(d, correction=0, keepdim=k), (f32, bf16)),
}
REDUCE_PARAMS = [
    pytest.param(op, dtype, pattern, keep, id=f"{op}-{str(dtype)[6:]}-{pattern}-{keep}")
    for op, (_, dtypes) in REDUCE_OPS.items() for dtype in dtypes for pattern in PATTERNS
    for keep in (True, False) if not (op == "prod" and len(PATTERNS[pattern][1]) > 1)
]


@pytest.mark.parametrize(("op", "dtype", "pattern", "keep"), REDUCE_PARAMS)
def test_reduction(op: str, dtype: torch.dtype, pattern: str, keep: bool,
                   interpret: None) -> None:
    shape, dims, transposed, schedule = PATTERNS[pattern]
    fn, _ = REDUCE_OPS[op]
    x = _make(shape, dtype, f"{op}{pattern}", near_one=op == "prod", transposed=transposed)
    n = 1
    for d in dims:
        n *= shape[d]
    fm = _run(lambda x: fn(x, dims, keep), (x,), dtype, _tol(op, dtype, n))
    assert _schedules(fm) == {schedule}


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize(("shape", "dim"), [((30, 70), 0), ((4, 33, 9), 1)], ids=["2d", "3d"])
@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
def test_softmax_over_a_leading_dim(op: str, shape: tuple[int, ...], dim: int,
                                    dtype: torch.dtype, interpret: None) -> None:
    fn = getattr(torch, op)
    fm = _run(lambda x: fn(x, dim), (_make(shape, dtype, op + str(dim)),), dtype)
    assert _schedules(fm) == {"column"}


def test_nan_and_inf_propagate_down_columns(interpret: None) -> None:
    x = _make((70, 40), f32, "nan")
    x[7, 1] = float("nan")
    x[69, 4] = float("nan")
    x[0, 2] = float("inf")
    x[:, 3] = float("-inf")
    _run(lambda x: (x.amax(0), x.amin(0), x.sum(0)), (x,), f32, _tol("sum", f32, 70))


EDGES = {
    "empty_reduced": (lambda x: (x.sum(0), x.mean(0), x.prod(0)), (0, 40)),
    "one_reduced": (lambda x: x.sum(0), (1, 40)),
    "size1_middle": (lambda x: x.sum((0, 1)), (3, 1, 40)),
    "few_columns": (lambda x: x.sum(0), (700, 3)),
}


@pytest.mark.parametrize("name", sorted(EDGES))
def test_edge_shapes(name: str, interpret: None) -> None:
    fn, shape = EDGES[name]
    _run(fn, (_make(shape, f32, name),), f32, _tol("sum", f32, 700), kernels=None)


def test_column_variance_keeps_float32_at_large_mean(interpret: None) -> None:
    x = (_make((2000, 33), f64, "big") / 2 + 1e4).to(f32)
    fm = _run(lambda x: x.var(0), (x,), f32, (1e-3, 1e-3))
    assert _schedules(fm) == {"column"}
    torch.testing.assert_close(fm(x).double(), x.double().var(0), atol=1e-3, rtol=1e-3)


# -- prologue / epilogue: one kernel ----------------------------------------------------------
FUSED: dict[str, tuple[Callable[..., object], Callable[[torch.dtype], tuple]]] = {
    "bias_grad": (lambda g: g.sum(0), lambda d: (_make((64, 48), d, "bg"),)),
    "product_sum": (lambda x, y: (x * y).sum(0), lambda d: (_make((50, 33), d, "px"),
                                                            _make((50, 33), d, "py"))),
    "bias_grad_3d": (lambda g: g.sum((0, 1)), lambda d: (_make((3, 17, 40), d, "b3"),)),
    "center_columns": (lambda x: x - x.mean(0, keepdim=True), lambda d: (_make((45, 30), d, "c"),)),
    # keepdim=False over leading dims broadcasts like keepdim=True: it may feed the group
    "bias_grad_scaled": (lambda g, s: g.sum(0) * s + 1, lambda d: (_make((40, 24), d, "gs"),
                                                               _make((24,), d, "ss"))),
    "minus_column_sum": (lambda x: x - x.sum((0, 1)), lambda d: (_make((3, 9, 20), d, "ms"),)),
    "scaled_column_max": (lambda x, w: (x.abs() * w).amax(0, keepdim=True) * 2,
                          lambda d: (_make((20, 36), d, "sx"), _make((36,), d, "sw"))),
}


@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_column_pattern_is_one_kernel(name: str, dtype: torch.dtype,
                                            interpret: None) -> None:
    fn, make = FUSED[name]
    fm = _run(fn, make(dtype), dtype, _tol("sum", dtype, 200))
    assert len(fm.fusion_groups) == 1 and _schedules(fm) == {"column"}


def test_new_sizes_reuse_the_column_kernel(interpret: None) -> None:
    for rows, cols in ((37, 45), (50, 45), (60, 80), (33, 500)):
        _run(lambda g: g.sum(0), (_make((rows, cols), f32, f"re{rows}"),), f32,
             _tol("sum", f32, rows))
        if rows != 37:
            assert nvfuse.stats()["compiles"] == 0  # same reduced-extent bucket, any width


def test_trailing_dims_dropped_still_never_feed_the_group(interpret: None) -> None:
    x = _make((8, 8), f32, "square")  # (8,) would broadcast against the wrong dim
    fm = _run(lambda x: x.sum(-1) + x, (x,), f32, _tol("sum", f32, 8), kernels=None)
    assert not any("aten::sum" in g.ops and "aten::add" in g.ops for g in fm.fusion_groups)


# -- normalizations --------------------------------------------------------------------------
BN_SHAPES = {"nchw": ((3, 4, 5, 6), False), "nc": ((40, 24), False), "ncl": ((4, 8, 30), False),
             "channels_last": ((2, 8, 5, 7), True)}


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("layout", sorted(BN_SHAPES))
@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
def test_batch_norm_training(dtype: torch.dtype, layout: str, affine: bool,
                             interpret: None) -> None:
    shape, channels_last = BN_SHAPES[layout]
    c = shape[1]
    x = _make(shape, dtype, "bn" + layout) + 3
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w, b = (_make((c,), dtype, "bw"), _make((c,), dtype, "bb")) if affine else (None, None)
    stats = [_make((c,), dtype, "rm"), _make((c,), dtype, "rv").abs() + 0.5]

    def fn(x: torch.Tensor, rm: torch.Tensor, rv: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2)

    eager = [s.clone() for s in stats]
    expected = fn(x, *eager)
    fm = nvfuse.fuse(fn, (x, *[s.clone() for s in stats]))
    nvfuse.reset_stats()
    got = fm(x, *stats)
    assert nvfuse.stats()["launches"] == 1 and nvfuse.stats()["fallbacks"] == 0
    tol = _tol("sum", dtype, 100)
    compare(got, expected, dtype, tol)
    for s, e in zip(stats, eager):  # running stats updated in place, as eager
        compare(s, e, dtype, tol)
    _generated.update((k.name, k.source) for k in fm.kernels)


@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
def test_native_batch_norm_saved_statistics(dtype: torch.dtype, interpret: None) -> None:
    x = _make((6, 5, 7), dtype, "nbn")
    w, b = _make((5,), dtype, "nw"), _make((5,), dtype, "nb")

    def fn(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.ops.aten.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-5)

    _run(fn, (x, w, b), dtype, _tol("sum", dtype, 50))


@pytest.mark.parametrize("op", ["cudnn_batch_norm", "miopen_batch_norm"])
@pytest.mark.parametrize("dtype", [f32, f16], ids=str)
def test_device_batch_norm_paths_fuse(op: str, dtype: torch.dtype, interpret: None) -> None:
    """aten.batch_norm becomes cudnn_batch_norm on a CUDA input (miopen on ROCm), which no CPU
    kernel implements: traced here on CPU tensors, the decomposition must give native's
    outputs and running-stat updates, in one kernel."""
    x = _make((4, 6, 5, 7), dtype, "dbn") + 2
    w, b = _make((6,), f32, "dw"), _make((6,), f32, "db")
    stats = [_make((6,), f32, "drm"), _make((6,), f32, "drv").abs() + 0.5]

    def fn(x: torch.Tensor, rm: torch.Tensor, rv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return getattr(torch.ops.aten, op)(x, w, b, rm, rv, True, 0.2, 1e-5)[:3]

    eager = [s.clone() for s in stats]
    expected = torch.ops.aten.native_batch_norm(x, w, b, *eager, True, 0.2, 1e-5)
    fm = nvfuse.fuse(fn, (x, *[s.clone() for s in stats]))
    nvfuse.reset_stats()
    got = fm(x, *stats)
    assert nvfuse.stats()["launches"] == 1 and nvfuse.stats()["fallbacks"] == 0
    assert len(fm.kernels) == 1
    tol = _tol("sum", dtype, 140)
    for a, e in zip((*got, *stats), (*expected, *eager)):
        compare(a, e, dtype, tol)


def test_batch_norm_statistics_at_large_mean(interpret: None) -> None:
    x = _make((16, 3, 20, 20), f32, "bnbig") / 2 + 1e4
    w = _make((3,), f32, "bnw")

    def fn(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return torch.ops.aten.native_batch_norm(x, w, None, None, None, True, 0.1, 1e-5)

    fm = _run(fn, (x, w), f32, (1e-3, 1e-3))
    _, _, invstd = fm(x, w)
    ref = x.double().var((0, 2, 3), correction=0)
    torch.testing.assert_close(invstd.double(), (ref + 1e-5).rsqrt(), rtol=1e-4, atol=0)


@pytest.mark.parametrize("affine", [True, False], ids=["affine", "plain"])
@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
def test_group_norm(dtype: torch.dtype, affine: bool, interpret: None) -> None:
    x = _make((3, 6, 5, 7), dtype, "gn") + 1
    w, b = (_make((6,), dtype, "gw"), _make((6,), dtype, "gb")) if affine else (None, None)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.group_norm(x, 3, w, b)

    _run(fn, (x,), dtype, _tol("sum", dtype, 70))
    native = (lambda x: torch.ops.aten.native_group_norm(x, w, b, 3, 6, 35, 2, 1e-5))
    _run(native, (x,), dtype, _tol("sum", dtype, 105))


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "column_reductions")
