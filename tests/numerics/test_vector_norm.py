"""Vector norms end to end through the interpreter (strict, outputs poisoned), against eager:
linalg_vector_norm / torch.norm / Tensor.norm with ord 2, 1, inf, -inf, 0 and general p, every
float dtype, the last dim, two trailing dims and every dim, keepdim, the dtype= argument, NaN /
inf / zero inputs, `x / x.norm(dim=-1, keepdim=True)` as one kernel, the spellings TorchScript
sees, eager's error for the inf norm of an empty dim, and NVRTC for sm_80 and sm_90."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable

import pytest
import torch
from cases import compare

import nvfuse
from nvrtc_batch import compile_all
from nvfuse.runtime import executor

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
FLOATS = (f32, f16, bf16, f64)
INF, NAN = math.inf, math.nan
EPS = {f32: 1.2e-7, f64: 2.3e-16, f16: 1e-3, bf16: 8e-3}

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def make(shape: tuple[int, ...], dtype: torch.dtype, seed: str, specials: bool = False
         ) -> torch.Tensor:
    """Random normals with exact zeros mixed in; with `specials`, a NaN in row 1, an inf in
    row 2 and a -inf in row 3 of the last dim."""
    g = torch.Generator().manual_seed(zlib.crc32(seed.encode()))
    x = torch.randn(shape, generator=g, dtype=f64) * 2
    x[torch.rand(shape, generator=g) < 0.1] = 0.0
    if specials:
        rows = x.view(-1, shape[-1])
        for r, value in ((1, NAN), (2, INF), (3, -INF)):
            if r < rows.shape[0]:
                rows[r, shape[-1] // 2] = value
    return x.to(dtype)


def tol(dtype: torch.dtype, n: int) -> tuple[float, float]:
    """Reassociated sums differ from eager's order by about n ulps (the result dtype's)."""
    eps = EPS[dtype]
    return (4 * n * eps + 1e-6, 4 * n * eps + 1e-5)


def run(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
        n: int, groups: int = 1) -> nvfuse.FusedModule:
    expected = fn(*inputs)
    fm = nvfuse.fuse(fn, inputs)
    nvfuse.reset_stats()
    actual = fm(*inputs)
    assert len(fm.fusion_groups) == groups, [g.ops for g in fm.fusion_groups]
    assert nvfuse.stats()["launches"] == groups
    assert nvfuse.stats()["fallbacks"] == 0
    if not isinstance(expected, tuple):
        expected, actual = (expected,), (actual,)
    for a, e in zip(actual, expected):
        compare(a, e, dtype, tol(dtype, n))
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


PATTERNS = {  # (shape, dim)
    "last_small": ((7, 13), -1),
    "last_large": ((4, 300), -1),
    "last2": ((3, 5, 9), (-2, -1)),
    "all": ((3, 4, 5), None),
}
ORDS = (2, 1, INF, -INF, 0, 3.0, 0.5)


@pytest.mark.parametrize("keep", [True, False])
@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("ord_", ORDS, ids=str)
def test_vector_norm(ord_: float, dtype: torch.dtype, pattern: str, keep: bool,
                     interpret: None) -> None:
    shape, dim = PATTERNS[pattern]
    x = make(shape, dtype, f"{ord_}{pattern}", specials=pattern != "all")
    n = math.prod(shape[-2:] if pattern == "last2" else shape if dim is None else shape[-1:])
    fm = run(lambda x: torch.linalg.vector_norm(x, ord_, dim=dim, keepdim=keep), (x,), dtype, n)
    assert fm.fusion_groups[0].ops == ["aten::linalg_vector_norm"]


SPELLINGS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tensor_norm": lambda x: x.norm(dim=-1),
    "torch_norm_p1": lambda x: torch.norm(x, p=1, dim=-1, keepdim=True),
    "torch_norm_all": lambda x: torch.norm(x),
    "linalg_norm": lambda x: torch.linalg.norm(x, dim=-1),
    "fro": lambda x: torch.norm(x, p="fro", dim=(-2, -1)),
    "dtype_argument": lambda x: torch.linalg.vector_norm(x, dim=-1, dtype=f32),
}


@pytest.mark.parametrize("dtype", [f32, f16, bf16], ids=str)
@pytest.mark.parametrize("name", sorted(SPELLINGS))
def test_spellings(name: str, dtype: torch.dtype, interpret: None) -> None:
    x = make((4, 6, 50), dtype, name)
    run(SPELLINGS[name], (x,), dtype, 300)


FUSED: dict[str, Callable[..., torch.Tensor]] = {
    "normalize": lambda x: x / x.norm(dim=-1, keepdim=True),
    "normalize_eps": lambda x: x / (torch.linalg.vector_norm(x, dim=-1, keepdim=True) + 1e-6),
    "prologue_max_norm": lambda x: torch.linalg.vector_norm(x * 3 - 1, INF, dim=-1),
    "count_nonzero_relu": lambda x: torch.linalg.vector_norm(torch.relu(x), 0, dim=-1),
}


@pytest.mark.parametrize("dtype", [f32, f16, bf16, f64], ids=str)
@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_pattern_is_one_kernel(name: str, dtype: torch.dtype, interpret: None) -> None:
    x = make((9, 130), dtype, name)
    fm = run(FUSED[name], (x,), dtype, 130)
    assert len(fm.kernels) == 1 and fm.fusion_groups[0].fusion_ir.reduce_ndim == 1


def test_torchscript_norm(interpret: None) -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True)

    x = make((5, 40), f32, "ts")
    fm = nvfuse.fuse(torch.jit.trace(fn, (x,)))
    compare(fm(x), fn(x), f32, tol(f32, 40))
    assert [g.ops for g in fm.fusion_groups] == [["aten::linalg_vector_norm", "aten::div"]]
    assert nvfuse.stats()["fallbacks"] == 0
    _generated.update((k.name, k.source) for k in fm.kernels)


@torch.jit.script
def _scripted_norm(x: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.norm(x, 3.0, [1], True) * 2  # aten::norm.ScalarOpt_dim


def test_torchscript_norm_overload(interpret: None) -> None:
    x = make((4, 30), f32, "tsn")
    fm = nvfuse.fuse(_scripted_norm)
    compare(fm(x), _scripted_norm(x), f32, tol(f32, 30))
    assert [g.ops for g in fm.fusion_groups] == [["aten::norm", "aten::mul"]]
    _generated.update((k.name, k.source) for k in fm.kernels)


def test_overflow_is_eager_s(interpret: None) -> None:
    x = torch.full((2, 8), 1e20)  # x * x overflows float32, as in eager (no rescaling)
    run(lambda x: torch.linalg.vector_norm(x, dim=-1), (x,), f32, 8)


def test_negative_ord_stays_eager(interpret: None) -> None:
    """Eager raises for a negative ord over an empty dim, which a fused sum could not tell."""
    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(x, -1.5, dim=-1, keepdim=True) * 2

    x = make((3, 7), f32, "neg")
    fm = nvfuse.fuse(fn, (x,))
    compare(fm(x), fn(x), f32)
    assert fm.fusion_groups  # the multiply fuses, the norm does not
    assert all("aten::linalg_vector_norm" not in g.ops for g in fm.fusion_groups)


def test_inf_norm_of_an_empty_dim_raises_as_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")  # not strict: the group falls back to eager
    nvfuse.config.reload()
    x = torch.randn(3, 4)
    fm = nvfuse.fuse(lambda x: torch.linalg.vector_norm(x, INF, dim=-1, keepdim=True) * 2,
                     (x,))
    fm(x)
    (group,) = fm.fusion_groups
    with pytest.raises(RuntimeError, match="empty"), pytest.warns(RuntimeWarning):
        group(torch.empty(3, 0))
    fm2 = nvfuse.fuse(lambda x: torch.linalg.vector_norm(x, dim=-1, keepdim=True) * 2, (x,))
    fm2(x)
    (group2,) = fm2.fusion_groups
    assert group2(torch.empty(3, 0))[0].tolist() == [[0.0], [0.0], [0.0]]  # a sum: eager's 0


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_every_generated_kernel_compiles(arch: str) -> None:
    if not _generated:
        pytest.skip("run together with the tests above (they generate the kernels)")
    compile_all(_generated, arch, "vector_norm")
