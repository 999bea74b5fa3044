"""Golden CUDA: the exact generated kernel text of representative fusions.

On a mismatch the failure shows a unified diff.  `NVFUSE_REGEN_GOLDEN=1 python -m pytest
tests/golden` rewrites the files under tests/golden/expected/; review the diff before committing.
Only the kernel itself is compared (the inlined helper headers are tested on their own).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

import nvfuse
from nvfuse.lower.verify import verify_kernel

EXPECTED = Path(__file__).parent / "expected"
REGEN = os.environ.get("NVFUSE_REGEN_GOLDEN") == "1"


def _r(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(sum(shape) + 7)
    return (torch.rand(shape, generator=g) * 4 - 2).to(dtype)


def _ints(*shape: int, dtype: torch.dtype = torch.int32) -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    return torch.randint(1, 100, shape, generator=g, dtype=dtype)


def _iou(*boxes: torch.Tensor) -> torch.Tensor:
    from nvfuse.demo import box_iou

    return box_iou(*boxes)


def _rotary(q: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Llama's apply_rotary_pos_emb for one tensor: q * cos + rotate_half(q) * sin."""
    half = q.shape[-1] // 2
    return q * cos + torch.cat((-q[..., half:], q[..., :half]), dim=-1) * sin


CASES: dict[str, tuple[Callable[..., Any], Callable[[], tuple]]] = {
    "add_contiguous": (torch.add, lambda: (_r(64, 32), _r(64, 32))),
    "add_rows_broadcast": (torch.add, lambda: (_r(64, 32), _r(32))),
    "add_cols_broadcast": (torch.add, lambda: (_r(64, 32), _r(64, 1))),
    "add_transposed": (lambda a, b: a.t() + b, lambda: (_r(32, 64), _r(64, 32))),
    "add_odd_inner": (torch.add, lambda: (_r(7, 33), _r(33))),
    "mul_scalar_half": (lambda x: x * 0.5, lambda: (_r(64, 32, dtype=torch.float16),)),
    "bias_gelu_bf16": (lambda x, b: F.gelu(x + b),
                       lambda: (_r(16, 64, dtype=torch.bfloat16), _r(64, dtype=torch.bfloat16))),
    "gelu_tanh_f16": (lambda x: F.gelu(x, approximate="tanh"),
                      lambda: (_r(128, dtype=torch.float16),)),
    "silu_f64": (F.silu, lambda: (_r(16, 16, dtype=torch.float64),)),
    "sigmoid_cast_out": (lambda x: torch.sigmoid(x).half(), lambda: (_r(64, 64),)),
    "where_compare": (lambda a, b: torch.where(a > b, a, b * 2), lambda: (_r(8, 16), _r(8, 16))),
    "clamp_tensor_bounds": (lambda x, lo, hi: torch.clamp(x, lo, hi),
                            lambda: (_r(16, 16), _r(16) - 1, _r(16) + 1)),
    "int_floor_div": (lambda a, b: torch.div(a, b, rounding_mode="floor"),
                      lambda: (_ints(64), _ints(64))),
    "int_remainder_i64": (torch.remainder,
                          lambda: (_ints(32, dtype=torch.int64), _ints(32, dtype=torch.int64))),
    "bool_logic": (lambda a, b: (a > 0) & ~(b < 0), lambda: (_r(16, 8), _r(16, 8))),
    "int_to_float_promotion": (lambda a, x: a * x + 1, lambda: (_ints(16, 8), _r(16, 8))),
    "zero_dim_operand": (lambda x, s: x * s, lambda: (_r(16, 16, dtype=torch.float16), _r())),
    "two_outputs": (lambda x: (torch.exp(x), torch.exp(x) * 2), lambda: (_r(64, 32),)),
    "broadcast_output": (lambda a, b: (a * 2, a * 2 + b), lambda: (_r(8, 1), _r(1, 16))),
    "box_iou": (_iou, lambda: tuple(_r(256) + 3 for _ in range(8))),
    "dropout_f16": (lambda x: F.dropout(x, 0.2, training=True),
                    lambda: (_r(64, 32, dtype=torch.float16),)),
    "nan_to_num_rsqrt": (lambda x: torch.nan_to_num(torch.rsqrt(x)), lambda: (_r(64),)),
    # row reductions
    "row_sum": (lambda x: x.sum(-1), lambda: (_r(64, 32),)),
    # a looped row staged whole in shared memory (two passes: max, then sum of exp); one too
    # long for a cluster of 8 (staged in part, the max and sum in one online pass); one split
    # over a cluster of 4 blocks (sm_90)
    "softmax_staged_long": (lambda x: torch.softmax(x, -1), lambda: (_r(2, 40000),)),
    "softmax_online_huge": (lambda x: torch.softmax(x, -1), lambda: (_r(1, 480_000),)),
    "softmax_cluster_w128k": (lambda x: torch.softmax(x, -1), lambda: (_r(1, 131_072),)),
    "softmax_scale_mask_f16": (lambda x, s, m: torch.softmax(x * s + m, -1),
                               lambda: (_r(4, 8, 32, dtype=torch.float16),
                                        _r(dtype=torch.float16), _r(8, 32, dtype=torch.float16))),
    "rmsnorm_bf16": (lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
                     lambda: (_r(16, 64, dtype=torch.bfloat16), _r(64, dtype=torch.bfloat16))),
    "center_two_dims_f64": (lambda x: x - x.mean((-2, -1), keepdim=True),
                            lambda: (_r(3, 4, 16, dtype=torch.float64),)),
    # Welford (var) reductions
    "var_correction2": (lambda x: torch.var(x, -1, correction=2), lambda: (_r(64, 32),)),
    "gelu_layer_norm_residual_f16": (
        lambda x, r, w, b: F.gelu(F.layer_norm(x + r, (64,), w, b)),
        lambda: (_r(16, 64, dtype=torch.float16), _r(16, 64, dtype=torch.float16),
                 _r(64, dtype=torch.float16), _r(64, dtype=torch.float16))),
    # (value, index) pair reductions
    "max_dim_prologue_f16": (lambda x, s: tuple(torch.max(x * s, -1)),
                             lambda: (_r(16, 64, dtype=torch.float16),
                                      _r(64, dtype=torch.float16))),
    # concatenations (index remaps: guarded piece loads, a where over the segments)
    "rotary_rotate_half_f16": (_rotary, lambda: (_r(2, 4, 8, 16, dtype=torch.float16),
                                                 _r(8, 16, dtype=torch.float16),
                                                 _r(8, 16, dtype=torch.float16))),
    "kv_append_cat_f16": (lambda k, v: torch.cat((k, v), 2),
                          lambda: (_r(2, 4, 8, 16, dtype=torch.float16),
                                   _r(2, 4, 1, 16, dtype=torch.float16))),
    # column reductions (kept dims innermost in memory)
    "column_sum_bias_grad": (lambda g: g.sum(0), lambda: (_r(64, 32),)),
    # horizontal: independent groups in one launch, blocks partitioned by a block offset table
    "horizontal_three_groups": (lambda a, b, c: (a.exp() * 2, b.float().sigmoid(), c.sum(-1)),
                                lambda: (_r(64, 32), _r(100, dtype=torch.float16),
                                         _r(16, 512))),
    # split reduction (one long row at the default threshold): partials, then combine
    "split_var_mean_all": (lambda x: torch.var_mean(x), lambda: (_r(1 << 16),)),
    # split column reduction (64 kept elements, one column block: 32 splits): a gradient and
    # its bias gradient, partials stored [splits, kept], combined by threads across the kept
    "split_column_bias_grad_bf16": (
        lambda dy, x: (lambda g: (g, g.sum(0)))(dy * torch.sigmoid(x)),
        lambda: (_r(2048, 64, dtype=torch.bfloat16), _r(2048, 64, dtype=torch.bfloat16))),
}


