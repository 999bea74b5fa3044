"""Row reductions end to end through the interpreter (strict, outputs poisoned), against eager:
every reduction op x dtype x dim pattern, NaN propagation, the fused patterns that must be one
kernel (softmax, RMSNorm, centering, a value and its row sum), partition rules, kernel reuse
across row counts, and every generated kernel compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest
import torch
from cases import compare

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.runtime import executor

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
i32, i64 = torch.int32, torch.int64
FLOATS = (f32, f16, bf16, f64)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _make(shape: tuple[int, ...], dtype: torch.dtype, seed: str, *, near_one: bool = False,
          permuted: bool = False, transposed: bool = False) -> torch.Tensor:
    """Random values (never zeros); `permuted` lays the first two dims out swapped in memory,
    `transposed` the last two."""
    g = torch.Generator().manual_seed(zlib.crc32(seed.encode()))
    if dtype.is_floating_point:
        x = (torch.rand(shape, generator=g, dtype=f64) * 0.2 + 0.9 if near_one
             else torch.randn(shape, generator=g, dtype=f64) * 2)
    else:
        lo, hi = (-3, 4) if near_one else (-1000, 1000)
        x = torch.randint(lo, hi, shape, generator=g, dtype=i64)
    x = x.to(dtype)
    if permuted:  # same values, outer dims transposed in memory
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    if transposed:
        x = x.transpose(-1, -2).contiguous().transpose(-1, -2)
    return x


def _run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
         tol: tuple[float, float] | None = None, groups: int | None = 1) -> nvfuse.FusedModule:
    expected = fn(*inputs)
    fm = nvfuse.fuse(fn, inputs)
    nvfuse.reset_stats()
    actual = fm(*inputs)
    if groups is not None:
        assert len(fm.fusion_groups) == groups, [g.ops for g in fm.fusion_groups]
        # every group ran as a kernel; independent ones may share a launch (horizontal)
        assert nvfuse.stats()["launches"] == _fused_launches(fn, inputs)
    assert nvfuse.stats()["fallbacks"] == 0
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


# -- every op x dtype x dim pattern --------------------------------------------------------------
# (shape, dims): C below the block, C above it (and not a multiple of anything), two trailing dims.
PATTERNS = {
    "last_small": ((7, 13), (-1,)),
    "last_large": ((3, 300), (-1,)),
    "last2": ((3, 5, 9), (-2, -1)),
    "rank3_last": ((2, 3, 40), (2,)),
}
REDUCE_OPS: dict[str, tuple[Callable[..., torch.Tensor], tuple[torch.dtype, ...]]] = {
    "sum": (lambda x, d, k: x.sum(d, keepdim=k), (*FLOATS, i32, i64)),
    "mean": (lambda x, d, k: x.mean(d, keepdim=k), FLOATS),
    "amax": (lambda x, d, k: x.amax(d, keepdim=k), (*FLOATS, i32, i64)),
    "amin": (lambda x, d, k: x.amin(d, keepdim=k), (*FLOATS, i32, i64)),
    "prod": (lambda x, d, k: x.prod(d[0], keepdim=k), (*FLOATS, i32, i64)),
}
REDUCE_PARAMS = [
    pytest.param(op, dtype, pattern, keep, id=f"{op}-{str(dtype)[6:]}-{pattern}-{keep}")
    for op, (_, dtypes) in REDUCE_OPS.items() for dtype in dtypes for pattern in PATTERNS
    for keep in (True, False) if not (op == "prod" and len(PATTERNS[pattern][1]) > 1)
]


def _tol(op: str, dtype: torch.dtype, n: int) -> tuple[float, float] | None:
    """Reassociated sums and products differ from eager's order by about n ulps."""
    if not dtype.is_floating_point or op in ("amax", "amin"):
        return None
    eps = {f32: 1.2e-7, f64: 2.3e-16, f16: 1e-3, bf16: 8e-3}[dtype]
    return (max(4 * n * eps, 1e-5 if dtype is f32 else 0), 4 * n * eps + 1e-5)


@pytest.mark.parametrize(("op", "dtype", "pattern", "keep"), REDUCE_PARAMS)
def test_reduction(op: str, dtype: torch.dtype, pattern: str, keep: bool,
                   interpret: None) -> None:
    shape, dims = PATTERNS[pattern]
    fn, _ = REDUCE_OPS[op]
    x = _make(shape, dtype, f"{op}{pattern}", near_one=op == "prod")
    n = shape[-1] * (shape[-2] if len(dims) == 2 else 1)
    _run(lambda x: fn(x, dims, keep), (x,), dtype, _tol(op, dtype, n))


