"""CUDA-graph mode (`nvfuse.fuse(obj, example_inputs, cuda_graphs=True)`): a replayed call
(nvfuse/runtime/replay.py) captured once per replay key into a `torch.cuda.CUDAGraph` and
replayed as one graph launch.

Input: a `Replay` that has run once (its kernels built and loaded: the call that recorded it)
and the inputs of a later call with the same replay key.  Output: `GraphedReplay.run(inputs)`,
the same result as `Replay.run(inputs)`.

How a key is captured (its first call after the recording one): static input buffers are
allocated with each input's shape, strides, dtype and device; the Replay runs on them under
stream capture, on a side stream, into a private graph memory pool of its own, which also
holds the outputs it allocates.  Not one pool per module: captures sharing a pool may reuse
each other's freed intermediates, which is safe only when they replay in capture order, and
the reuse rule below replays them in any order (a capture's intermediates could land on
another capture's outputs that the caller still holds).  Every call then copies
its inputs into the static buffers (no copy for an input that *is* its static buffer:
`FusedModule.graph_inputs` hands them out) and replays the graph on torch's current stream;
attribute tensors (weights) are read at the address they had at capture, which is checked per
call (a weight whose storage moved is recaptured).

Outputs -- the reuse rule.  A call returns new tensor objects aliasing the capture's output
buffers (no clone: a clone is one more read and write of every output, up to twice a
memory-bound fusion's traffic).  A capture is replayed only when no tensor of its previous
call, nor any view of one, is alive outside nvfuse (the buffers' storage use counts say so);
otherwise a second capture of the same key is used (so `y = fm(x)` in a loop alternates two
captures), and while both are held the call runs without a graph (fresh outputs, the plain
Replay).  A result is thus never overwritten behind the caller's back -- unlike torch's
"reduce-overhead" mode, whose next replay overwrites the previous outputs (and raises when
they are read).  An output that is an input or an attribute tensor is returned as that tensor,
as eager does.

Captured only when safe (`ineligible`): every tensor on one CUDA device, no interpreter, no
random op (a kernel's seed is a per-launch scalar: a graph would replay one mask forever), no
CPU scalar copied to the device per call, no input with overlapping memory (an expanded
tensor cannot be a copy target).  Plans that are not replayable (eager ops between groups, a
fallback, writes into an input) and calls that need autograd never get here: the caller
records why (`GraphSet.skip`).  A refusal or a failed capture leaves the call on the plain
Replay -- the same results as without the flag -- and is counted in `graph_skips`
(nvfuse.stats) and, by reason, in `FusedModule.cuda_graph_skips`.

Memory: at most `MAX_CAPTURES` captures per module (`GraphSet`), `COPIES` per key; past that
the least recently replayed key gives up its captures (the device is synchronized first) and
captures again if it is used again.

Calls must be ordered, as for any CUDA graph: one stream, or streams the caller synchronizes,
and one thread at a time per module (two replays of one capture running at once would share
its buffers).

The capture machinery is a `Backend` (`CudaBackend`; tests inject a CPU stand-in through
`set_backend`), so everything but the CUDA calls runs on a machine without a GPU.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
import torch.utils._pytree as pytree

from nvfuse import config, counters
from nvfuse.runtime.executor import warn_once
from nvfuse.runtime.replay import Replay

MAX_CAPTURES = 8  # captured graphs kept per FusedModule (each holds its outputs and pool blocks)
COPIES = 2  # captures per replay key: one may hold the outputs the caller still holds


class Backend(Protocol):
    """What capturing and replaying needs from the device."""

    def refuses(self, tensors: Sequence[torch.Tensor], cfg: config.Config) -> str | None:
        """Why a call on `tensors` cannot be captured (None: it can)."""

    def new_pool(self) -> Any:
        """A graph memory pool handle for one capture."""

    def capture(self, fn: Callable[[], Any], pool: Any, device: torch.device) -> tuple[Any, Any]:
        """Run `fn` under capture; (graph with `.replay()`, what `fn` returned)."""

    def release(self, graph: Any) -> None:
        """Give `graph` up (it may still be running)."""


class CudaBackend:
    """torch.cuda.CUDAGraph: capture on a side stream per device, replay on the current one."""

    def __init__(self) -> None:
        self._streams: dict[int, Any] = {}

    def refuses(self, tensors: Sequence[torch.Tensor], cfg: config.Config) -> str | None:
        if cfg.interpret:
            return "kernels run on the CPU interpreter (NVFUSE_INTERPRET=1)"
        if not torch.cuda.is_available():
            return "CUDA is not available"
        devices = {t.device for t in tensors}
        if any(d.type != "cuda" for d in devices):
            return "a tensor is not on a CUDA device"
        if len(devices) > 1:
            return "tensors on more than one device"
        return None

    def new_pool(self) -> Any:
        return torch.cuda.graph_pool_handle()

    def capture(self, fn: Callable[[], Any], pool: Any, device: torch.device) -> tuple[Any, Any]:
        index = device.index if device.index is not None else torch.cuda.current_device()
        with torch.cuda.device(index):
            stream = self._streams.get(index)
            if stream is None:
                stream = self._streams[index] = torch.cuda.Stream()
            graph = torch.cuda.CUDAGraph()
            # torch.cuda.graph synchronizes the device first, captures on `stream`; other
            # threads' CUDA calls (compile workers, data loaders) do not break this capture
            with torch.cuda.graph(graph, pool=pool, stream=stream,
                                  capture_error_mode="thread_local"):
                result = fn()
        return graph, result

    def release(self, graph: Any) -> None:
        torch.cuda.synchronize()  # never destroy a graph that may still be running
        graph.reset()


_backend: Backend = CudaBackend()


def set_backend(backend: Backend) -> Backend:
    """Use `backend` for captures from now on; returns the previous one (tests)."""
    global _backend
    previous, _backend = _backend, backend
    return previous


def _use_count_getter() -> Callable[[int], int] | None:
    return getattr(torch._C, "_storage_Use_Count", None)


_use_count = _use_count_getter()


def _cdata(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


class GraphSet:
    """One FusedModule's captures: the memory pool, the skip reasons, the LRU bound."""

    def __init__(self) -> None:
        self.skips: dict[str, int] = {}
        self._users: OrderedDict[int, GraphedReplay] = OrderedDict()  # least recent first

    def skip(self, reason: str) -> None:
        """A call that is not captured, and why (counted; warned once per reason)."""
        self.skips[reason] = self.skips.get(reason, 0) + 1
        counters.bump("graph_skips")
        warn_once(f"nvfuse: cuda_graphs: a call runs without a CUDA graph: {reason}")

    def wrap(self, replay: Replay, inputs: Sequence[Any], cfg: config.Config) -> Any:
        """`replay` as a GraphedReplay, or itself when such calls cannot be captured."""
        reason = ineligible(replay, inputs, cfg)
        if reason is not None:
            self.skip(reason)
            return replay
        return GraphedReplay(replay, self)

    def used(self, user: GraphedReplay) -> None:
        self._users.pop(id(user), None)
        self._users[id(user)] = user

    def make_room(self, user: GraphedReplay) -> bool:
        """Evict least recently used keys' captures until one more fits; False: it cannot
        (`user`'s own captures fill the bound)."""
        while self.count() >= MAX_CAPTURES:
            victim = next((u for u in self._users.values() if u is not user and u.captures),
                          None)
            if victim is None:
                return False
            victim.release()
            self._users.pop(id(victim), None)
        return True

    def clear(self) -> None:
        """Release every capture (the module dropped its replays)."""
        for user in self._users.values():
            user.release()
        self._users.clear()

    def count(self) -> int:
        return sum(len(u.captures) for u in self._users.values())


