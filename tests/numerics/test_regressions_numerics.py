"""Regressions found by a differential fuzzer against eager (issue 10), end to end through the
interpreter (strict, outputs poisoned): each case is the smallest program that was wrong, with
close variants (dtypes, reduction kinds, dims), on random inputs; every generated kernel is also
compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.runtime import executor

HALVES = (torch.float16, torch.bfloat16)
FLOATS = (torch.float32, torch.float64, *HALVES)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch, interpret: None) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _rand(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if dtype.is_floating_point:
        return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 + 0.25).to(dtype)
    return torch.randint(1, 50, shape, generator=g).to(dtype)


def _check(fn: Callable[..., object], *inputs: torch.Tensor, exact: bool = False,
           fused: bool = True) -> nvfuse.FusedModule:
    """`fn` fused equals eager on `inputs` (dtype, shape, values; exactly when `exact`), with
    no eager fallback; returns the fused module."""
    fm = nvfuse.fuse(fn, inputs)
    out, ref = fm(*inputs), fn(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    refs = ref if isinstance(ref, tuple) else (ref,)
    assert len(outs) == len(refs)
    for o, r in zip(outs, refs):
        assert o.dtype == r.dtype and o.shape == r.shape, (o.dtype, o.shape, r.dtype, r.shape)
        if exact:
            assert torch.equal(o.isnan(), r.isnan()), (o, r)
            assert torch.equal(o.nan_to_num(), r.nan_to_num()), (o, r)
        else:
            torch.testing.assert_close(o, r, equal_nan=True)
    assert nvfuse.stats()["fallbacks"] == 0
    if fused:
        assert fm.kernels, "nothing was fused"
    for kernel in fm.kernels:
        _generated[kernel.name] = kernel.source
    return fm


Program = tuple[Callable[..., object], tuple[tuple[int, ...], ...]]  # (fn, input shapes)


# -- 1. empty outputs next to non-empty ones --------------------------------------------------
EMPTY_OUTPUT_PROGRAMS: dict[str, Program] = {
    # a pointwise group: `a` does not depend on the empty `y`
    "pointwise": (lambda x, y: (x - 0.5 * x, y + (x - 0.5 * x)), ((8, 1), (0, 32, 8, 1))),
    # a row reduction next to an empty full output
    "row_sum": (lambda x, y: ((x * 2).sum(-1), y + x * 2), ((8, 5), (0, 8, 5))),
    # a full output next to an empty reduction
    "empty_reduction": (lambda x, y: (x * 2, (y + x).sum(-1)), ((8, 5), (0, 8, 5))),
    # the empty output is the one drawing random numbers: the rest takes no seed
    "random_output_empty": (lambda x, y: (x * 2 + 1, F.dropout(y, 0.5, training=True) + x),
                            ((8, 1), (0, 32, 8, 1))),
    # a full output next to a reduction over an empty dim (its rows are zeros)
    "empty_rows": (lambda x, y: (x * 2, (y * 3).sum(-1), y * 2), ((8, 5), (8, 0))),
}


@pytest.mark.parametrize("name", sorted(EMPTY_OUTPUT_PROGRAMS))
def test_empty_output_leaves_the_others_computed(name: str) -> None:
    fn, shapes = EMPTY_OUTPUT_PROGRAMS[name]
    _check(fn, *(_rand(*s, seed=i) for i, s in enumerate(shapes)))


# -- 2. Python scalars in half arithmetic stay in opmath ---------------------------------------
SCALAR_PROGRAMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "mul_large": lambda x: x * 1e5,
    "mul_int_large": lambda x: x * 100000,
    "rmul": lambda x: 0.1 * x,
    "div_small": lambda x: x / 1e-5,
    "floor_div": lambda x: torch.div(x, 0.1, rounding_mode="floor"),
    "trunc_div": lambda x: torch.div(x, 0.1, rounding_mode="trunc"),
    "floor_divide": lambda x: torch.floor_divide(x, 0.3),
    "add_narrows": lambda x: x + 0.1,  # add / sub narrow their scalar (TensorIterator)
    "sub_narrows": lambda x: x - 70000.0,
    "mul_bool": lambda x: x * True,
}


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("name", sorted(SCALAR_PROGRAMS))
def test_python_scalar_in_half_arithmetic(name: str, dtype: torch.dtype) -> None:
    x = torch.cat([torch.tensor([1.0, 1e-3, 3.0, -2.0, 0.7]), _rand(16, seed=3) * 100]).to(dtype)
    _check(SCALAR_PROGRAMS[name], x)


# -- 3. every half op's result is rounded for every consumer ---------------------------------
# (fn, exact): elementary arithmetic is correctly rounded in both, so chains match bit for bit
HALF_ROUNDING_PROGRAMS: dict[str, tuple[Callable[[torch.Tensor], object], bool]] = {
    "silu_of_direct": ((lambda x: (lambda v: v - F.silu(v))(torch.exp(x * 3))), False),
    "direct_and_upcast": ((lambda x: (lambda v: v.float() - v)(x * 3 + 1)), True),
    "arithmetic_chain": ((lambda x: ((x * 1.1) + 0.3) * 7 - x / 3), True),
    "two_consumers": ((lambda x: (lambda v: (v * v, v.double() + 1))(x * 1.7 + 0.1)), True),
    "row_sum_of_rounded": ((lambda x: (x * 1.3).sum(-1)), False),
    "row_max_of_rounded": ((lambda x: (x * 1.3 + 0.7).amax(-1)), True),
    "bias_gelu": ((lambda x: F.gelu(x + 0.3)), False),
    "layer_norm_of_rounded": ((lambda x: F.layer_norm(x * 3 + 1, (x.shape[-1],))), False),
    "softmax_of_rounded": ((lambda x: torch.softmax(x * 3 + 1, -1)), False),
}


@pytest.mark.parametrize("dtype", HALVES, ids=str)
@pytest.mark.parametrize("name", sorted(HALF_ROUNDING_PROGRAMS))
def test_half_intermediate_rounded_for_every_consumer(name: str, dtype: torch.dtype) -> None:
    fn, exact = HALF_ROUNDING_PROGRAMS[name]
    x = (torch.randn(6, 64, generator=torch.Generator().manual_seed(5)) * 2).to(dtype)
    _check(fn, x, exact=exact)


# -- 4. a Welford combine with an empty side adds nothing (no inf * 0) ------------------------
def _huge_rows(rows: int, n: int, dtype: torch.dtype) -> torch.Tensor:
    """Random rows, two of them holding +-huge values whose squared deviations overflow."""
    huge = 1e200 if dtype is torch.float64 else 1e20
    x = torch.randn(rows, n, generator=torch.Generator().manual_seed(n), dtype=dtype)
    x[0, 0], x[0, 1] = huge, -huge
    x[1, n // 2], x[1, n - 1] = huge, -huge
    return x


WELFORD_PROGRAMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "var": lambda x: torch.var(x, -1),
    "std": lambda x: torch.std(x, -1, correction=0),
    "var_mean": lambda x: torch.var_mean(x, -1)[0],
    "column_var": lambda x: torch.var(x.t(), 0),
}


# float64 data overflows float64 m2 on the CPU too (eager accumulates float32 in float64 on the
# CPU, in float32 on CUDA; float64 is float64 on both): warp rows, block rows, column, split
@pytest.mark.parametrize("n", [4, 40, 300, 3000], ids=str)
@pytest.mark.parametrize("name", sorted(WELFORD_PROGRAMS))
def test_welford_with_empty_partner_float64(name: str, n: int) -> None:
    _check(WELFORD_PROGRAMS[name], _huge_rows(3, n, torch.float64))


def test_welford_split_with_empty_partner() -> None:
    x = torch.randn(1 << 16, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    x[5], x[-3] = 1e200, -1e200
    fm = _check(lambda t: torch.var(t), x)  # (the mean of +-1e200 is rounding noise)
    assert len(fm.kernels) == 2  # the split schedule: partials, then Chan's combine


def test_welford_issue_examples() -> None:
    x = torch.tensor([[1e20, -1e20, 1.0, 2.0]])
    _check(lambda t: torch.var(t, -1), x)  # inf, not NaN
    _check(lambda t: F.layer_norm(t, (4,)), x)  # 0, not NaN


# -- 5. a concatenation of extent 1 along its dim broadcasts there ---------------------------
BROADCAST_CAT_PROGRAMS: dict[str, Program] = {
    "cat_empty_piece": (lambda a, y: torch.cat([a, a[:0]]) + y, ((1,), (4, 64))),
    "cat_leading_dim": (lambda a, y: torch.cat([a[:0], a * 2], 0) + y, ((1, 8), (3, 8))),
    "cat_other_dim_broadcast": (lambda a, y: torch.cat([a, a * 2], 1) + y, ((1, 4), (3, 8))),
    "pad_zero": (lambda a, y: F.pad(a, (0, 0)) * y, ((1,), (3, 5))),
    "pad_trimmed": (lambda a, y: F.pad(a * 3, (-1, -1)) + y, ((3,), (2, 6))),
    "pad_constant_only": (lambda a, y: F.pad(a[:0], (1, 0), value=2.5) + y, ((4,), (3, 8))),
    "stack_one": (lambda a, y: torch.stack([a - 1]) + y, ((8,), (5, 8))),
}


@pytest.mark.parametrize("name", sorted(BROADCAST_CAT_PROGRAMS))
def test_concatenation_of_extent_one_broadcasts(name: str) -> None:
    fn, shapes = BROADCAST_CAT_PROGRAMS[name]
    _check(fn, *(_rand(*s, seed=i) for i, s in enumerate(shapes)))


# -- 6. an expand feeding a reduction is kept (the peephole drops it only for pointwise users) -
EXPAND_REDUCTION_PROGRAMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sum_last": lambda x: x.expand(3, -1).sum(-1),
    "sum_expanded_dim": lambda x: x.expand(3, -1).sum(-2),
    "mean_two_dims": lambda x: x.expand(2, 3, -1).mean((0, 1)),
    "var_expanded_dim": lambda x: x.expand(4, -1).var(0),
    "amax_last": lambda x: x.expand(4, -1).amax(-1),
    "pointwise_then_sum": lambda x: (x.expand(4, -1) + 1).sum(0),
}


@pytest.mark.parametrize("name", sorted(EXPAND_REDUCTION_PROGRAMS))
def test_expand_feeding_a_reduction(name: str) -> None:
    _check(EXPAND_REDUCTION_PROGRAMS[name], _rand(3))


# -- 7. a shape-only constant gives a reduction's result its full shape ----------------------
SHAPE_CONSTANT_PROGRAMS: dict[str, Program] = {
    "zeros_like_plus_column_sum": (lambda x: torch.zeros_like(x) + x.sum(0), ((2, 7),)),
    "ones_like_times_row_sum": (lambda x: torch.ones_like(x) * x.sum(-1, keepdim=True),
                                ((3, 9),)),
    "full_like_plus_mean": (lambda x: torch.full_like(x, 2.0) + x.mean(-1, keepdim=True),
                            ((3, 5),)),
    "zeros_like_plus_amax": (lambda x: torch.zeros_like(x) + x.amax(-1, keepdim=True), ((4, 6),)),
    "ones_like_times_var": (lambda x: torch.ones_like(x) * x.var(-1, keepdim=True), ((3, 9),)),
    "two_outputs": (lambda x: (torch.zeros_like(x) + x.sum(0), x.sum(0) * 2), ((2, 7),)),
    "elementwise_after": (lambda x: (torch.zeros_like(x) + x.sum(-1, keepdim=True)) * 2,
                          ((3, 33),)),
    "chain_with_operand": (lambda x, y: (torch.zeros_like(x + y) + (x + y).sum(
        -1, keepdim=True)) * 2 + y, ((3, 33), (3, 1))),
    "smaller_constant": (lambda x: torch.zeros_like(x[0]) + x.sum(0), ((2, 7),)),
    "column_schedule": (lambda x: torch.zeros_like(x) + x.sum(0), ((600, 7),)),
    "split_schedule": (lambda x: torch.zeros_like(x) + x.sum(-1, keepdim=True), ((2, 70000),)),
    "cast_of_a_sum": (lambda x: (torch.zeros_like(x) + x.sum(0)).to(torch.float64), ((2, 7),)),
}


@pytest.mark.parametrize("name", sorted(SHAPE_CONSTANT_PROGRAMS))
def test_shape_only_constant_in_a_reduction_group(name: str) -> None:
    fn, shapes = SHAPE_CONSTANT_PROGRAMS[name]
    _check(fn, *(_rand(*s, seed=i) for i, s in enumerate(shapes)))


# Ops whose every operand is a row value or a literal in the IR (a constant folded from the
# input's dtype or a fill) still broadcast to their operands' full shape; only a reduction
# takes the reduced one (fuzzer seeds 40494, 40727).
FOLDED_OPERAND_PROGRAMS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], torch.dtype]] = {
    "isnan_int_against_its_amin": (lambda x: ((torch.isnan(x).amin([0, 1]) <= torch.isnan(x))
                                              * 3).bool(), torch.int32),
    "isnan_int_ge_its_amin": (lambda x: torch.ge(torch.isnan(x), torch.isnan(x).amin(
        1, keepdim=True)).int(), torch.int32),
    "layer_norm_of_a_fill": (lambda x: torch.layer_norm(x.clone().fill_(1.5), (5,)),
                             torch.float16),
    "layer_norm_of_a_full_like": (lambda x: torch.layer_norm(torch.full_like(x, 1.5), (2, 5)),
                                  torch.float16),
    "softmax_of_a_fill": (lambda x: torch.softmax(x.clone().fill_(2.0), -1)
                          + x.amax(-1, keepdim=True), torch.float32),
}


@pytest.mark.parametrize("name", sorted(FOLDED_OPERAND_PROGRAMS))
def test_op_of_folded_operands_keeps_the_broadcast_shape(name: str) -> None:
    fn, dtype = FOLDED_OPERAND_PROGRAMS[name]
    _check(fn, _rand(3, 2, 5, dtype=dtype))


# -- 12. constant reductions, empty rows, row-invariant outputs of empty rows ----------------
CONSTANT_REDUCTION_PROGRAMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "isnan_sum": lambda x: torch.isnan(x).sum(1),
    "isfinite_sum": lambda x: torch.isfinite(x).sum(1),
    "isfinite_sum_leading": lambda x: torch.isfinite(x).sum(0),
    "isfinite_prod": lambda x: torch.isfinite(x).prod(-1),
    "isfinite_mean": lambda x: torch.isfinite(x).float().mean(-1),
    "isfinite_amax": lambda x: torch.isfinite(x).amax(-1),
    "isfinite_argmax": lambda x: torch.isfinite(x).int().argmax(-1),
    "isinf_any": lambda x: torch.isinf(x).any(-1),
}


@pytest.mark.parametrize("shape", [(3, 4), (3, 5000), (600, 7)], ids=str)
@pytest.mark.parametrize("name", sorted(CONSTANT_REDUCTION_PROGRAMS))
def test_reduction_of_a_constant_operand(name: str, shape: tuple[int, ...]) -> None:
    _check(CONSTANT_REDUCTION_PROGRAMS[name], _rand(*shape, dtype=torch.int32))


EMPTY_ROW_PROGRAMS: dict[str, Callable[..., object]] = {
    "var": lambda x, y: torch.var(x, -1),
    "std_keepdim": lambda x, y: torch.std(x, -1, keepdim=True) + 1,
    "var_mean": lambda x, y: torch.var_mean(x, -1),
    "sum_plus_row_operand": lambda x, y: x.sum(-1, keepdim=True) + y,
    "var_times_row_operand": lambda x, y: x.var(-1, keepdim=True) * y,
    "amax_of_sum_with_broadcast": lambda x, y: (x.sum(-1) + y.sum(-1)),
    "mean_and_var": lambda x, y: (x.mean(-1), x.var(-1, keepdim=True) + y),
}


@pytest.mark.parametrize("shapes", [((3, 0), (3, 1)), ((40, 0), (1, 1)), ((2, 3, 0), (2, 3, 1))],
                         ids=str)
@pytest.mark.parametrize("name", sorted(EMPTY_ROW_PROGRAMS))
def test_reduction_over_empty_rows(name: str, shapes: tuple[tuple[int, ...], ...]) -> None:
    x, y = (_rand(*s, seed=i) for i, s in enumerate(shapes))
    _check(EMPTY_ROW_PROGRAMS[name], x, y)


def test_column_reduction_over_empty_dim_with_operand() -> None:
    _check(lambda x, y: x.sum(0) + y[0], _rand(0, 4), _rand(1, 4, seed=1))


# -- NVRTC ------------------------------------------------------------------------------------
COPY_OF_ROW_VALUES: dict[str, Callable[..., object]] = {
    # copy(self, src) is src broadcast to self's shape: a row value copied into a full tensor
    # was stored with the row value's shape, and a reduction of it read the wrong extent (a
    # broadcasting copy now runs eagerly; the reductions around it still fuse)
    "stacked": lambda a: torch.stack([a, a]).clone().copy_(torch.stack([a, a]).sum(0, True)),
    "sum_dim0": lambda x: x.clone().copy_(x.sum(0, keepdim=True)),
    "amax_last_then_scale": lambda x: x.clone().copy_(x.amax(-1, keepdim=True)) * 2,
    # a softmax over the broadcast row value: its result has the full shape
    "then_log_softmax": lambda x: torch.log_softmax(
        x.clone().copy_(x.sum(-1, keepdim=True)), -1),
    "stacked_then_softmax": lambda a: torch.softmax(
        torch.stack([a, a]).clone().copy_(torch.stack([a, a]).sum(0, True)), 0),
    # a layer norm over the broadcast mean (fuzzer seed 5201559)
    "mean_then_layer_norm": lambda a: F.layer_norm(a.clone().copy_(a.mean([0]).flatten()), (7,)),
}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("name", sorted(COPY_OF_ROW_VALUES))
def test_copy_of_a_row_value_has_self_shape(name: str, dtype: torch.dtype) -> None:
    shape = (3,) if name.startswith("stacked") else (7,) if "layer_norm" in name else (5, 6)
    _check(COPY_OF_ROW_VALUES[name], _rand(*shape, dtype=dtype, seed=7))


def test_constant_of_a_reductions_shape_over_empty_rows(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """`var(x).clone().fill_(1.5)` with x empty along the reduced dims: the constant has the
    reduction's shape and would be stored from the empty row loop (fuzzer seed 6302515); the
    group runs eagerly there, and fused elsewhere."""
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        v = torch.var(x, [0, 1, 2, 3], keepdim=True)
        return v.clone().fill_(1.5), v.clone().fill_(2.0).flatten() + 1

    from nvfuse import config

    empty = torch.zeros(1, 1, 0, 1, dtype=torch.bfloat16)
    fm = nvfuse.fuse(fn, (_rand(2, 3, 4, 5),))
    monkeypatch.delenv("NVFUSE_STRICT", raising=False)  # the empty call falls back
    config.reload()
    for x in (_rand(2, 3, 4, 5), empty):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = fn(x)
            actual = nvfuse.fuse(fn, (x,))(x) if x.numel() == 0 else fm(x)
        for a, e in zip(actual, expected):
            assert a.shape == e.shape and torch.equal(a, e), (a, e)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "regressions")
