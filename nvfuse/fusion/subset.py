"""Subset: a FusionIR restricted to some of its outputs.

Input: a verified `FusionIR` and the indices of the outputs to keep.  Output: a verified
`FusionIR` computing only those outputs (dead nodes dropped, the concatenations no kept value
reads and the inputs no kept value, shape or concatenation refers to dropped, everything
renumbered) and the original indices of its inputs.

The executor uses it when some outputs of a group are empty at run time: a group's iteration
space is the broadcast of all its inputs, so an empty input (`y` of shape (0, 32, 8, 1)) empties
the space while an output that does not depend on it (`a = x - 0.5 * x`, shape (8, 1)) still
has elements.  The empty outputs need no stores; the others run as this smaller fusion, whose
space is the broadcast of the inputs they need.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from nvfuse.fusion.ir import FusionIR, Node, Segment, needed_nodes, verify_fusion
from nvfuse.fusion.prims import REDUCTIONS, Prim


def select_outputs(ir: FusionIR, keep: tuple[int, ...]) -> tuple[FusionIR, tuple[int, ...]]:
    """`ir` computing only outputs `keep` (in that order), and the original index of each of
    its inputs."""
    outputs = tuple(ir.outputs[o] for o in keep)
    live = sorted(needed_nodes(ir.nodes, outputs))
    used: set[int] = set()
    cats: set[int] = set()  # the concatenations the kept outputs read or broadcast with
    for n in live:
        node = ir.nodes[n]
        if node.op is Prim.LOAD:
            used.add(int(node.attr))  # type: ignore[arg-type]
        elif node.op is Prim.PIECE_LOAD:
            used.add(node.attr[0])  # type: ignore[index]
            cats.add(node.attr[1])  # type: ignore[index]
        elif node.op is Prim.IN_PIECE:
            cats.add(node.attr[0])  # type: ignore[index]
    for out in outputs:
        used.update(out.shape_from, out.reduced_from)
        cats.update(out.from_concats)
    # a concatenation only dropped outputs need goes (its shape would still set the space: an
    # empty stack beside a non-empty pad emptied it); the others are kept whole: their pieces'
    # shapes are needed
    kept_cats = sorted(cats)
    new_cat = {old: i for i, old in enumerate(kept_cats)}
    for c in kept_cats:
        for seg in ir.concats[c].segments:
            used.update(seg.shape_from)
    inputs = tuple(sorted(used))
    new_input = {old: i for i, old in enumerate(inputs)}
    new_node = {old: i for i, old in enumerate(live)}

    def remap_node(n: int) -> Node:
        node = ir.nodes[n]
        attr = node.attr
        if node.op is Prim.LOAD:
            attr = new_input[int(attr)]  # type: ignore[arg-type]
        elif node.op is Prim.PIECE_LOAD:
            attr = (new_input[attr[0]], new_cat[attr[1]], *attr[2:])  # type: ignore[index]
        elif node.op is Prim.IN_PIECE:
            attr = (new_cat[attr[0]], *attr[1:])  # type: ignore[index]
        return replace(node, args=tuple(new_node[a] for a in node.args), attr=attr)

    def remap_inputs(indices: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(new_input[i] for i in indices)

    concats = tuple(replace(ir.concats[c], segments=tuple(
        _remap_segment(seg, remap_inputs) for seg in ir.concats[c].segments))
        for c in kept_cats)
    nodes = tuple(remap_node(n) for n in live)
    reduces = any(node.op in REDUCTIONS or node.op is Prim.ROW_NUMEL for node in nodes)
    sub = replace(
        ir, inputs=tuple(ir.inputs[i] for i in inputs), nodes=nodes,
        outputs=tuple(replace(o, value=new_node[o.value], shape_from=remap_inputs(o.shape_from),
                              reduced_from=remap_inputs(o.reduced_from),
                              from_concats=tuple(new_cat[c] for c in o.from_concats))
                      for o in outputs),
        concats=concats,
        reduce_ndim=ir.reduce_ndim if reduces else 0,
        reduce_dims=ir.reduce_dims if reduces else None)
    return verify_fusion(sub), inputs


def _remap_segment(seg: Segment,
                   remap: Callable[[tuple[int, ...]], tuple[int, ...]]) -> Segment:
    return replace(seg, shape_from=remap(seg.shape_from))