SOFTMAX_OPS = {"softmax": lambda x: torch.softmax(x, -1),
               "log_softmax": lambda x: torch.log_softmax(x, -1)}


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("pattern", ["last_small", "last_large", "rank3_last"])
@pytest.mark.parametrize("op", sorted(SOFTMAX_OPS))
def test_softmax(op: str, pattern: str, dtype: torch.dtype, interpret: None) -> None:
    x = _make(PATTERNS[pattern][0], dtype, op + pattern)
    _run(SOFTMAX_OPS[op], (x,), dtype)


@pytest.mark.parametrize("op", ["amax", "amin", "sum", "softmax"])
@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
def test_nan_propagates(op: str, dtype: torch.dtype, interpret: None) -> None:
    x = _make((6, 150), dtype, "nan" + op)
    x[1, 7] = float("nan")
    x[4, 149] = float("nan")
    x[2, 0] = float("inf")
    x[3, :] = float("-inf")
    fn = {"amax": lambda x: x.amax(-1), "amin": lambda x: x.amin(-1),
          "sum": lambda x: x.sum(-1, keepdim=True), "softmax": lambda x: torch.softmax(x, -1)}
    _run(fn[op], (x,), dtype, _tol("sum", dtype, 150))


def test_sum_of_bools_and_small_ints_promotes(interpret: None) -> None:
    x = _make((4, 33), i32, "bools") > 0
    _run(lambda x: x.sum(-1), (x,), torch.bool)
    y = _make((4, 33), i32, "u8").to(torch.int8)
    # siblings reading one input over the same dims: one kernel
    _run(lambda y: (y.sum(-1), y.amax(-1, keepdim=True)), (y,), torch.int8, groups=1)


def test_full_reduction_and_dtype_argument(interpret: None) -> None:
    x = _make((5, 6, 7), f16, "full")
    # the two full reductions merge (siblings over the same dims); the row sum does not
    _run(lambda x: (x.sum(), x.mean(), x.sum(-1, dtype=f32)), (x,), f16, _tol("sum", f16, 210),
         groups=2)


def test_strided_and_broadcast_operands(interpret: None) -> None:
    x = _make((6, 5, 50), f32, "perm", permuted=True)
    w = _make((50,), f32, "w")
    _run(lambda x, w: (x * w).sum(-1) + 0, (x, w), f32, _tol("sum", f32, 50), groups=None)
    _run(lambda x, w: torch.softmax(x + w, -1), (x, w), f32)
    m = _make((6, 5, 1), f32, "rowmask")  # row-invariant: loaded once per row
    _run(lambda x, m: torch.log_softmax(x * m, -1) + m, (x, m), f32)


# -- patterns that must be one kernel ---------------------------------------------------------
EPS = 1e-6


def _rmsnorm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w


FUSED: dict[str, tuple[Callable[..., object], Callable[[torch.dtype], tuple]]] = {
    "row_sum": (lambda x: x.sum(-1), lambda d: (_make((9, 70), d, "rs"),)),
    "value_and_row_sum": (lambda x: (x * 2, (x * 2).sum(-1)),
                          lambda d: (_make((9, 70), d, "vs"),)),
    "softmax_scale_mask": (lambda x, s, m: torch.softmax(x * s + m, -1),
                           lambda d: (_make((2, 3, 33), d, "sx"), _make((), d, "ss"),
                                      _make((3, 33), d, "sm"))),
    "rmsnorm": (_rmsnorm, lambda d: (_make((2, 5, 160), d, "rx"), _make((160,), d, "rw"))),
    "center": (lambda x: x - x.mean(-1, keepdim=True), lambda d: (_make((11, 130), d, "cx"),)),
}


@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_pattern_is_one_kernel(name: str, dtype: torch.dtype, interpret: None) -> None:
    fn, make = FUSED[name]
    fm = _run(fn, make(dtype), dtype, _tol("sum", dtype, 200))
    assert fm.fusion_groups[0].fusion_ir.reduce_ndim == 1


