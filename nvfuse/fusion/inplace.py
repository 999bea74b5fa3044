"""In-place results: which group outputs may be written straight into a graph input.

Input: a partitioned graph (`fused`: each group a `call_module` node, eager ops in place) and
each group's fusion IR, by submodule name.  Output: a copy of the graph without the writes the
groups take over, and per group its `writes`: pairs (output index, input index) meaning "the
kernel's output k is the tensor passed as the group's input i".

A program that updates its inputs (an optimizer step: parameters, moments, momentum buffers)
is traced functionally, then written back with one `copy_(input, value)` per updated input
(nvfuse/frontend/functional.py; AOTAutograd with `keep_inference_input_mutations` likewise).
Each such copy is one more kernel and one more read and write of the tensor.  A write is taken
over when all of these hold, so the kernel's store is the copy:

- the value is output k of a group whose kernel is pointwise (no reduction, no
  concatenation): each thread reads its elements of every input before writing them, and no
  thread reads another's elements -- when the input is not broadcast (checked per call);
- the `copy_` result is used by nothing but the graph's output (it is the input itself,
  which the output then returns); other users of the value read the new values, which
  the input's tensor then holds (the kernel returns that tensor as the output), and hand out
  no alias of it (not the graph's output, no view);
- the written input is a placeholder of the graph, passed to this group once; any other
  group or eager op reading it runs before the group (the group depends on it: gradient
  clipping's norms read the gradients its scaling then writes) and returns no alias of it;
- the written input has the shape of the group's iteration space as traced (an optimizer's
  0-dim `step`, read broadcast by its parameter's update, keeps its copy);
- output and input agree in dtype (a converting copy stays).

Per call the executor still checks what the graph cannot promise (nvfuse.runtime.executor:
same shape, strides, dtype and device, and the input spanning the whole iteration space); where
that fails it copies the kernel's result into the input, as the graph did.  A call whose inputs
share memory never gets here (FusedModule runs a mutating plan eagerly then).
"""

from __future__ import annotations

import copy
import operator

import torch
from torch import fx

from nvfuse.fusion.ir import FusionIR, OutputShape
from nvfuse.fusion.shapes import broadcast_shape

Writes = tuple[tuple[int, int], ...]


def pointwise(ir: FusionIR) -> bool:
    """Whether `ir` runs as a pointwise kernel (every element on its own)."""
    return not ir.reduce_ndim and not ir.reduce_dims and not ir.concats


def find_writes(fused: fx.GraphModule, irs: dict[str, FusionIR]
                ) -> tuple[fx.GraphModule, dict[str, Writes]]:
    """The graph without the copies the groups take over, and each group's writes (see the
    module docstring).  `fused` itself is not changed."""
    gm = fx.GraphModule(fused, copy.deepcopy(fused.graph))
    writes: dict[str, list[tuple[int, int]]] = {}
    for node in list(gm.graph.nodes):
        found = _taken_over(node, irs)
        if found is None:
            continue
        name, k, i, getitem = found
        writes.setdefault(name, []).append((k, i))
        node.replace_all_uses_with(node.args[0])  # copy_ returns the input it wrote
        gm.graph.erase_node(node)
        if not getitem.users:
            gm.graph.erase_node(getitem)
    if writes:
        gm.recompile()
    return gm, {name: tuple(sorted(w)) for name, w in writes.items()}


def _fresh_reader(u: fx.Node) -> bool:
    """Whether `u`, reading a value that becomes an input's tensor, hands out no alias of it:
    a group or an op returning a fresh tensor (the graph's output would alias an input where
    eager returns a tensor of its own)."""
    if u.op == "call_module":
        return True
    return u.op == "call_function" and isinstance(u.target, torch._ops.OpOverload) \
        and not u.target.is_view and all(r.alias_info is None for r in u.target._schema.returns)


def _read_before(dest: fx.Node, call: fx.Node, copy_node: fx.Node) -> bool:
    """Whether every other reader of `dest` runs before the group `call` (the group depends on
    it) and hands out no alias of it (a view read later would see the new values)."""
    others = [u for u in dest.users if u is not call and u is not copy_node]
    if not others:
        return True
    for u in others:
        if u.op == "call_function":
            if not isinstance(u.target, torch._ops.OpOverload) or u.target.is_view or any(
                    r.alias_info is not None for r in u.target._schema.returns):
                return False
        elif u.op == "output":  # returns the input itself, which holds the new values then
            continue
        elif u.op != "call_module":
            return False
    ancestors: set[fx.Node] = set()
    stack = list(call.all_input_nodes)
    while stack:
        n = stack.pop()
        if n not in ancestors:
            ancestors.add(n)
            stack.extend(n.all_input_nodes)
    return all(u in ancestors for u in others if u.op != "output")


def _taken_over(node: fx.Node, irs: dict[str, FusionIR]
                ) -> tuple[str, int, int, fx.Node] | None:
    """(group name, output index, input index, the getitem) when `node` is a `copy_` a group
    can do itself, else None."""
    if node.op != "call_function" or node.target is not torch.ops.aten.copy_.default \
            or any(u.op != "output" for u in node.users) or len(node.args) != 2 or node.kwargs:
        return None
    dest, value = node.args
    if not isinstance(dest, fx.Node) or dest.op != "placeholder" \
            or not isinstance(value, fx.Node) or value.op != "call_function" \
            or value.target is not operator.getitem or not all(
                _fresh_reader(u) for u in value.users if u is not node):
        return None
    call, k = value.args
    if not isinstance(call, fx.Node) or call.op != "call_module" or str(call.target) not in irs:
        return None
    ir = irs[str(call.target)]
    if not pointwise(ir) or not isinstance(k, int) or ir.outputs[k].shape is not OutputShape.FULL:
        return None
    if call.args.count(dest) != 1 or call.kwargs or not _read_before(dest, call, node):
        return None
    out, written = value.meta.get("val"), dest.meta.get("val")
    if not isinstance(out, torch.Tensor) or not isinstance(written, torch.Tensor) \
            or out.dtype != written.dtype or out.shape != written.shape:
        return None
    operands = [a.meta.get("val") for a in call.args if isinstance(a, fx.Node)]
    shapes = [t.shape for t in operands if isinstance(t, torch.Tensor)]
    if len(shapes) != len(operands) or tuple(broadcast_shape(shapes)) != tuple(written.shape):
        return None  # broadcast across the iteration space (a 0-dim step beside its update)
    return str(call.target), k, call.args.index(dest), value
