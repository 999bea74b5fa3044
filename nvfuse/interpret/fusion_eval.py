"""Reference evaluator of the fusion IR: the semantics every lowering must reproduce.

Input: a `FusionIR` and one numpy array per input, each in its dtype's storage type
(`DType.np_storage`; bfloat16 as uint16 bit patterns).  Output: one C-contiguous numpy array
per output, in the output dtype's storage type, with the broadcast shape of the inputs named
by the output's `shape_from` (shape `()` when it names none).

Nodes are evaluated in order with numpy broadcasting; prims run through `prims_np`, so the
evaluator and the kernel-IR machine share one definition of every operation.  In a reduction
fusion (reduce_ndim k > 0) a REDUCE_* node combines its operand, broadcast to the iteration
space, over the reduced axes (`FusionIR.reduce_axes`, kept with size 1; argmax / argmin index
them flattened), ROW_NUMEL is the product of those sizes, and outputs take the shapes
`nvfuse.fusion.shapes.output_shapes` gives them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nvfuse.dtypes import DType
from nvfuse.fusion.ir import FusionIR, Node, OutputShape, Scalar, reduced_positions
from nvfuse.fusion.prims import REDUCTIONS, Prim
from nvfuse.interpret.prims_np import apply_prim, cast

_NUMPY_REDUCE: dict[Prim, Any] = {
    Prim.REDUCE_SUM: np.sum, Prim.REDUCE_PROD: np.prod, Prim.REDUCE_MAX: np.max,
    Prim.REDUCE_MIN: np.min,
    Prim.REDUCE_M2: lambda a, axis, keepdims: np.sum(
        (a - np.mean(a, axis=axis, keepdims=True)) ** 2, axis=axis, keepdims=keepdims),
    Prim.REDUCE_ARGMAX: lambda a, axis, keepdims: _arg(np.argmax, a, axis),
    Prim.REDUCE_ARGMIN: lambda a, axis, keepdims: _arg(np.argmin, a, axis)}


def _arg(fn: Any, a: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """argmax / argmin over the trailing `axes` flattened (row-major), kept with size 1.  numpy's
    rule is torch's: the first NaN wins, ties give the first index."""
    k = len(axes)
    rows = a.reshape(*a.shape[:a.ndim - k], -1)
    return fn(rows, axis=-1).reshape(*a.shape[:a.ndim - k], *[1] * k)


def literal(value: Scalar, dtype: DType) -> np.ndarray:
    """A 0-d array holding `value` as dtype `dtype` (reduced floats rounded from float32)."""
    if dtype.is_reduced_float:
        return cast(np.float32(value), DType.FLOAT32, dtype)
    if dtype is DType.BOOL:
        return np.asarray(bool(value))
    if dtype.is_float:
        return np.asarray(value, dtype=dtype.np_storage)
    # Integer literals outside the dtype's range wrap, as a C cast of the literal would.
    return np.asarray(int(value), dtype=np.int64).astype(dtype.np_storage)


def evaluate(ir: FusionIR, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate `ir` on `inputs`; see the module docstring for the contract."""
    if len(inputs) != len(ir.inputs):
        raise ValueError(f"fusion {ir.name}: expected {len(ir.inputs)} inputs, got {len(inputs)}")
    if ir.concats:  # their index remaps are checked through the kernel-IR interpreter instead
        raise NotImplementedError(f"fusion {ir.name}: the reference evaluator has no "
                                  "concatenations")
    arrays: list[np.ndarray] = [
        np.asarray(x, dtype=spec.dtype.np_storage) for x, spec in zip(inputs, ir.inputs)]
    values: list[np.ndarray] = []
    space = np.broadcast_shapes(*(a.shape for a in arrays)) if arrays else ()
    for node in ir.nodes:
        if node.op in REDUCTIONS or node.op is Prim.ROW_NUMEL:
            values.append(_eval_row(ir, node, values, space))
        else:
            values.append(_eval_node(ir, node, values, arrays))
    if ir.reduce_ndim:
        import torch

        from nvfuse.fusion.shapes import output_shapes

        shapes = [tuple(s) for s in output_shapes(ir, [torch.Size(a.shape) for a in arrays])]
    else:
        shapes = [np.broadcast_shapes(*(arrays[i].shape for i in out.shape_from))
                  for out in ir.outputs]
    results = []
    for out, shape in zip(ir.outputs, shapes):
        value = values[out.value]
        node_dtype = ir.nodes[out.value].dtype
        if node_dtype is not out.dtype:
            value = cast(value, node_dtype, out.dtype)
        value = np.asarray(value, dtype=out.dtype.np_storage)
        if out.shape is OutputShape.ROW_DROPPED and np.ndim(value) > len(shape):
            value = np.squeeze(value, axis=reduced_positions(ir.reduce_axes, np.ndim(value)))
        elif np.ndim(value) > len(shape):  # FULL_DROPPED: leading size-1 dims
            value = value.reshape(np.shape(value)[np.ndim(value) - len(shape):])
        # np.array, not ascontiguousarray: the latter turns 0-d results into shape (1,).
        results.append(np.array(np.broadcast_to(value, shape), order="C"))
    return results


def _eval_row(ir: FusionIR, node: Node, values: list[np.ndarray],
              space: tuple[int, ...]) -> np.ndarray:
    """A reduction (over the reduced axes of `space`, kept) or ROW_NUMEL."""
    axes = reduced_positions(ir.reduce_axes, len(space))
    if node.op is Prim.ROW_NUMEL:
        return np.asarray(int(np.prod([space[a] for a in axes], dtype=np.int64)), np.int64)
    operand = np.broadcast_to(values[node.args[0]], space)
    with np.errstate(all="ignore"):
        result = _NUMPY_REDUCE[node.op](operand, axis=axes, keepdims=True)
    return np.asarray(result, dtype=node.dtype.np_storage)


def _eval_node(
    ir: FusionIR, node: Node, values: list[np.ndarray], inputs: list[np.ndarray]
) -> np.ndarray:
    if node.op is Prim.LOAD:
        return inputs[int(node.attr)]  # type: ignore[arg-type]
    if node.op is Prim.CONST:
        return literal(node.attr, node.dtype)  # type: ignore[arg-type]
    args = [values[a] for a in node.args]
    # WHERE's first argument is the bool condition; its value operands are the others.
    operand_index = node.args[1] if node.op is Prim.WHERE else node.args[0]
    operand = ir.nodes[operand_index].dtype
    return apply_prim(node.op, args, operand, node.dtype)
