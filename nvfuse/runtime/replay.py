"""Replaying a fully fused plan: a cached call that runs its prepared kernels in a tight loop.

Input: a plan's partitioned graph (`fx.GraphModule` whose fusion groups are `FusionGroup`s) and
one call's flat tensor inputs.  Output: `record(gm, inputs)` runs the graph once, watching every
group's prepared call (nvfuse/runtime/executor.py), and returns its result with a `Replay` when
the graph is replayable; `Replay.run(inputs)` then computes the same result for any inputs of
the same replay key without the graph, the plan lookup or the groups' own launch-key checks.

Replayable: the graph holds nothing but placeholders, attribute reads, fusion groups, tuple
indexing and the output; every group ran as a kernel (none fell back); every tensor a group
reads is a graph input, an attribute tensor or an earlier group's output; and every output leaf
is one of those or a non-tensor constant.  Then the whole call is determined by the inputs'
replay key (`replay_key`: per input dtype, shape, strides, device, requires_grad and 16-byte
alignment class): the intermediates' shapes and strides follow from it, and torch's allocators
align fresh tensors, so every group meets the prepared call it met while recording.  Anything
else -- an eager op between groups, a copy back into a mutated input, container inputs -- runs
through the plan as before.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch import fx

from nvfuse import counters
from nvfuse.runtime import executor
from nvfuse.runtime.horizontal import HorizontalGroup


def replay_key(inputs: Sequence[Any]) -> tuple[Any, ...] | None:
    """What a replay depends on, per input (None when an input is not a tensor)."""
    try:
        return tuple([(t.dtype, t.shape, t.stride(), t.data_ptr() & 15, t.device, t.requires_grad)
                      for t in inputs])
    except AttributeError:
        return None


def replayable(gm: fx.GraphModule) -> bool:
    """Whether `gm` consists only of fusion groups and plumbing (the module docstring)."""
    for node in gm.graph.nodes:
        if node.op in ("placeholder", "output", "get_attr"):
            continue
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target),
                                                   (executor.FusionGroup, HorizontalGroup)):
            continue
        if node.op == "call_function" and node.target is operator.getitem:
            continue
        return False
    return True


class Replay:
    """A recorded call: the groups' prepared calls in order, each reading slots of a flat value
    list (the inputs, the attribute tensors, then every group's outputs in order)."""

    def __init__(self, constants: list[Any], steps: list[tuple[Any, tuple[int, ...], int]],
                 n_slots: int, leaves: list[tuple[bool, Any]], spec: pytree.TreeSpec,
                 single: bool, flat_tuple: bool) -> None:
        self._constants = constants  # attribute tensors, read by reference as the graph does
        self._steps = steps  # (prepared call, input slots, first output slot)
        self._n_slots = n_slots
        self._leaves = leaves  # per output leaf: (is a slot, slot index or the constant)
        self._spec = spec
        self._groups = len(steps)
        self._launches = sum(len(ready.stages) for ready, _, _ in steps)
        # the common result shapes, rebuilt without pytree: a lone tensor, a flat tuple
        self._single = single
        self._flat_tuple = flat_tuple
        # the commonest plan: one group reading the inputs in order, returning its one output
        self._lone: Any = None
        if (len(steps) == 1 and not constants and steps[0][1] == tuple(range(steps[0][2]))
                and single and leaves[0][1] == steps[0][2]):
            self._lone = steps[0][0]

    @property
    def constants(self) -> list[Any]:
        """The attribute tensors the replay reads (by reference)."""
        return self._constants

    @property
    def counts(self) -> tuple[int, int]:
        """What one run adds to the counters: (memory hits, launches)."""
        return self._groups, self._launches

    def prepared(self) -> list[Any]:
        """Every step's prepared call (executor `_Ready` or horizontal `HorizontalReady`)."""
        return [ready for ready, _, _ in self._steps]

    def run(self, inputs: Sequence[torch.Tensor]) -> Any:
        lone = self._lone
        if lone is not None:
            output = lone.run(inputs)[0]
            counters.bump_hits(1, self._launches)
            return output
        slots: list[Any] = [*inputs, *self._constants]
        slots += [None] * (self._n_slots - len(slots))
        for ready, reads, first in self._steps:
            outputs = ready.run([slots[i] for i in reads])
            slots[first:first + len(outputs)] = outputs
        counters.bump_hits(self._groups, self._launches)
        if self._single:
            return slots[self._leaves[0][1]]
        values = [slots[v] if s else v for s, v in self._leaves]
        if self._flat_tuple:
            return tuple(values)
        return pytree.tree_unflatten(values, self._spec)


def record(gm: fx.GraphModule, inputs: Sequence[Any]) -> tuple[Any, Replay | None]:
    """Run `gm` on `inputs`; return the result and, when the call is replayable, its Replay."""
    calls: list[Any] = []
    recorder = executor._recorder
    recorder.calls = calls
    try:
        result = gm.forward(*inputs)
    finally:
        recorder.calls = None
    return result, _build(gm, inputs, calls, result)


def _build(gm: fx.GraphModule, inputs: Sequence[Any], calls: list[Any],
           result: Any) -> Replay | None:
    if not all(isinstance(t, torch.Tensor) for t in inputs):
        return None
    slot_of: dict[int, int] = {id(t): i for i, t in enumerate(inputs)}
    if len(slot_of) != len(inputs):
        return None  # one tensor passed twice: a replay must not tie those inputs together
    constants: list[Any] = []
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value = operator.attrgetter(str(node.target))(gm)
            if not isinstance(value, torch.Tensor) or any(value is c for c in constants):
                continue  # not a tensor, or read twice
            if id(value) in slot_of:
                return None  # an attribute also passed as an input
            slot_of[id(value)] = len(inputs) + len(constants)
            constants.append(value)
    n_calls = sum(1 for n in gm.graph.nodes if n.op == "call_module")
    if len(calls) != n_calls:  # a group fell back (ran its eager subgraph): no prepared call
        return None
    steps = []
    n_slots = len(inputs) + len(constants)
    for _group, ready, group_inputs, outputs in calls:
        reads = tuple(slot_of.get(id(t), -1) for t in group_inputs)
        if -1 in reads:
            return None
        steps.append((ready, reads, n_slots))
        for t in outputs:
            slot_of[id(t)] = n_slots
            n_slots += 1
    flat, spec = pytree.tree_flatten(result)
    leaves: list[tuple[bool, Any]] = []
    for leaf in flat:
        if isinstance(leaf, torch.Tensor):
            if id(leaf) not in slot_of:
                return None
            leaves.append((True, slot_of[id(leaf)]))
        else:
            leaves.append((False, leaf))
    single = isinstance(result, torch.Tensor)
    flat_tuple = type(result) is tuple and len(result) == len(flat)
    return Replay(constants, steps, n_slots, leaves, spec, single, flat_tuple)
