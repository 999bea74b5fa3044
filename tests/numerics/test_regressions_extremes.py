"""Regressions at extreme values found by the differential fuzzer (issue 10, second round), end
to end through the interpreter (strict, outputs poisoned), compared with eager on random inputs
that hold the extreme values among ordinary ones; every generated kernel is also compiled by
NVRTC for sm_80 and sm_90."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.runtime import executor

HALVES = (torch.float16, torch.bfloat16)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _rand(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    """Random non-zero values: floats in [0.25, 2.25), ints in [1, 50)."""
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 + 0.25).to(dtype)
    return torch.randint(1, 50, shape, generator=g).to(dtype)


def _check(fn: Callable[..., object], *inputs: torch.Tensor) -> nvfuse.FusedModule:
    """`fn` fused equals eager on `inputs` (dtype, shape, NaN and inf positions, values), with
    no eager fallback and at least one kernel; returns the fused module."""
    fm = nvfuse.fuse(fn, inputs)
    out, ref = fm(*inputs), fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.dtype == r.dtype and o.shape == r.shape, (o.dtype, o.shape, r.dtype, r.shape)
        torch.testing.assert_close(o, r, equal_nan=True)
    assert nvfuse.stats()["fallbacks"] == 0
    assert fm.kernels, "nothing was fused"
    for kernel in fm.kernels:
        _generated[kernel.name] = kernel.source
    return fm


# -- operands converted to a half common dtype before opmath ---------------------------------
# eager (TensorIterator, CPU and CUDA) converts every tensor operand to the common dtype first:
# an int64 -2**62 becomes -inf as a half, 2049 becomes 2048; torch's decompositions widened
# such operands straight to float32
MIXED_HALF_PROGRAMS: dict[str, Callable[..., object]] = {
    "addcmul": lambda h, i: torch.addcmul(h, i, h, value=0.5),
    "addcmul_int_self": lambda h, i: torch.addcmul(i, h, i, value=0.5),
    "addcmul_cancelling": lambda h, i: torch.addcmul(i, (h > 0).to(h.dtype), i - 1, value=-1),
    "addcdiv": lambda h, i: torch.addcdiv(h, i, h + 3),
    "xlogy": lambda h, i: torch.xlogy(i, h),
    "clamp_min_tensor": lambda h, i: torch.clamp(h * 1000, min=i),
    "max_other": lambda h, i: torch.max(h * 1000, i),
}


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("name", sorted(MIXED_HALF_PROGRAMS))
def test_integer_operand_converted_to_half_first(name: str, dtype: torch.dtype) -> None:
    h = _rand(4, 6, dtype=dtype)
    i = _rand(4, 6, dtype=torch.int64, seed=1) * 41  # values up to 2009: halves round them
    i[0, :3] = torch.tensor([-2**62, 2**62, 2049])
    i[1, :3] = torch.tensor([65521, -300007, 4097])
    i[2, :3] = torch.tensor([257, 2**40 + 2**32 + 1, -(2**30 + 1)])
    _check(MIXED_HALF_PROGRAMS[name], h, i)


@pytest.mark.parametrize("value", (0.5, 2.7, -1.5))
@pytest.mark.parametrize("dtype", (torch.uint8, torch.int32, torch.int64), ids=str)
def test_integer_addcmul_with_a_float_value(dtype: torch.dtype, value: float) -> None:
    """Eager reads the value in the integer dtype (2.7 -> 2); torch's reference refused to
    trace it, and the whole program went through the untraceable path (fuzzer seed 2000073:
    there a clone's layout differed from eager's)."""
    value = abs(value) if dtype is torch.uint8 else value  # eager refuses -1.5 for uint8
    x = _rand(3, 5, dtype=dtype)
    _check(lambda x: torch.addcmul(x, x, x + 1, value=value) * 3, x)
    p = _rand(2, 2, 2, 1, dtype=torch.float32, seed=1).permute(2, 1, 3, 0)
    _check(lambda p, x: (p.clone().masked_fill_(p > 1, 0.5),
                         torch.addcmul(x, x, x, value=value)), p, x)


@pytest.mark.parametrize("dtype", HALVES, ids=str)
def test_zero_dim_operands_converted_to_half_first(dtype: torch.dtype) -> None:
    h = _rand(5, 3, dtype=dtype)
    # -2**62 * -1e-30: -inf * -0 (NaN) as float16 operands, 4.6e-12 as float32 ones
    _check(lambda h, i, f: torch.addcmul(h, i, f), h, torch.tensor(-2**62),
           torch.tensor(-1e-30 if dtype is torch.float16 else -1e-300, dtype=torch.float64))
    _check(lambda h, i: torch.addcmul(h, h.half().to(dtype), i), h, torch.tensor(4097))


# -- vector norms over dims of size 1: |x|, never squared -----------------------------------
# eager's linalg_vector_norm (CPU and CUDA) returns |x| (ord 0: x != 0) when every reduced dim
# has size 1; squaring first overflows a 1e38 to inf and flushes a 1e-30 to 0 in float32
NORM_OVER_ONES: dict[str, Callable[..., object]] = {
    "ord2_dim": lambda x: torch.linalg.vector_norm(x, 2, 1),
    "ord2_keepdim_plus": lambda x: torch.linalg.vector_norm(x, 2, (1, 3), keepdim=True) + x,
    "ord3_dtype": lambda x: torch.linalg.vector_norm(x, 3, -1, dtype=torch.float64) * 2,
    "ord0": lambda x: torch.linalg.vector_norm(x, 0, 1) + 1,
    "ord_inf": lambda x: torch.linalg.vector_norm(x, float("inf"), 3) - 1,
    "tensor_norm": lambda x: x.norm(2, 1) * 3,
    "torch_norm_keepdim": lambda x: torch.norm(x, dim=(1, 3), keepdim=True) * x,
}


@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16, torch.float64), ids=str)
@pytest.mark.parametrize("name", sorted(NORM_OVER_ONES))
def test_vector_norm_over_size_one_dims(name: str, dtype: torch.dtype) -> None:
    x = _rand(3, 1, 5, 1, dtype=torch.float64) * (1 - 2 * (_rand(3, 1, 5, 1, seed=1) > 1.2))
    big, tiny = (1e300, 1e-300) if dtype is torch.float64 else (1e38, 1e-30)
    x[0, 0, :3, 0] = torch.tensor([big, -tiny, 3e-39 if dtype is not torch.float64 else 1e-310],
                                  dtype=torch.float64)
    _check(NORM_OVER_ONES[name], x.to(dtype))


def test_vector_norm_of_zero_dim_and_one_element() -> None:
    _check(lambda x: torch.linalg.vector_norm(x) + x, torch.tensor(-1e38))
    _check(lambda x: torch.linalg.vector_norm(x * 2) * x, torch.tensor([[1e-30]]))


# -- reductions over empty rows of expanded empty inputs (issue 10, item 12) ----------------
# an expanded empty input has stride 0 along its empty dim: read as a broadcast, its element
# was loaded once per row ahead of the (empty) row loop, from a tensor with no elements
EXPANDED_EMPTY_PROGRAMS: dict[str, Callable[..., object]] = {
    "sum": lambda x, y: x.sum(-1) + y.sum(-1),
    "sum_keepdim_plus": lambda x, y: x.sum(-1, keepdim=True) + y,
    "var_times": lambda x, y: torch.var(x, -1, keepdim=True) * y,
    "mean_and_var": lambda x, y: (x.mean(-1), x.var(-1, keepdim=True) + y),
    "isnan_sum": lambda x, y: torch.isnan(x).sum(-1),
    "int_sum": lambda x, y: x.int().sum(-1) + y.int().sum(-1),
    "std_dim0": lambda x, y: torch.std(x.transpose(0, -1), 0, correction=0) + 1,
    "sum_dim0_plus": lambda x, y: x.transpose(0, -1).sum(0) + y.sum(-1).transpose(0, -1),
}


def _expanded_empty(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    small = [1 if i % 2 == 0 else n for i, n in enumerate(shape)]
    return _rand(*small, seed=seed).expand(*shape)


@pytest.mark.parametrize("shapes", [((3, 5, 0), (3, 5, 1)), ((3, 5, 0), (1, 1, 1)),
                                    ((4, 0), (4, 1)), ((2, 3, 0), (2, 1, 1))], ids=str)
@pytest.mark.parametrize("name", sorted(EXPANDED_EMPTY_PROGRAMS))
def test_reduction_over_empty_rows_of_an_expanded_input(
        name: str, shapes: tuple[tuple[int, ...], ...]) -> None:
    x = _expanded_empty(shapes[0], 0)
    y = _expanded_empty(shapes[1], 1) if 0 in shapes[1] else _rand(*shapes[1], seed=1)
    assert 0 in x.stride()
    _check(EXPANDED_EMPTY_PROGRAMS[name], x, y)


def test_full_output_over_empty_rows_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """`x.sum() + y.sum()` with x (1, 0), y (1, 1): y's sum is a separate kernel; the group
    adding it to x's sum reads it along x's empty row and would never store the output's one
    element: that group runs eagerly (with eager's value), the other as a kernel."""
    from nvfuse import config

    monkeypatch.setenv("NVFUSE_STRICT", "0")
    config.reload()
    fn = lambda x, y: x.sum() + y.sum()
    for shapes in (((1, 0), (1, 1)), ((4, 0, 1), (1, 1, 1))):
        x, y = _rand(*shapes[0]), _rand(*shapes[1], seed=1)
        fm = nvfuse.fuse(fn, (x, y))
        with pytest.warns(RuntimeWarning, match="rows that are empty"):
            out = fm(x, y)
        torch.testing.assert_close(out, fn(x, y))
        assert fm.kernels


# -- an empty concatenation beside a non-empty one ---------------------------------------
# the group's non-empty outputs ran as a subset that kept the empty stack: its shape emptied
# the iteration space and the pad was never stored
EMPTY_BESIDE_CONCAT: dict[str, Callable[..., object]] = {
    "stack_and_pad": lambda a: (torch.stack([a * 2, a], 0), F.pad(a * 2, [0, 1], value=1.5)),
    "stack_and_bool_pad": lambda a: (torch.stack([torch.lt(a, a), a > 0], 0),
                                     F.pad(torch.lt(a, a), [0, 1], value=0.0)),
    "cat_and_pad_plus": lambda a: (torch.cat([a, a], 0), F.pad(a, [1, 2], value=-2.0) + 1),
}


@pytest.mark.parametrize("name", sorted(EMPTY_BESIDE_CONCAT))
def test_empty_concatenation_beside_a_non_empty_one(name: str) -> None:
    _check(EMPTY_BESIDE_CONCAT[name], _rand(3, 0))


# -- ops that kept programs from fusing (the fuzzer's top fallback reasons) -----------------
# any / all over dims, reductions of 0-dim tensors and a functionalized fill_ stayed eager
NOW_FUSED: dict[str, tuple[Callable[..., object], str]] = {
    "any_last": (lambda x: x.any(-1), "aten::any"),
    "all_first_of_compare": (lambda x: (x > 1).all(0), "aten::all"),
    "any_every_dim": (lambda x: torch.any(x - 1), "aten::any"),
    "all_dims_int": (lambda x: torch.all((x * 3).int(), dim=(0, 1)), "aten::all"),
    "any_empty_rows": (lambda x: (x[:, :0].any(-1), x[:, :0].all(-1), x + 1), "aten::any"),
    "sum_of_zero_dim": (lambda x: x[0, 0].sum() + x[1, 1] * 2, "aten::sum"),
    "amax_of_zero_dim": (lambda x: x.sum().amax() * x, "aten::amax"),
    "mean_prod_of_zero_dim": (lambda x: x[1, 2].float().mean() - x[3, 3].prod(0), "aten::mean"),
    "any_of_zero_dim": (lambda x: (x[0, 0].any(), (x[2, 3] > 1).all(0)), "aten::any"),
    "fill_of_clone": (lambda x: x.clone().fill_(1.5) * x, "aten::fill"),
}


@pytest.mark.parametrize("dtype", (torch.float32, torch.float16, torch.int64), ids=str)
@pytest.mark.parametrize("name", sorted(NOW_FUSED))
def test_now_fused_ops(name: str, dtype: torch.dtype) -> None:
    fn, op = NOW_FUSED[name]
    x = _rand(5, 7, dtype=dtype)
    if dtype.is_floating_point:
        x[0, :3] = torch.tensor([0.0, math.nan, -0.0])
    x[2] = 0
    x[2, 3] = 1
    fm = _check(fn, x)
    assert any(op in g.ops for g in fm.fusion_groups), [g.ops for g in fm.fusion_groups]


# -- where eager's CPU and device differ, nvfuse follows the device ------------------------
def _fused(fn: Callable[..., object], *inputs: torch.Tensor) -> torch.Tensor:
    fm = nvfuse.fuse(fn, inputs)
    out = fm(*inputs)
    assert nvfuse.stats()["fallbacks"] == 0 and fm.kernels
    for kernel in fm.kernels:
        _generated[kernel.name] = kernel.source
    return out  # type: ignore[return-value]


@pytest.mark.parametrize("dtype", (torch.float32, torch.float64), ids=str)
@pytest.mark.parametrize("op", ("fmod", "remainder"))
def test_fmod_with_an_overflowing_quotient_is_exact(op: str, dtype: torch.dtype) -> None:
    """CUDA's fmod is exact whatever the quotient; the CPU's vectorised one gives NaN once
    |a / b| leaves the float range (fuzzer: not generated)."""
    big = 1e38 if dtype is torch.float32 else 1e300
    a = _rand(64, dtype=torch.float64) * big
    b = _rand(64, dtype=torch.float64, seed=1) * (1 - 2 * (_rand(64, seed=2) > 1.2))
    b[:4] = torch.tensor([0.25, -0.1, 1e-40, 3e-39]) if dtype is torch.float32 else \
        torch.tensor([1e-10, -0.1, 1e-300, 3e-310], dtype=torch.float64)
    a, b = a.to(dtype), b.to(dtype)
    exact = torch.tensor(np.fmod(a.numpy(), b.numpy()))  # C fmod: exact
    if op == "remainder":  # torch: a - b * floor(a / b) by fmod, the sign of b
        exact = torch.where((exact != 0) & ((exact < 0) != (b < 0)), exact + b, exact)
    out = _fused(lambda a, b: getattr(torch, op)(a, b), a, b)
    torch.testing.assert_close(out, exact, rtol=0, atol=0)


def test_layer_norm_of_huge_float64_rows_follows_welford() -> None:
    """CUDA's float64 layer_norm takes its moments by Welford (empty partners skipped): a row
    of 1e300s has variance 0, a row spanning +-1e300 an infinite one (rstd 0); the CPU's
    chunked moments give NaN for both (fuzzer: not generated)."""
    x = _rand(4, 8, dtype=torch.float64) * (1 - 2 * (_rand(4, 8, seed=1) > 1.2))
    x[0] = 1e300
    x[1, :2] = torch.tensor([1e300, -1e300], dtype=torch.float64)
    x[2, 3] = -1e300
    var = torch.var(x, -1, keepdim=True, correction=0)  # the CPU's var: Welford
    expected = (x - x.mean(-1, keepdim=True)) * torch.rsqrt(var + 1e-5)
    out = _fused(lambda x: F.layer_norm(x, (8,)), x)
    torch.testing.assert_close(out, expected)
    assert out.isfinite().all()


def test_addcmul_multiplies_the_tensors_first() -> None:
    """CUDA's addcmul (pointwise_op_impl) is a + value * (t1 * t2): with t1 * t2 past the
    float32 range the result is infinite, where the CPU's (value * t1) * t2 stays finite
    (fuzzer: not generated)."""
    a = _rand(8)
    t1 = _rand(8, seed=1) + 4
    t2 = torch.full((8,), -1e38)
    out = _fused(lambda a, t1, t2: torch.addcmul(a, t1, t2, value=0.5), a, t1, t2)
    cuda_order = a.double() + 0.5 * (t1 * t2).double()  # t1 * t2 rounded (to -inf) first
    torch.testing.assert_close(out.double(), cuda_order)
    assert bool((out == -math.inf).all())


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "extremes")
