"""Kernel IR verifier: generated kernels pass; each broken invariant is named."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import nvfuse
from nvfuse.dtypes import DType
from nvfuse.lower import kir
from nvfuse.lower.verify import KernelIRError, verify_kernel


def _kernel(interpret_fn=lambda x, b: torch.sigmoid(x + b) * 2) -> kir.Kernel:
    x, b = torch.randn(8, 64), torch.randn(64)
    fm = nvfuse.fuse(interpret_fn, (x, b))
    fm(x, b)
    return fm.kernels[0].kernel_ir


def test_generated_kernels_verify(interpret: None) -> None:
    verify_kernel(_kernel())
    verify_kernel(_kernel(lambda x, b: (x.t() + 1, b * 2)))


def _replace_body(k: kir.Kernel, body: tuple) -> kir.Kernel:
    return dataclasses.replace(k, body=body)


def test_use_before_declaration_is_named(interpret: None) -> None:
    k = _kernel()
    broken = _replace_body(k, (kir.Assign(kir.Var("ghost", DType.INT32),
                                          kir.Const(1, DType.INT32)),))
    with pytest.raises(KernelIRError, match="ghost used before"):
        verify_kernel(broken)


def test_store_to_an_input_is_named(interpret: None) -> None:
    k = _kernel()
    body = (kir.Declare("r", DType.FLOAT32, lanes=1),
            kir.Store("in0", DType.FLOAT32, kir.Const(0, DType.INT32), "r", 1, False))
    with pytest.raises(KernelIRError, match="store to input tensor in0"):
        verify_kernel(_replace_body(k, body))


def test_unknown_parameter_and_wrong_array_size(interpret: None) -> None:
    k = _kernel()
    with pytest.raises(KernelIRError, match="not a kernel scalar"):
        verify_kernel(_replace_body(k, (kir.Declare(
            "x", DType.INT32, init=kir.Param("nope", DType.INT32)),)))
    body = (kir.Declare("r", DType.FLOAT32, lanes=2),
            kir.Load("r", DType.FLOAT32, "in0", kir.Const(0, DType.INT32), 4, True))
    with pytest.raises(KernelIRError, match=r"float32\[2\], used as float32\[4\]"):
        verify_kernel(_replace_body(k, body))
