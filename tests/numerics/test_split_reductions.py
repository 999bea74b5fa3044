"""Split ("grid") reductions end to end through the interpreter (strict, outputs poisoned),
against eager: few long rows run as two kernels (nvfuse/schedule/split.py).  The split
thresholds are monkeypatched down so interpreter-sized rows split.  Covers sum / mean / amax /
amin / prod / var / std / var_mean / vector norm over every dim and over trailing dims, every
dtype, NaN / inf propagation, Welford at mean 1e4 std 1, determinism, the launch count,
kernel reuse across sizes, the fusions that must not split, the column schedule's split (few
kept columns, a long reduced extent) and NVRTC for sm_80 / sm_90."""

from __future__ import annotations

import zlib
from collections.abc import Callable

import pytest
import torch
from cases import compare

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.runtime import executor, kernels
from nvfuse.schedule import split
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.split import SplitSignature

f16, bf16, f32, f64, i64 = torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.int64
FLOATS = (f32, f16, bf16, f64)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _small_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)
    monkeypatch.setattr(split, "SPLIT_MIN_NUMEL", 512)
    monkeypatch.setattr(split, "MIN_CHUNK", 128)


def _make(shape: tuple[int, ...], dtype: torch.dtype, seed: str,
          near_one: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(zlib.crc32(seed.encode()))
    if dtype.is_floating_point:
        x = (torch.rand(shape, generator=g, dtype=f64) * 0.02 + 0.995 if near_one
             else torch.randn(shape, generator=g, dtype=f64) * 2)
    else:
        x = torch.randint(-3, 4 if near_one else 1000, shape, generator=g, dtype=i64)
    return x.to(dtype)


def _run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
         tol: tuple[float, float] | None = None, launches: int = 2) -> nvfuse.FusedModule:
    expected = fn(*inputs)
    fm = nvfuse.fuse(fn, inputs)
    nvfuse.reset_stats()
    actual = fm(*inputs)
    assert nvfuse.stats()["launches"] == launches, [g.ops for g in fm.fusion_groups]
    assert nvfuse.stats()["fallbacks"] == 0
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


OPS: dict[str, tuple[Callable[..., object], tuple[torch.dtype, ...]]] = {
    "sum": (lambda x, d: x.sum(d), (*FLOATS, i64)),
    "mean": (lambda x, d: x.mean(d), FLOATS),
    "amax": (lambda x, d: x.amax(d), (*FLOATS, i64)),
    "amin": (lambda x, d: x.amin(d), (f32, bf16, i64)),
    "prod": (lambda x, d: x.prod(), (f32, f64, i64)),
    "var": (lambda x, d: x.var(d), FLOATS),
    "std": (lambda x, d: x.std(d, correction=0), (f32, bf16)),
    "var_mean": (lambda x, d: torch.var_mean(x, d), (f32, f64)),
    "norm": (lambda x, d: torch.linalg.vector_norm(x, dim=d), (f32, f16)),
    "sum_scaled": (lambda x, d: (x * 3 + 1).sum(d, keepdim=True) * 0.5, (f32, bf16)),
}
# (shape, dims): one row of every element, two rows of the last dim, rows over two dims
# and the column schedule: few kept columns, a long reduced extent
SHAPES = {"all": ((3, 700), (0, 1)), "last": ((2, 1500), (-1,)), "two": ((3, 4, 200), (1, 2)),
          "col": ((1200, 3), (0,)), "col3": ((300, 4, 5), (0, 1))}
PARAMS = [pytest.param(op, dtype, shape, id=f"{op}-{str(dtype)[6:]}-{shape}")
          for op, (_, dtypes) in OPS.items() for dtype in dtypes for shape in SHAPES
          if not (op == "prod" and shape != "all")
          and not (shape.startswith("col") and op in ("sum_scaled", "var_mean"))]


@pytest.mark.parametrize(("op", "dtype", "shape"), PARAMS)
def test_split_reduction(op: str, dtype: torch.dtype, shape: str, interpret: None) -> None:
    fn, _ = OPS[op]
    size, dims = SHAPES[shape]
    x = _make(size, dtype, f"{op}{dtype}{shape}", near_one=op == "prod")
    tol = None
    if dtype.is_floating_point and op not in ("amax", "amin"):
        eps = {f32: 1.2e-7, f64: 2.3e-16, f16: 1e-3, bf16: 8e-3}[dtype]
        tol = (max(64 * eps, 1e-5), 64 * eps + 1e-5)
    fm = _run(lambda x: fn(x, dims), (x,), dtype, tol)
    sigs = [k.signature[1] for k in fm.kernels]
    assert all(isinstance(sig, SplitSignature) for sig in sigs)
    column = {sig.base.kind is ScheduleKind.COLUMN for sig in sigs}  # type: ignore[union-attr]
    assert column == {shape.startswith("col")}


