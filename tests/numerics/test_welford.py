"""The variance family and layer norm end to end through the interpreter (strict, outputs
poisoned), against eager: var / std / var_mean / std_mean x correction x dtype x dim pattern,
the large-mean cancellation case, layer norm (all three outputs of native_layer_norm) with and
without affine, the fused normalization patterns that must be one kernel, and every generated
kernel compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from cases import compare
from test_reductions import _make, _run

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.runtime import executor

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
FLOATS = (f32, f16, bf16, f64)

_generated: dict[str, str] = {}  # kernel name -> source, for the NVRTC test at the end


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _check(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
           tol: tuple[float, float] | None = None, groups: int | None = 1) -> nvfuse.FusedModule:
    fm = _run(fn, inputs, dtype, tol, groups)
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


# (shape, dims): C below the block, C above it, two trailing dims, a rank-3 last dim.
PATTERNS = {
    "last_small": ((7, 13), (-1,)),
    "last_large": ((3, 300), (-1,)),
    "last2": ((3, 5, 9), (-2, -1)),
    "rank3_last": ((2, 3, 40), (2,)),
}
VAR_OPS: dict[str, Callable[..., object]] = {
    "var": lambda x, d, c, k: torch.var(x, d, correction=c, keepdim=k),
    "std": lambda x, d, c, k: torch.std(x, d, correction=c, keepdim=k),
    "var_mean": lambda x, d, c, k: torch.var_mean(x, d, correction=c, keepdim=k),
    "std_mean": lambda x, d, c, k: torch.std_mean(x, d, correction=c, keepdim=k),
}
VAR_PARAMS = [
    pytest.param(name, corr, dtype, pattern, keep,
                 id=f"{name}-c{corr}-{str(dtype)[6:]}-{pattern}-{keep}")
    for name in VAR_OPS for corr in (0, 1, 2) for dtype in FLOATS for pattern in PATTERNS
    for keep in ((True, False) if corr == 1 else (False,))
]


def _tol(dtype: torch.dtype) -> tuple[float, float] | None:
    """float32/float64 reassociate the sums (a few ulps per element); halves round once."""
    return {f32: (1e-5, 1e-5), f64: (1e-12, 1e-12)}.get(dtype)


@pytest.mark.parametrize(("name", "corr", "dtype", "pattern", "keep"), VAR_PARAMS)
def test_variance(name: str, corr: int, dtype: torch.dtype, pattern: str, keep: bool,
                  interpret: None) -> None:
    shape, dims = PATTERNS[pattern]
    x = _make(shape, dtype, f"{name}{pattern}")
    fn = VAR_OPS[name]
    # var_mean is two sibling reductions of one input: merged into one kernel (std_mean's sqrt
    # of a keepdim=False var over trailing dims cannot join the var's group: var stays eager)
    _check(lambda x: fn(x, dims, corr, keep), (x,), dtype, _tol(dtype),
           groups=None if name == "std_mean" and not keep else 1)


def test_legacy_unbiased_overloads(interpret: None) -> None:
    x = _make((5, 17), f32, "unbiased")
    _check(lambda x: (x.var(-1, unbiased=False), x.std(-1, True, True)), (x,), f32, _tol(f32),
           groups=None)
    _check(lambda x: (x.var(), x.std(unbiased=False)), (x,), f32, _tol(f32), groups=None)


def test_large_mean_does_not_cancel(interpret: None) -> None:
    """Data of mean 1e4 and std 1: sum-of-squares would lose every digit in float32."""
    g = torch.Generator().manual_seed(7)
    x = (torch.randn(6, 4096, generator=g, dtype=f64) + 1e4).to(f32)
    fm = nvfuse.fuse(lambda x: x.var(-1), (x,))
    actual = fm(x).double()
    exact = x.double().var(-1)
    assert ((actual - exact).abs() / exact).max().item() < 1e-5


@pytest.mark.parametrize(("width", "schedule"), [
    (4096, "persistent"), (40_000, "staged"), (131_072, "cluster"), (40_000, "looped")])
@pytest.mark.parametrize("std", [1.0, 1e-2])
def test_large_mean_every_row_schedule(interpret: None, monkeypatch: pytest.MonkeyPatch,
                                       width: int, schedule: str, std: float) -> None:
    """Mean 1e4, std down to 1e-2 (ten float32 ulps): the row's two passes over registers
    (persistent), shared memory (staged whole, or over a cluster) and the one-pass Welford of
    a row read from global memory (no staging) all keep the variance to float32's precision
    of the data, and layer norm as close as eager's float32."""
    from nvfuse.schedule import reduction

    if schedule == "looped":
        monkeypatch.setattr(reduction, "SMEM_ROW_BYTES", 0)
    g = torch.Generator().manual_seed(width)
    x = (torch.randn(2, width, generator=g, dtype=f64) * std + 1e4).to(f32)
    fm = nvfuse.fuse(lambda t: (t.var(-1), F.layer_norm(t, (width,))), (x,))
    var, ln = fm(x)
    sig = fm.kernels[0].signature[1]
    assert (sig.persist > 0, sig.smem, sig.cluster > 1) == {
        "persistent": (True, False, False), "staged": (False, True, False),
        "cluster": (False, True, True), "looped": (False, False, False)}[schedule]
    exact = x.double().var(-1)
    assert ((var.double() - exact).abs() / exact).max().item() < 1e-5
    # layer norm centers on eager's mean, sum / n: no worse than eager's own float32
    ref = F.layer_norm(x.double(), (width,))
    eager = (F.layer_norm(x, (width,)).double() - ref).abs().max().item()
    assert (ln.double() - ref).abs().max().item() <= max(eager, 1e-3)


@pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")
def test_degenerate_rows_match_eager(interpret: None) -> None:
    """n <= correction divides by zero as eager does (nan for one element, inf above)."""
    for shape, corr in (((3, 1), 1), ((3, 2), 2), ((3, 2), 3)):
        x = _make(shape, f32, "degenerate")
        _check(lambda x, c=corr: torch.var(x, -1, correction=c), (x,), f32)


# -- layer norm -------------------------------------------------------------------------------
LN_PARAMS = [pytest.param(dtype, affine, id=f"{str(dtype)[6:]}-{affine}")
             for dtype in (f32, f16, bf16) for affine in ("none", "weight", "both")]


def _affine(affine: str, n: int, dtype: torch.dtype) -> tuple[torch.Tensor | None, ...]:
    w = _make((n,), dtype, "ln weight") if affine != "none" else None
    b = _make((n,), dtype, "ln bias") if affine == "both" else None
    return w, b


@pytest.mark.parametrize(("dtype", "affine"), LN_PARAMS)
def test_native_layer_norm_outputs(dtype: torch.dtype, affine: str, interpret: None) -> None:
    x = _make((6, 5, 24), dtype, "native ln")
    w, b = _affine(affine, 24, dtype)
    args = tuple(t for t in (x, w, b) if t is not None)

    def fn(*ts: torch.Tensor) -> tuple[torch.Tensor, ...]:
        it = iter(ts[1:])
        weight = next(it) if w is not None else None
        bias = next(it) if b is not None else None
        return tuple(torch.ops.aten.native_layer_norm(ts[0], [24], weight, bias, 1e-5))

    _check(fn, args, dtype)


@pytest.mark.parametrize(("dtype", "affine"), LN_PARAMS)
def test_layer_norm_two_dims(dtype: torch.dtype, affine: str, interpret: None) -> None:
    x = _make((4, 6, 10), dtype, "ln2")
    w = _make((6, 10), dtype, "ln2 w") if affine != "none" else None
    b = _make((6, 10), dtype, "ln2 b") if affine == "both" else None
    _check(lambda x: F.layer_norm(x, (6, 10), w, b), (x,), dtype)


@pytest.mark.parametrize("dtype", [f32, f16, bf16])
def test_gelu_layer_norm_of_residual_is_one_kernel(dtype: torch.dtype, interpret: None) -> None:
    x, r = _make((8, 96), dtype, "gln x"), _make((8, 96), dtype, "gln r")
    w, b = _make((96,), dtype, "gln w"), _make((96,), dtype, "gln b")
    _check(lambda x, r, w, b: F.gelu(F.layer_norm(x + r, (96,), w, b)), (x, r, w, b), dtype)


@pytest.mark.parametrize("dtype", [f32, f16, bf16])
def test_layer_norm_then_residual_is_one_kernel(dtype: torch.dtype, interpret: None) -> None:
    x, w = _make((8, 40), dtype, "lnr x"), _make((40,), dtype, "lnr w")
    _check(lambda x, w: F.layer_norm(x, (40,), w) + x, (x, w), dtype)


def test_layer_norm_module_reuses_the_kernel_across_rows(interpret: None) -> None:
    ln = torch.nn.LayerNorm(32)
    fm = nvfuse.fuse(ln, (_make((4, 32), f32, "m4"),))
    for rows in (4, 9):
        x = _make((rows, 32), f32, f"m{rows}")
        with torch.no_grad():
            compare(fm(x), ln(x), f32)
    stats = nvfuse.stats()  # an earlier test may have built the same signature already
    assert len(fm.fusion_groups) == 1 and stats["launches"] == 2 and stats["fallbacks"] == 0
    assert stats["compiles"] + stats["memory_hits"] == 2 and stats["compiles"] <= 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize(("dtype", "affine"), LN_PARAMS)
def test_torchscript_layer_norm_is_one_kernel(dtype: torch.dtype, affine: str,
                                              interpret: None) -> None:
    """TorchScript graphs hold aten::layer_norm whole: the op table lowers it directly."""
    x, r = _make((6, 48), dtype, "ts x"), _make((6, 48), dtype, "ts r")
    w, b = _affine(affine, 48, dtype)

    def fn(x: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return F.gelu(F.layer_norm(x + r, (48,), w, b))

    ts = torch.jit.trace(fn, (x, r))
    fm = nvfuse.fuse(ts, (x, r))
    nvfuse.reset_stats()
    compare(fm(x, r), fn(x, r), dtype)
    assert len(fm.fusion_groups) == 1 and nvfuse.stats()["launches"] == 1
    _generated.update((k.name, k.source) for k in fm.kernels)


@pytest.mark.parametrize("dtype", [f32, f16, bf16])
def test_rms_norm_is_one_kernel(dtype: torch.dtype, interpret: None) -> None:
    x, w = _make((8, 64), dtype, "rms x"), _make((64,), dtype, "rms w")
    _check(lambda x, w: F.rms_norm(x, (64,), w), (x, w), dtype)
    _check(lambda x, w: F.rms_norm(x, (64,), None, 1e-6) * w, (x, w), dtype)
    if hasattr(torch.ops.aten, "_fused_rms_norm"):
        _check(lambda x, w: tuple(torch.ops.aten._fused_rms_norm(x, [64], w, 1e-5)), (x, w),
               dtype)


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "welford")