def _kernel_text(source: str) -> str:
    return source[source.index('extern "C"'):]


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name: str, interpret: None) -> None:
    fn, make = CASES[name]
    inputs = make()
    fm = nvfuse.fuse(fn, inputs)
    fm(*inputs)
    for kernel in fm.kernels:
        verify_kernel(kernel.kernel_ir)
    _sources.update((k.name, k.source) for k in fm.kernels)
    text = "\n".join(_kernel_text(k.source) for k in fm.kernels)
    path = EXPECTED / f"{name}.cu"
    if REGEN or not path.exists():
        if not REGEN:
            pytest.fail(f"no golden file {path}; run with NVFUSE_REGEN_GOLDEN=1 to create it")
        path.write_text(text)
        return
    expected = path.read_text()
    if text != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(True), text.splitlines(True), f"{name}.cu (golden)",
            f"{name}.cu (generated)"))
        pytest.fail(f"generated CUDA differs from the golden file:\n{diff}")


_sources: dict[str, str] = {}  # every golden kernel's complete unit, as generated


def test_each_golden_unit_compiles_alone() -> None:
    """Each unit as generated, with only the helper sections it inlines, compiles for sm_90: the
    trimming (nvfuse/codegen/templates.py) leaves out nothing a kernel needs."""
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="NVRTC (CuPy) is not installed")
    if not _sources:
        pytest.skip("run together with the golden tests (they generate the kernels)")
    from nvfuse.runtime.nvrtc import compile_to_cubin

    for name, source in sorted(_sources.items()):
        assert compile_to_cubin(source, "sm_90", f"{name}.cu")[:4] == b"\x7fELF"


def test_generation_is_deterministic(interpret: None) -> None:
    fn, make = CASES["bias_gelu_bf16"]
    sources = []
    for _ in range(2):
        from nvfuse.runtime import kernels

        kernels.clear()
        fm = nvfuse.fuse(fn, make())
        fm(*make())
        sources.append([k.source for k in fm.kernels])
    assert sources[0] == sources[1]
