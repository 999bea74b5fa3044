"""Canonical node order: graph IR -> the same graph with its nodes in an order fixed by its
data flow alone (the last of `nvfuse.graph.passes.PASSES`).

Why: the order of a traced graph's nodes is an accident of the tracer and of torch's
decompositions, and it changes between torch releases (2.11 traces `nan_to_num`'s compares
before its selects, and `box_iou`'s operands breadth first, where 2.13 follows program order).
Every later stage numbers kernel inputs, values and outputs in node order, so the generated
source (its text, its cache key, the golden files) would depend on the torch version.  Ordered
here, one dataflow graph gives one kernel on every supported torch.

The order: placeholders as they are (the caller's argument order); then a depth-first,
post-order walk (each node after its operands, operands in argument order) from each root in
turn: the nodes with side effects other than mutation (random draws, asserts, module calls),
in their original relative order, then the graph's output.  Nodes no root reaches keep their
relative order just before the output.  Random draws therefore stay in eager's order.

Graphs that mutate a tensor are left exactly as they are: a read before a write must stay
before it, and nothing in the data edges says so.
"""

from __future__ import annotations

import torch.fx

from nvfuse.graph.aliasing import copy_graph, finish_graph, has_side_effects, is_mutating


def canonical_order(graph: torch.fx.Graph) -> list[torch.fx.Node]:
    """The canonical order of `graph`'s nodes (see the module docstring)."""
    nodes = list(graph.nodes)
    placed = [n for n in nodes if n.op == "placeholder"]
    done = set(placed)
    roots = [n for n in nodes if n.op not in ("placeholder", "output") and has_side_effects(n)]
    roots += [n for n in nodes if n.op == "output"]
    for root in roots:
        if root in done:
            continue
        stack: list[tuple[torch.fx.Node, int]] = [(root, 0)]
        done.add(root)
        while stack:
            node, i = stack[-1]
            operands = node.all_input_nodes
            while i < len(operands) and operands[i] in done:
                i += 1
            if i < len(operands):
                stack[-1] = (node, i + 1)
                done.add(operands[i])
                stack.append((operands[i], 0))
            else:
                stack.pop()
                if node.op != "output":
                    placed.append(node)
    placed += [n for n in nodes if n not in done and n.op != "output"]
    placed += [n for n in nodes if n.op == "output"]
    return placed


def order_nodes(gm: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """`gm` with its nodes in canonical order: a copy, or `gm` itself where nothing moves."""
    if (any(is_mutating(n) for n in gm.graph.nodes)
            or canonical_order(gm.graph) == list(gm.graph.nodes)):
        return gm
    work = copy_graph(gm)
    order = canonical_order(work.graph)
    after = order[-1]  # the output
    for node in reversed(order[:-1]):  # move each node right before its successor
        after.prepend(node)
        after = node
    return finish_graph(work)
