"""The layer norm and softmax backwards (nvfuse/frontend/norm_backward.py) end to end through
the interpreter (strict, outputs poisoned), against eager's aten ops called directly: every float
dtype, affine or not, output_mask combinations, 2-D and 3-D inputs normalized over one or two
trailing dims, softmax backwards over the last and a leading dim; grad_input is one kernel; every
generated kernel compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from cases import compare
from test_reductions import _make

import nvfuse
from nvfuse.dtypes import from_torch
from nvrtc_batch import compile_all
from nvfuse.runtime import executor

aten = torch.ops.aten
f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
FLOATS = (f32, f16, bf16, f64)
HALVES = (f16, bf16)
# (atol, rtol) against eager.  Softmax backwards of halves: eager (float32 inside, rounded once)
# sums in another order.
TOL = {f32: (1e-5, 1e-4), f16: (1e-2, 4e-3), bf16: (8e-2, 2e-2), f64: (1e-12, 1e-10)}
# Layer norm backward of halves is checked against eager's float64 result rounded once to eager's
# dtypes (nvfuse's contract: float32 inside, one rounding on store): eager's CPU kernel sums the
# leading dims with half-precision roundings along the way, errors of many units in the last
# place where the sum cancels.  One unit (and float32's own error) is the tolerance.
ROUNDED_ONCE_TOL = {f16: (1e-3, 2e-3), bf16: (8e-3, 1.6e-2)}

_generated: dict[str, str] = {}  # kernel name -> source, for the NVRTC test at the end


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
         kernels: int | None = None, reference: Callable[..., object] | None = None,
         rounded_once: bool = False) -> nvfuse.FusedModule:
    """fuse `fn`, run it once, compare every output (None where eager's is None) with eager's
    (or `reference`'s where eager's CPU kernel lacks the case; with `rounded_once`, halves
    against eager's float64 result rounded to eager's dtypes)."""
    expected = (reference or fn)(*inputs)
    tol = TOL[dtype]
    if rounded_once and dtype in HALVES:
        wide = fn(*(t.double() for t in inputs))
        expected = tuple(None if e is None else w.to(e.dtype)
                         for e, w in zip(expected, wide))  # type: ignore[arg-type]
        tol = ROUNDED_ONCE_TOL[dtype]
    fm = nvfuse.fuse(fn, inputs)
    nvfuse.reset_stats()
    actual = fm(*inputs)
    assert nvfuse.stats()["fallbacks"] == 0
    # every group ran as a kernel; independent ones may share a launch (horizontal)
    launches = nvfuse.stats()["launches"]
    report = nvfuse.explain(fn, *inputs)
    assert launches == sum(g.kernels - len(g.eager) for g in report.graphs) <= len(fm.fusion_groups)
    if kernels is not None:
        assert len(fm.fusion_groups) == kernels, [g.ops for g in fm.fusion_groups]
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert (a is None) == (e is None), (a, e)
        if e is not None:
            compare(a, e, dtype, tol)
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


def _layer_norm_case(shape: tuple[int, ...], normalized: list[int], dtype: torch.dtype,
                     weight: bool, bias: bool, wdtype: torch.dtype | None = None
                     ) -> tuple[torch.Tensor, ...]:
    """(g, x, mean, rstd, weight, bias) with eager's saved statistics."""
    x = _make(shape, dtype, f"ln x {shape}") + 0.5
    g = _make(shape, dtype, f"ln g {shape}")
    w = _make(tuple(normalized), wdtype or dtype, "ln w") if weight else None
    b = _make(tuple(normalized), wdtype or dtype, "ln b") if bias else None
    _, mean, rstd = aten.native_layer_norm(x, normalized, w, b, 1e-5)
    return g, x, mean, rstd, w, b


def _ln_backward(normalized: list[int], w: object, b: object, mask: list[bool]
                 ) -> Callable[..., object]:
    def fn(g: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
           *wb: torch.Tensor) -> object:
        weight = wb[0] if w is not None else None
        bias = wb[-1] if b is not None else None
        return aten.native_layer_norm_backward(g, x, normalized, mean, rstd, weight, bias, mask)
    return fn


LAYOUTS = {  # shape, normalized shape
    "2d": ((8, 64), [64]),
    "3d_last": ((4, 6, 40), [40]),
    "3d_last2": ((3, 5, 12), [5, 12]),
    "1d": ((33,), [33]),  # no leading dims: grad_weight / grad_bias are per element
}
AFFINE = {"weight_bias": (True, True), "weight": (True, False), "none": (False, False)}


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("affine", sorted(AFFINE))
def test_layer_norm_backward(dtype: torch.dtype, layout: str, affine: str) -> None:
    shape, normalized = LAYOUTS[layout]
    g, x, mean, rstd, w, b = _layer_norm_case(shape, normalized, dtype, *AFFINE[affine])
    # the mask autograd passes: a missing weight / bias gets no gradient (eager's CPU kernel
    # even fails on a 1-D input asked for the gradient of a missing weight)
    fn = _ln_backward(normalized, w, b, [True, w is not None, b is not None])
    wb = tuple(t for t in (w, b) if t is not None)
    _run(fn, (g, x, mean, rstd, *wb), dtype, rounded_once=True)


MASKS = [[True, False, False], [False, True, True], [False, True, False], [False, False, True],
         [True, True, False], [False, False, False]]


@pytest.mark.parametrize("mask", MASKS, ids=lambda m: "".join("1" if v else "0" for v in m))
def test_layer_norm_backward_output_mask(mask: list[bool]) -> None:
    g, x, mean, rstd, w, b = _layer_norm_case((4, 6, 40), [40], f32, True, True)
    fn = _ln_backward([40], w, b, mask)
    if not any(mask):  # nothing to compute: eager's (None, None, None), no kernel
        assert nvfuse.fuse(fn, (g, x, mean, rstd, w, b))(g, x, mean, rstd, w, b) == (None,) * 3
        return
    _run(fn, (g, x, mean, rstd, w, b), f32)


@pytest.mark.parametrize("dtype", FLOATS)
def test_layer_norm_grad_input_is_one_kernel(dtype: torch.dtype) -> None:
    g, x, mean, rstd, w, b = _layer_norm_case((6, 5, 48), [48], dtype, True, True)
    _run(_ln_backward([48], w, b, [True, False, False]), (g, x, mean, rstd, w, b), dtype,
         kernels=1, rounded_once=True)
    # all three: one row kernel (grad_input) and one column kernel for both parameter
    # gradients, which recomputes g * xhat from g, x and the saved statistics
    # (nvfuse/fusion/rematerialize.py) rather than reading float32 intermediates the row
    # kernel would write: the row group's only output is grad_input
    fm = _run(_ln_backward([48], w, b, [True, True, True]), (g, x, mean, rstd, w, b), dtype,
              rounded_once=True)
    rows = [gr for gr in fm.fusion_groups if "aten::mean" in gr.ops]
    rest = [gr for gr in fm.fusion_groups if "aten::mean" not in gr.ops]
    assert len(rows) == 1 and rows[0].ops.count("aten::mean") == 2
    assert len(rows[0].fusion_ir.outputs) == 1
    assert len(rest) == 1 and rest[0].ops.count("aten::sum") == 2, [gr.ops for gr in rest]
    # it reads g and x in their own dtype, and the two [N, 1] statistics
    read = sorted(str(i.dtype) for i in rest[0].fusion_ir.inputs)
    assert len(read) == 4 and read.count(str(from_torch(dtype))) >= 2, read


def test_layer_norm_backward_two_trailing_dims_is_one_kernel() -> None:
    g, x, mean, rstd, w, b = _layer_norm_case((3, 5, 12), [5, 12], f32, True, False)
    _run(_ln_backward([5, 12], w, b, [True, False, False]), (g, x, mean, rstd, w), f32,
         kernels=1)


@pytest.mark.parametrize("dtype", [f16, bf16])
def test_layer_norm_backward_mixed_weight_dtype(dtype: torch.dtype) -> None:
    # half activations with float32 parameters (autocast keeps them so): gradients of the
    # parameters in float32, of the input in the half type
    g, x, mean, rstd, w, b = _layer_norm_case((8, 64), [64], dtype, True, True, f32)
    try:
        aten.native_layer_norm_backward(g, x, [64], mean, rstd, w, b, [True] * 3)
    except RuntimeError as err:
        pytest.skip(f"eager refuses mixed dtypes here: {err}")
    _run(_ln_backward([64], w, b, [True] * 3), (g, x, mean, rstd, w, b), dtype,
         rounded_once=True)


# -- softmax / log_softmax backwards ------------------------------------------------------------
def _softmax_case(shape: tuple[int, ...], dim: int, dtype: torch.dtype, log: bool
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    x = _make(shape, dtype, f"sm x {shape}")
    y = torch.log_softmax(x, dim) if log else torch.softmax(x, dim)
    return _make(shape, dtype, f"sm g {shape}"), y


def _sm_backward(log: bool, dim: int, input_dtype: torch.dtype) -> Callable[..., object]:
    op = aten._log_softmax_backward_data if log else aten._softmax_backward_data
    return lambda g, y: op(g, y, dim, input_dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize(("shape", "dim"), [((7, 50), -1), ((3, 4, 33), 2), ((6, 9), 0),
                                            ((3, 4, 10), 1)])
def test_softmax_backward(dtype: torch.dtype, log: bool, shape: tuple[int, ...],
                          dim: int) -> None:
    g, y = _softmax_case(shape, dim, dtype, log)
    last = dim in (-1, len(shape) - 1)
    # over the last dim: one kernel; over a leading dim the sum is a column reduction, eager
    # for now, and the elementwise work on either side of it fuses
    _run(_sm_backward(log, dim, dtype), (g, y), dtype, kernels=1 if last else None)


@pytest.mark.parametrize("input_dtype", [f16, bf16])
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_backward_upcast_forward(input_dtype: torch.dtype, log: bool) -> None:
    # softmax(x_half, dtype=float32): the backward gets float32 g and y and returns the half
    # type (eager's CUDA kernel; its CPU kernel refuses the mix, so the reference is the float32
    # gradient rounded once)
    g, y = _softmax_case((5, 40), -1, f32, log)
    fm = _run(_sm_backward(log, -1, input_dtype), (g, y), input_dtype, kernels=1,
              reference=lambda g, y: _sm_backward(log, -1, f32)(g, y).to(input_dtype))
    assert fm(g, y).dtype == input_dtype


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_backward_zero_dim(log: bool) -> None:
    g, y = torch.tensor(1.5), torch.tensor(0.0 if log else 1.0)
    _run(_sm_backward(log, 0, f32), (g, y), f32)


def test_permuted_operands_give_eager_layout() -> None:
    # eager's backwards return contiguous gradients whatever the operands' layouts
    x = _make((8, 6, 16), f32, "perm x").permute(1, 0, 2)
    g = _make((8, 6, 16), f32, "perm g").permute(1, 0, 2)
    w, b = _make((16,), f32, "perm w"), _make((16,), f32, "perm b")
    _, mean, rstd = aten.native_layer_norm(x, [16], w, b, 1e-5)
    cases: list[tuple[Callable[..., object], tuple[torch.Tensor, ...]]] = [
        (_ln_backward([16], w, b, [True, False, False]), (g, x, mean, rstd, w, b)),
        (_sm_backward(False, -1, f32), (g, torch.softmax(x, -1))),
        (_sm_backward(True, -1, f32), (g, torch.log_softmax(x, -1))),
    ]
    for fn, inputs in cases:
        fm = _run(fn, inputs, f32, kernels=1)
        actual, expected = fm(*inputs), fn(*inputs)
        first = actual[0] if isinstance(actual, tuple) else actual
        want = expected[0] if isinstance(expected, tuple) else expected
        assert first.stride() == want.stride() and first.is_contiguous()


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "norm_backward")
