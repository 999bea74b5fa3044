"""Decompositions of the multi-output normalization ops into single-output ops the op table
lowers (the partitioner fuses single-tensor results): aten op -> Python function of tensors
returning eager's tuple, traced by make_fx (nvfuse/frontend/fx.py adds them to its table).

- var_mean / std_mean (any overload) -> (var or std, mean) over the same dims;
- native_layer_norm(x, normalized_shape, weight, bias, eps) -> (y, mean, rstd): statistics over
  the trailing normalized dims in float32 for float16/bfloat16 (float64 for float64), rstd =
  rsqrt(var(correction=0) + eps), y = (x - mean) * rstd [* weight] [+ bias] rounded once to
  x's dtype.  mean and rstd keep the normalized dims as size 1 and have eager's dtype for the
  device: float32 on CUDA for half inputs, x's dtype on the CPU (eager's CPU kernel).
- rms_norm / _fused_rms_norm(x, normalized_shape, weight, eps) -> y (and rstd, float32 for
  halves, normalized dims kept as size 1): rstd = rsqrt(mean(x^2) + eps) in float32 for halves,
  eps defaulting to the compute dtype's machine epsilon, y = x * rstd [* weight] in x's dtype
  (where the op reaches the tracer whole: on the CPU rms_norm's C++ composite decomposes first,
  and fx.py's `_functional_temporaries` makes its in-place eps add fusible).
- linalg_vector_norm / norm.Scalar*(x, ord, dim, keepdim, dtype) where every reduced dim has
  size 1 (a 0-dim x, or dim None over a one-element x) -> |x| (ord 0: x != 0) in the result
  dtype, the reduced dims dropped unless keepdim: eager's own shortcut for that case
  (linalg_vector_norm's `is_reduce_over_1D_vector`, CPU and CUDA alike), which never squares
  x (a 1e38 stays finite, a 1e-30 nonzero); any other vector norm stays whole.
- max.dim / min.dim(x, dim, keepdim) -> (amax(x, [dim], keepdim), argmax / argmin(x, dim,
  keepdim)): one kernel computes both from one (value, index) pair reduction, the value being
  the indexed element's (nvfuse/lower/argreduce.py).  Eager refuses argmax of bools, so a bool
  x is indexed through a uint8 copy (same order, same indices).
All of it becomes one row-reduction kernel: a Welford pass (var), a sum pass (mean) and the
output pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from nvfuse.frontend.batch_norm import batch_norm_decompositions

aten = torch.ops.aten


def _dims(x: torch.Tensor, dim: Any) -> list[int]:
    if dim is None:
        return list(range(x.dim()))
    return [dim] if isinstance(dim, int) else list(dim)


def _correction(correction: Any, unbiased: Any) -> float:
    if correction is not None:
        return float(correction)
    return 1.0 if unbiased is None or unbiased else 0.0


def _var_mean_fn(root: bool) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    def decomposed(x: torch.Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False,
                   *, correction: Any = None) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(dim, bool):  # var_mean.default(self, unbiased)
            dim, unbiased = None, dim
        dims = _dims(x, dim)
        fix = _correction(correction, unbiased)
        var = aten.var.correction(x, dims, correction=fix, keepdim=keepdim)
        mean = aten.mean.dim(x, dims, keepdim)
        return (aten.sqrt.default(var) if root else var), mean
    return decomposed


def native_layer_norm(x: torch.Tensor, normalized_shape: list[int], weight: Any, bias: Any,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """See the module docstring."""
    dims = list(range(x.dim() - len(normalized_shape), x.dim()))
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    xf = x.to(compute)
    var = aten.var.correction(xf, dims, correction=0, keepdim=True)
    mean = aten.mean.dim(xf, dims, True)
    rstd = aten.rsqrt.default(var + eps)
    y = (xf - mean) * rstd
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    stats = compute if x.device.type == "cuda" else x.dtype
    return y.to(x.dtype), mean.to(stats), rstd.to(stats)


def _rms(x: torch.Tensor, normalized_shape: list[int], weight: Any, eps: Any
         ) -> tuple[torch.Tensor, torch.Tensor]:
    dims = list(range(x.dim() - len(normalized_shape), x.dim()))
    compute = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    xf = x.to(compute)
    eps = torch.finfo(compute).eps if eps is None else eps
    rstd = aten.rsqrt.default(aten.mean.dim(xf * xf, dims, True) + eps)
    y = xf * rstd
    if weight is not None:
        y = y * weight
    return y.to(x.dtype), rstd


def rms_norm(x: torch.Tensor, normalized_shape: list[int], weight: Any = None,
             eps: Any = None) -> torch.Tensor:
    """See the module docstring."""
    return _rms(x, normalized_shape, weight, eps)[0]


def fused_rms_norm(x: torch.Tensor, normalized_shape: list[int], weight: Any,
                   eps: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """See the module docstring."""
    return _rms(x, normalized_shape, weight, eps)


def _norm_over_ones(x: torch.Tensor, ord: Any, dim: Any, keepdim: bool, dtype: Any) -> Any:
    """See the module docstring (NotImplemented: the norm stays whole)."""
    if not x.is_floating_point():
        return NotImplemented  # eager raises for integer inputs; complex stays whole
    dims = list(range(x.dim())) if dim is None or (not isinstance(dim, int) and not dim) \
        else [dim] if isinstance(dim, int) else list(dim)
    dims = [d % x.dim() for d in dims] if x.dim() else []
    if any(x.shape[d] != 1 for d in dims):
        return NotImplemented
    y = x if dtype is None else aten._to_copy.default(x, dtype=dtype)
    ord = 2.0 if ord is None else ord
    if ord == 0:
        r = aten._to_copy.default(aten.ne.Scalar(y, 0), dtype=y.dtype)
    else:
        r = aten.abs.default(y)
    r = r if keepdim or not dims else aten.squeeze.dims(r, dims)
    return aten.clone.default(r, memory_format=torch.contiguous_format)


def _vector_norm(x: torch.Tensor, ord: Any = 2, dim: Any = None, keepdim: bool = False, *,
                 dtype: Any = None) -> Any:
    return _norm_over_ones(x, ord, dim, keepdim, dtype)


def _norm_dim(x: torch.Tensor, p: Any, dim: Any, keepdim: bool = False, *,
              dtype: Any = None) -> Any:
    return _norm_over_ones(x, p, dim, keepdim, dtype)


def _norm_all(x: torch.Tensor, p: Any = 2, *, dtype: Any = None) -> Any:
    return _norm_over_ones(x, p, None, False, dtype)


def vector_norm_ops() -> dict[Any, Callable[..., Any]]:
    """The vector-norm overloads this torch has -> their size-1 shortcut."""
    table: dict[Any, Callable[..., Any]] = {aten.linalg_vector_norm.default: _vector_norm}
    for overload, fn in (("ScalarOpt_dim", _norm_dim), ("ScalarOpt_dim_dtype", _norm_dim),
                         ("Scalar", _norm_all), ("ScalarOpt_dtype", _norm_all)):
        if hasattr(aten.norm, overload):
            table[getattr(aten.norm, overload)] = fn
    return table


def _value_and_index_fn(values: Any, indices: Any
                        ) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    def decomposed(x: torch.Tensor, dim: int, keepdim: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        keyed = x.to(torch.uint8) if x.dtype == torch.bool else x
        return values(x, [dim], keepdim), indices(keyed, dim, keepdim)
    return decomposed


def value_and_index_ops() -> dict[Any, tuple[Any, Any]]:
    """max.dim / min.dim -> the (values op, indices op) pair they decompose into."""
    return {aten.max.dim: (aten.amax.default, aten.argmax.default),
            aten.min.dim: (aten.amin.default, aten.argmin.default)}


def norm_decompositions() -> dict[Any, Callable[..., Any]]:
    """aten overload -> decomposition, for the overloads this torch has."""
    table: dict[Any, Callable[..., Any]] = {}
    for name, root in (("var_mean", False), ("std_mean", True)):
        packet = getattr(aten, name)
        for overload in ("correction", "dim", "default"):
            if hasattr(packet, overload):
                table[getattr(packet, overload)] = _var_mean_fn(root)
    for target, (values, indices) in value_and_index_ops().items():
        table[target] = _value_and_index_fn(values, indices)
    table[aten.native_layer_norm.default] = native_layer_norm
    table.update(vector_norm_ops())
    table[aten.rms_norm.default] = rms_norm
    if hasattr(aten, "_fused_rms_norm"):
        table[aten._fused_rms_norm.default] = fused_rms_norm
    table.update(batch_norm_decompositions())  # training batch norm, group norm
    return table
