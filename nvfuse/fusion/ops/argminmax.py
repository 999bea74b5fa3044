"""Lowerings of argmax / argmin: a `Call` -> the int64 index Val (REDUCE_ARGMAX / REDUCE_ARGMIN
over the given dims, `Builder.reduce`; dim=None reduces every dim, the index then being the
row-major flat index).  Raises Unsupported for 0-dim inputs, as the other
reductions do (`reductions.reduced_dims`); pair reductions always take the row schedule.

torch.max(x, dim) / torch.min(x, dim) reach the graph as (amax, argmax) / (amin, argmin) pairs
(nvfuse/frontend/norms.py, and TorchScript's converter), which one kernel computes from one
(value, index) pair reduction (nvfuse/lower/argreduce.py); torch.max(x) / torch.min(x) are the
amax / amin of every element (nvfuse.fusion.ops.reductions registers them).

Numerics are eager's: values are compared exactly in their accumulator dtype (float32 holds
every float16 / bfloat16, int64 every integer and bool) as eager holds them (a float16 /
bfloat16 prologue's float32 result is rounded to its dtype first, as amax / amin do too); a
NaN wins (the first NaN's index), ties give the first index.  Eager refuses bool argmax;
max.dim of bools decomposes with a uint8 conversion for its indices.
"""

from __future__ import annotations

from nvfuse.fusion.builder import Val
from nvfuse.fusion.prims import Prim
from nvfuse.fusion.ops.reductions import accumulator, reduced_dims
from nvfuse.fusion.ops.registry import Call, held, op, register


def _arg(c: Call, prim: Prim) -> Val:
    x = c.tensor("self")
    k = reduced_dims(x, c.args.get("dim"))
    # compared as eager holds the values: a float32-kept half is rounded first (two values that
    # round to one half are a tie, the first index wins)
    return c.b.reduce(prim, c.b.cast(held(c, x), accumulator(x.eager)), k)


@register(op("argmax"))
def _argmax(c: Call) -> Val:
    return _arg(c, Prim.REDUCE_ARGMAX)


@register(op("argmin"))
def _argmin(c: Call) -> Val:
    return _arg(c, Prim.REDUCE_ARGMIN)