def test_nan_and_inf_propagate(interpret: None) -> None:
    x = _make((2, 1500), f32, "nan")
    x[0, 1200] = float("nan")
    x[1, 7] = float("inf")
    for fn in (lambda x: x.sum(-1), lambda x: x.amax(-1), lambda x: x.amin(-1),
               lambda x: x.var(-1)):
        _run(fn, (x,), f32)
    y = _make((2, 1500), f32, "inf")
    y[0, 5], y[0, 1400] = float("inf"), float("-inf")
    _run(lambda y: y.sum(-1), (y,), f32)


def test_welford_keeps_float32_at_large_mean(interpret: None) -> None:
    x = (_make((1, 4000), f64, "big") * 0.5 + 1e4).to(f32)
    fm = nvfuse.fuse(lambda x: x.var(), (x,))
    got = fm(x)
    assert nvfuse.stats()["launches"] == 2
    exact = x.double().var()
    assert abs(got.double() - exact) <= 1e-4 * exact, (got, exact)


def test_deterministic(interpret: None) -> None:
    x = _make((3, 700), f32, "det")
    fm = nvfuse.fuse(lambda x: (x.sum(), x.var()), (x,))
    a, b = fm(x), fm(x)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_new_size_in_a_bucket_reuses_both_kernels(interpret: None) -> None:
    kernels.clear()  # the kernel cache is process-wide: count this test's compiles alone
    fm = nvfuse.fuse(lambda x: x.sum(), (_make((2100,), f32, "a"),))
    for n in (2100, 2300, 2050):
        x = _make((n,), f32, f"n{n}")
        nvfuse.reset_stats()
        torch.testing.assert_close(fm(x), x.sum(), rtol=1e-5, atol=1e-4)
        assert nvfuse.stats()["launches"] == 2
        assert nvfuse.stats()["compiles"] == (2 if n == 2100 else 0)


@pytest.mark.parametrize("name", ["softmax", "argmax", "many_rows", "short_rows",
                                  "column_softmax"])
def test_unsplit_fusions_stay_one_kernel(name: str, interpret: None) -> None:
    x = _make((2, 1500), f32, name)
    fn: Callable[..., object] = {
        "softmax": lambda x: torch.softmax(x, -1),      # full-size output
        "argmax": lambda x: x.argmax(-1),                # (value, index) pairs stay one kernel
        "many_rows": lambda x: x.sum(-1),                # rows >= SMs (below)
        "short_rows": lambda x: x.sum(-1),               # rows under SPLIT_MIN_NUMEL
        "column_softmax": lambda x: torch.softmax(x, 0),  # full-size, column schedule
    }[name]
    if name == "many_rows":
        x = _make((140, 600), f32, name)
    if name == "short_rows":
        x = _make((2, 300), f32, name)
    if name == "column_softmax":
        x = _make((1500, 2), f32, name)
    _run(fn, (x,), f32, (1e-4, 1e-5), launches=1)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "split_reductions")


# -- full outputs that depend on no reduction: kernel 1 stores them ---------------------------
PROLOGUE = {
    # GELU backward's gradient and its bias gradient (column schedule, 4 / 8 lanes or 1)
    "bias_grad_cols": ((1500, 16), lambda dy, x: (lambda g: (g, g.sum(0)))(
        dy * torch.sigmoid(1.702 * x))),
    "bias_grad_cols_odd": ((1500, 5), lambda dy, x: (lambda g: (g, g.sum(0)))(dy * x + 1)),
    # a row: the product and its sum and max (two plain parts; the first stores)
    "row_product": ((2, 1500), lambda a, b: (lambda p: (p, p.sum(-1), p.amax(-1)))(a * b)),
}


@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
@pytest.mark.parametrize("name", sorted(PROLOGUE))
def test_split_stores_prologue_outputs(name: str, dtype: torch.dtype, interpret: None) -> None:
    shape, fn = PROLOGUE[name]
    a, b = _make(shape, dtype, f"pa{name}"), _make(shape, dtype, f"pb{name}")
    eps = {f32: 1.2e-7, bf16: 8e-3}[dtype]
    fm = _run(fn, (a, b), dtype, (max(64 * eps, 1e-5), 64 * eps + 1e-5))
    assert all(isinstance(k.signature[1], SplitSignature) for k in fm.kernels)


def test_full_outputs_stay_one_kernel_otherwise(interpret: None) -> None:
    """x - x.mean(0) needs the finished mean; a first reduction that is a Welford (var) has no
    plain loop to store from: one kernel each."""
    x, y = _make((1500, 16), f32, "dep"), _make((1500, 16), f32, "dep2")
    _run(lambda x: (x - x.mean(0), x.sum(0)), (x,), f32, launches=1)
    _run(lambda x, y: (lambda g: (g * 2, g.var(0)))(x - y), (x, y), f32, launches=1)