def ineligible(replay: Replay, inputs: Sequence[Any], cfg: config.Config) -> str | None:
    """Why calls like `inputs` of `replay` cannot be captured (module docstring), or None."""
    if _use_count is None:
        return "this torch cannot count storage references (outputs could be overwritten)"
    if "launch" in cfg.dump:
        return "NVFUSE_DUMP=launch prints every launch"
    for ready in replay.prepared():
        if _random(ready):
            return "the plan has random ops (the seed is a per-launch argument; a graph " \
                   "would replay the same random numbers)"
        if _places(ready):
            return "a CPU scalar is copied to the device on every call"
    tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
    if not tensors:
        return "the call has no tensor inputs"
    for t in tensors:
        if any(s == 0 and n > 1 for s, n in zip(t.stride(), t.shape)) or (
                t.numel() > 1 and torch._debug_has_internal_overlap(t) == 1):
            return "an input has overlapping memory (an expanded tensor cannot be copied into)"
    return _backend.refuses(tensors + [c for c in replay.constants if
                                       isinstance(c, torch.Tensor)], cfg)


def _random(ready: Any) -> bool:
    readies = getattr(ready, "readies", None)
    if readies is not None:  # a horizontal bundle
        return any(r is not None and r.random for r in readies)
    return bool(ready.random)


def _places(ready: Any) -> bool:
    readies = getattr(ready, "readies", None)
    if readies is not None:
        return any(r is not None and r.place for r in readies)
    return bool(ready.place)