def test_new_row_count_reuses_the_kernel(interpret: None) -> None:
    for rows in (4, 9, 33):
        x = _make((rows, 100), f32, f"rows{rows}")
        _run(_rmsnorm, (x, _make((100,), f32, "w")), f32)
    assert nvfuse.stats()["compiles"] == 0  # reset by _run; the first call compiled it
    x = _make((5, 120), f32, "cols")  # another row length in the same block bucket
    _run(_rmsnorm, (x, _make((120,), f32, "w2")), f32)
    assert nvfuse.stats()["compiles"] == 0


def _ts_fn(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    return (torch.softmax(x * 2, -1), torch.log_softmax(x, -1, dtype=f64), x.sum(-1),
            x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * w)


def test_torchscript_plans_follow_new_shapes(interpret: None) -> None:
    x, w = _make((4, 10), f32, "ts"), _make((10,), f32, "tw")
    fm = nvfuse.fuse(torch.jit.trace(_ts_fn, (x, w)))
    fm(x, w)
    assert any("aten::softmax" in g.ops for g in fm.fusion_groups)
    assert any("aten::log_softmax" in g.ops for g in fm.fusion_groups)
    nvfuse.reset_stats()
    for shape in ((7, 10), (5, 300), (3, 1)):
        x, w = _make(shape, f32, f"ts{shape}"), _make(shape[-1:], f32, f"tw{shape}")
        for a, e in zip(fm(x, w), _ts_fn(x, w)):
            compare(a, e, f32, _tol("sum", f32, shape[-1]))
        if shape == (7, 10):  # a new row count: no new kernel
            assert nvfuse.stats()["compiles"] == 0
    assert nvfuse.stats()["fallbacks"] == 0
    _generated.update((k.name, k.source) for k in fm.kernels)


# -- partition rules ------------------------------------------------------------------------
def test_leading_dims_fuse_with_prologue_and_epilogue(interpret: None) -> None:
    x = _make((6, 7), f32, "lead")
    fm = nvfuse.fuse(lambda x: (x * 2).sum(0, keepdim=True) + 1, (x,))
    compare(fm(x), (x * 2).sum(0, keepdim=True) + 1, f32)
    assert len(fm.fusion_groups) == 1 and len(fm.kernels) == 1


def test_dropped_dims_never_feed_the_group(interpret: None) -> None:
    x = _make((8, 8), f32, "square")  # (8,) would broadcast against the wrong dim

    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1) + x

    fm = nvfuse.fuse(fn, (x,))
    compare(fm(x), fn(x), f32, _tol("sum", f32, 8))
    for g in fm.fusion_groups:
        assert not ("aten::sum" in g.ops and "aten::add" in g.ops)


def test_mixed_reduced_ranks_split(interpret: None) -> None:
    x = _make((3, 4, 5), f32, "mixed")

    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.sum(-1, keepdim=True) + x.sum((-2, -1), keepdim=True)

    fm = nvfuse.fuse(fn, (x,))
    compare(fm(x), fn(x), f32, _tol("sum", f32, 20))
    assert {g.fusion_ir.reduce_ndim for g in fm.fusion_groups} <= {0, 1, 2}
    assert all(len({n.op for n in g.fusion_ir.nodes if n.op.value.startswith("reduce")}) <= 1
               or g.fusion_ir.reduce_ndim for g in fm.fusion_groups)


def test_empty_rows(interpret: None) -> None:
    x = torch.empty(4, 0)
    fm = nvfuse.fuse(lambda x: (x.sum(-1), x.mean(-1), x.prod(-1)), (x,))
    for a, e in zip(fm(x), (x.sum(-1), x.mean(-1), x.prod(-1))):
        compare(a, e, f32)
    fm = nvfuse.fuse(lambda x: x.sum(-1) * 2, (torch.empty(0, 5),))
    assert fm(torch.empty(0, 5)).shape == (0,)


def test_amax_over_an_empty_dim_raises_as_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")  # not strict: the group falls back to eager
    nvfuse.config.reload()
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x.amax(-1, keepdim=True) * 2

    x = torch.randn(3, 4)
    fm = nvfuse.fuse(fn, (x,))
    fm(x)
    (group,) = fm.fusion_groups  # called directly: the frontends already fail on such shapes
    with pytest.raises(IndexError, match="non-zero size"), pytest.warns(RuntimeWarning):
        group(torch.empty(3, 0))


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "reductions")


def _fused_launches(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...]) -> int:
    """The launches explain plans for the fused groups (eager ops left out)."""
    return sum(g.kernels - len(g.eager) for g in nvfuse.explain(fn, *inputs).graphs)
