"""argmax / argmin / max.dim / min.dim / max() / min() end to end through the interpreter
(strict, outputs poisoned), against eager: every op x dtype x dim pattern x keepdim on inputs
full of ties (small integers) with NaN, +-inf and integer extremes in some rows; the fused
patterns that must be one kernel (a pointwise prologue and argmax; max.dim's values and indices;
softmax then max.dim), TorchScript's aten::max.dim, the empty-dim error, kernel reuse across
row counts, and every generated kernel compiled by NVRTC for sm_80 and sm_90."""

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
i32, i64, u8, b8 = torch.int32, torch.int64, torch.uint8, torch.bool
FLOATS = (f32, f16, bf16, f64)
INF, NAN = float("inf"), float("nan")

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def make(shape: tuple[int, ...], dtype: torch.dtype, seed: str) -> torch.Tensor:
    """Small integers (ties everywhere); rows of the last dim: row 0 all equal, row 1 two NaNs
    (or the integer extremes), row 2 all -inf, row 3 two +inf -- where the rows exist."""
    g = torch.Generator().manual_seed(zlib.crc32(seed.encode()))
    if dtype is b8:
        return torch.randint(0, 2, shape, generator=g).bool()
    if not shape:
        return torch.randint(1, 4, shape, generator=g).to(dtype)
    x = torch.randint(-3, 4, shape, generator=g, dtype=i64)
    x = x.to(f64) if dtype.is_floating_point else x
    rows = x.view(-1, shape[-1])
    n = rows.shape[1]
    rows[0] = 2
    if dtype.is_floating_point:
        for r, cols, value in ((1, (n // 2, n - 1), NAN), (2, range(n), -INF),
                               (3, (n // 3, n - 1), INF)):
            if r < rows.shape[0]:
                rows[r, list(cols)] = value
    elif rows.shape[0] > 1:
        info = torch.iinfo(dtype)
        rows[1, n // 2], rows[1, n - 1] = info.max, info.min
    return x.to(dtype)


def run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
        groups: int = 1, tol: tuple[float, float] | None = None) -> nvfuse.FusedModule:
    expected = fn(*inputs)
    fm = nvfuse.fuse(fn, inputs)
    nvfuse.reset_stats()
    actual = fm(*inputs)
    assert len(fm.fusion_groups) == groups, [g.ops for g in fm.fusion_groups]
    assert nvfuse.stats()["launches"] == groups
    assert nvfuse.stats()["fallbacks"] == 0
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol)
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


# (shape, dim): rows below one warp, rows over several warps, dim=None over 3 dims (one flat
# index), the last dim of a rank-3 tensor
PATTERNS = {
    "last_small": ((7, 13), -1),
    "last_large": ((4, 300), -1),
    "all": ((3, 5, 9), None),
    "rank3_last": ((6, 3, 40), 2),
}
INTS = (i32, i64, u8)
OPS: dict[str, tuple[Callable[..., object], tuple[torch.dtype, ...]]] = {
    "argmax": (lambda x, d, k: x.argmax(d, keepdim=k), (*FLOATS, *INTS)),
    "argmin": (lambda x, d, k: x.argmin(d, keepdim=k), (*FLOATS, *INTS)),
    "max_dim": (lambda x, d, k: tuple(torch.max(x, -1 if d is None else d, keepdim=k)),
                (*FLOATS, *INTS, b8)),
    "min_dim": (lambda x, d, k: tuple(torch.min(x, -1 if d is None else d, keepdim=k)),
                (*FLOATS, *INTS, b8)),
}
PARAMS = [
    pytest.param(op, dtype, pattern, keep, id=f"{op}-{str(dtype)[6:]}-{pattern}-{keep}")
    for op, (_, dtypes) in OPS.items() for dtype in dtypes for pattern in PATTERNS
    for keep in (True, False)
    if not (op.endswith("_dim") and pattern == "all")  # max.dim takes one dim
]


@pytest.mark.parametrize(("op", "dtype", "pattern", "keep"), PARAMS)
def test_arg_reduction(op: str, dtype: torch.dtype, pattern: str, keep: bool,
                       interpret: None) -> None:
    shape, dim = PATTERNS[pattern]
    fn, _ = OPS[op]
    fm = run(lambda x: fn(x, dim, keep), (make(shape, dtype, op + pattern),), dtype)
    ir = fm.fusion_groups[0].fusion_ir
    assert ir.reduce_ndim == (len(shape) if dim is None else 1)


@pytest.mark.parametrize("dtype", [f32, f16, i32, b8], ids=str)
def test_max_and_min_of_everything(dtype: torch.dtype, interpret: None) -> None:
    x = make((5, 6, 7), dtype, "all")
    run(lambda x: x.max(), (x,), dtype)
    run(lambda x: x.min(), (x,), dtype)


# -- patterns that must be one kernel ---------------------------------------------------------
FUSED: dict[str, tuple[Callable[..., object], Callable[[torch.dtype], tuple]]] = {
    "prologue_argmax": (lambda x, s, b: (x * s + b).argmax(-1),
                        lambda d: (make((9, 70), d, "px"), make((), d, "ps"),
                                   make((70,), d, "pb"))),
    "max_dim_values_and_indices": (lambda x: tuple(torch.max(x * 2, -1)),
                                   lambda d: (make((9, 170), d, "mx"),)),
    "softmax_max_dim": (lambda x: tuple(torch.max(x.softmax(-1), -1)),
                        lambda d: (make((5, 3, 33), d, "sx"),)),
    "argmin_epilogue": (lambda x: x.argmin(-1, keepdim=True) + 1,
                        lambda d: (make((6, 50), d, "ex"),)),
    "min_dim_keepdim_and_center": (lambda x: (x - torch.min(x, -1, keepdim=True)[0],
                                              torch.min(x, -1, keepdim=True)[1]),
                                   lambda d: (make((4, 45), d, "cx"),)),
}


@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_pattern_is_one_kernel(name: str, dtype: torch.dtype, interpret: None) -> None:
    fn, inputs = FUSED[name]
    fm = run(fn, inputs(dtype), dtype)
    assert len(fm.kernels) == 1


def test_max_dim_on_plain_input_is_one_kernel(interpret: None) -> None:
    """The two halves of max.dim share only their input: the partitioner pairs them."""
    x = make((8, 64), f32, "plain")
    fm = run(lambda x: torch.max(x, 1), (x,), f32)
    assert fm.fusion_groups[0].ops == ["aten::amax", "aten::argmax"]


def test_signed_zero_value_is_the_indexed_element(interpret: None) -> None:
    x = torch.tensor([[-0.0, 0.0, -1.0], [0.0, -0.0, 1.0]])
    fm = nvfuse.fuse(lambda x: (torch.max(x[:, :2], -1), torch.min(x[:, :2], -1)), (x,))
    (mv, mi), (nv, ni) = fm(x)
    assert mi.tolist() == [0, 0] and ni.tolist() == [0, 0]
    assert torch.signbit(mv).tolist() == [True, False]
    assert torch.signbit(nv).tolist() == [True, False]


@pytest.mark.parametrize("dtype", [f16, bf16], ids=str)
def test_prologue_ties_after_rounding(dtype: torch.dtype, interpret: None) -> None:
    """x + b differs in float32 but rounds to one half value: eager sees a tie (index 0)."""
    x = torch.ones(3, 40, dtype=dtype)
    b = torch.zeros(40, dtype=dtype)
    b[7] = 2.0 ** -12 if dtype is f16 else 2.0 ** -9  # representable, below half an ulp of 1
    run(lambda x, b: (x + b).argmax(-1), (x, b), dtype)
    run(lambda x, b: tuple(torch.max(x + b, -1)), (x, b), dtype)
    run(lambda x, b: tuple(torch.min(x - b, -1)), (x, b), dtype)


def test_torchscript_max_dim_is_one_kernel(interpret: None) -> None:
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, indices = torch.max(x * 2, -1)
        return values, indices

    x = make((6, 40), f32, "ts")
    fm = nvfuse.fuse(torch.jit.trace(fn, (x,)))
    for a, e in zip(fm(x), fn(x)):
        compare(a, e, f32)
    assert [g.ops for g in fm.fusion_groups] == [["aten::mul", "aten::amax", "aten::argmax"]]
    nvfuse.reset_stats()
    y = make((11, 40), f32, "ts2")
    for a, e in zip(fm(y), fn(y)):
        compare(a, e, f32)
    assert nvfuse.stats()["compiles"] == 0 and nvfuse.stats()["fallbacks"] == 0
    _generated.update((k.name, k.source) for k in fm.kernels)


def test_new_row_count_reuses_the_kernel(interpret: None) -> None:
    run(lambda x: x.argmax(-1), (make((4, 100), f32, "r4"),), f32)
    for rows in (9, 33):
        run(lambda x: x.argmax(-1), (make((rows, 100), f32, f"r{rows}"),), f32)
        assert nvfuse.stats()["compiles"] == 0


def test_argmax_over_an_empty_dim_raises_as_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")  # not strict: the group falls back to eager
    nvfuse.config.reload()
    x = torch.randn(3, 4)
    fm = nvfuse.fuse(lambda x: (x * 2).argmax(-1), (x,))
    fm(x)
    (group,) = fm.fusion_groups  # called directly: the frontends already fail on such shapes
    with pytest.raises(IndexError, match="non-zero size"), pytest.warns(RuntimeWarning):
        group(torch.empty(3, 0))


def test_empty_rows_give_empty_results(interpret: None) -> None:
    x = torch.empty(0, 5)
    fm = nvfuse.fuse(lambda x: torch.max(x, -1), (x,))
    values, indices = fm(x)
    assert values.shape == (0,) and indices.shape == (0,) and indices.dtype == i64


# -- NVRTC ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "argreduce")
