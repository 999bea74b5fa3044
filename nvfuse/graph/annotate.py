"""Annotation: `torch.fx.GraphModule` + example inputs -> a copy whose every node carries
meta["val"].

Contract: `annotate(gm, example_inputs) -> gm` records each node's result (a FakeTensor, a tuple
of them, or a Python scalar), so dtypes, shapes, strides and devices are known to the passes.
It first runs the graph under a FakeTensorMode (nothing is computed).  A graph whose values
depend on data (`aten::Int` of a tensor, as traced transformer masks have) cannot run on fake
tensors; it then runs once on copies of the real inputs (`twins`: an in-place op of the graph
must not write the caller's tensors) and records fake tensors made from the real results (same
metadata, no memory held).  The input is left unchanged.  An op that fails both
ways raises `NvfuseError` naming the node.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.fx
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._pytree import tree_leaves, tree_map

from nvfuse.errors import NvfuseError
from nvfuse.graph.aliasing import copy_graph, finish_graph


class _Recorder(torch.fx.Interpreter):
    """Runs the graph, recording each node's result (as `record(result)`) in meta["val"]."""

    def __init__(self, gm: torch.fx.GraphModule, mode: Any, fake: bool) -> None:
        super().__init__(gm)
        self.mode = mode
        self.fake = fake

    def run_node(self, n: torch.fx.Node) -> Any:
        try:
            result = super().run_node(n)
        except NvfuseError:
            raise
        except Exception as exc:  # any op failure becomes an nvfuse error naming the node
            how = "fake" if self.fake else "real"
            raise NvfuseError(
                f"annotate: node {n.name} ({n.op} {getattr(n.target, '__name__', n.target)}) "
                f"failed on {how} tensors: {type(exc).__name__}: {exc}"
            ) from exc
        n.meta["val"] = result if self.fake else tree_map(self._as_fake, result)
        return result

    def get_attr(self, target: Any, args: Any, kwargs: Any) -> Any:
        value = super().get_attr(target, args, kwargs)
        if self.fake and isinstance(value, torch.Tensor):
            return self.mode.from_tensor(value)
        return value

    def _as_fake(self, value: Any) -> Any:
        return self.mode.from_tensor(value) if isinstance(value, torch.Tensor) else value


@contextlib.contextmanager
def rng_preserved(inputs: Sequence[Any]) -> Iterator[None]:
    """Run a graph on real tensors to trace or annotate it without consuming random numbers:
    the CPU generator's state and that of every CUDA device among `inputs` are put back after,
    so the first (planning) call of a fused function draws what any later call would for the
    same seed."""
    devices = sorted({t.device.index or 0 for t in tree_leaves(list(inputs))
                      if isinstance(t, torch.Tensor) and t.is_cuda})
    with torch.random.fork_rng(devices=devices):
        yield


def twins(inputs: Sequence[Any]) -> list[Any]:
    """Copies of `inputs` to trace on: the same sizes, strides, storage offsets and sharing of
    memory among them, so tracing (which runs the ops) never writes the caller's tensors."""
    copies: dict[Any, torch.UntypedStorage] = {}

    def twin(t: Any) -> Any:
        if not isinstance(t, torch.Tensor) or t.is_sparse or t.layout != torch.strided:
            return t
        key = StorageWeakRef(t.untyped_storage())
        if key not in copies:
            copies[key] = t.untyped_storage().clone()
        out = torch.empty(0, dtype=t.dtype, device=t.device)
        out.set_(copies[key], t.storage_offset(), t.shape, t.stride())
        if t.is_conj():  # a lazily conjugated or negated view reads the same bytes differently
            out = out.conj()
        if t.is_neg():
            out = out._neg_view()
        return out

    return [tree_map(twin, x) for x in inputs]


def annotate(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> torch.fx.GraphModule:
    """A copy of gm whose every node carries meta["val"] (FakeTensor or Python scalar)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    work = copy_graph(gm)
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    fake_inputs = [mode.from_tensor(x) if isinstance(x, torch.Tensor) else x
                   for x in example_inputs]
    try:
        with mode, torch.no_grad():
            _Recorder(work, mode, fake=True).run(*fake_inputs)
    except NvfuseError:
        # data-dependent values: propagate the real inputs once, record their metadata
        work = copy_graph(gm)
        with torch.no_grad(), rng_preserved(example_inputs):
            # on copies: an in-place op of the graph must not write the caller's tensors
            _Recorder(work, FakeTensorMode(allow_non_fake_inputs=True), fake=False).run(
                *twins(example_inputs))
    return finish_graph(work)