class _Capture:
    """One captured graph: its output buffers, their storages' use counts when only nvfuse
    held them, and how the result is rebuilt from them (per leaf: ("out", k), ("in", i) or
    ("value", v))."""

    __slots__ = ("graph", "outputs", "cdatas", "baseline", "leaves", "spec", "single")

    def __init__(self, graph: Any, outputs: list[torch.Tensor],
                 leaves: list[tuple[str, Any]], spec: pytree.TreeSpec, single: bool) -> None:
        self.graph, self.outputs, self.leaves, self.spec = graph, outputs, leaves, spec
        self.single = single
        self.cdatas = [_cdata(t) for t in outputs]
        self.baseline = [_use_count(c) for c in self.cdatas]  # type: ignore[misc]

    def free(self) -> bool:
        """Whether no tensor of this capture's last call is alive outside nvfuse."""
        count = _use_count
        return all(count(c) <= b for c, b in zip(self.cdatas, self.baseline))  # type: ignore[misc]


class GraphedReplay:
    """A Replay with its captures for one replay key (`run` as `Replay.run`)."""

    def __init__(self, replay: Replay, owner: GraphSet) -> None:
        self.replay = replay
        self.owner = owner
        self.captures: list[_Capture] = []
        self.static: list[torch.Tensor] | None = None
        self._constants = [(c, c.data_ptr()) for c in replay.constants
                           if isinstance(c, torch.Tensor)]
        self._broken = False

    def run(self, inputs: Sequence[torch.Tensor]) -> Any:
        if self._broken:
            return self.replay.run(inputs)
        for c, ptr in self._constants:
            if c.data_ptr() != ptr:  # a weight's storage moved: its address is in the graph
                self.release()
                self._constants = [(c, c.data_ptr()) for c, _ in self._constants]
                break
        for capture in self.captures:
            if capture.free():
                return self._replay(capture, inputs)
        if len(self.captures) < COPIES and self.owner.make_room(self):
            new = self._capture(inputs)
            if new is not None:
                return self._replay(new, inputs)
            return self.replay.run(inputs)
        self.owner.skip("the caller still holds the outputs of every capture of this shape, "
                        "or the capture bound is reached")
        return self.replay.run(inputs)

    def _replay(self, capture: _Capture, inputs: Sequence[torch.Tensor]) -> Any:
        static = self.static
        assert static is not None
        for s, t in zip(static, inputs):
            if s is not t:
                s.copy_(t)
        capture.graph.replay()
        counters.bump("graph_replays")
        counters.bump_hits(*self.replay.counts)
        self.owner.used(self)
        outputs = [t.detach() for t in capture.outputs]  # fresh objects: the liveness probes
        if capture.single:
            return outputs[0]
        values = [outputs[v] if kind == "out" else inputs[v] if kind == "in" else v
                  for kind, v in capture.leaves]
        return pytree.tree_unflatten(values, capture.spec)

    def _capture(self, inputs: Sequence[torch.Tensor]) -> _Capture | None:
        owner = self.owner
        cfg = config.get()
        if self.static is None:
            self.static = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype,
                                               device=t.device) for t in inputs]
        static = self.static
        try:
            graph, result = _backend.capture(lambda: self.replay.run(static), _backend.new_pool(),
                                             inputs[0].device)
        except Exception as e:
            if cfg.strict:
                raise
            self._broken = True
            owner.skip(f"capture failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
            return None
        counters.bump_hits(*(-n for n in self.replay.counts))  # captured, not run
        counters.bump("graph_captures")
        flat, spec = pytree.tree_flatten(result)
        outputs: list[torch.Tensor] = []
        leaves: list[tuple[str, Any]] = []
        for leaf in flat:
            if isinstance(leaf, torch.Tensor):
                at_input = next((i for i, s in enumerate(static) if s is leaf), None)
                if at_input is not None:
                    leaves.append(("in", at_input))
                    continue
                if any(leaf is c for c, _ in self._constants):
                    leaves.append(("value", leaf))
                    continue
                at = next((k for k, o in enumerate(outputs) if o is leaf), None)
                if at is None:
                    at = len(outputs)
                    outputs.append(leaf)
                leaves.append(("out", at))
            else:
                leaves.append(("value", leaf))
        single = isinstance(result, torch.Tensor) and leaves[0][0] == "out"
        del flat, result
        capture = _Capture(graph, outputs, leaves, spec, single)
        self.captures.append(capture)
        owner.used(self)
        return capture

    def release(self) -> None:
        """Drop the captures (a later call captures again)."""
        for capture in self.captures:
            _backend.release(capture.graph)
        self.captures = []
