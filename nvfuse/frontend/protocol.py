"""Frontends as one protocol: a user's object -> annotated aten graphs, whatever its kind.

Input: the object given to `nvfuse.fuse` / `nvfuse.explain` and its example inputs (if any).
Output: a `Frontend` (`frontend_for`), which

- `trace(inputs)`: returns the aten `fx.GraphModule` for these inputs, every node annotated
  (meta["val"]), ready for `pipeline.plan`; raises `Untraceable` where make_fx refuses the
  callable (it then runs through torch.compile with the nvfuse backend), `NvfuseError` where a
  TorchScript graph cannot be converted (it then runs unfused);
- `autograd_target()`: the callable torch.compile traces when a call needs gradients (None: that
  object runs unfused then);
- `size_generic`: whether one trace serves every input size of the same ranks (TorchScript
  graphs do; make_fx bakes sizes into views, so its traces are per size);
- `arity`: (least, most) positional inputs the object takes (most None for *args), where
  known.

Two frontends exist: `ScriptFrontend` (traced or scripted TorchScript, nvfuse/frontend/
torchscript.py) and `TracedFrontend` (nn.Module, fx.GraphModule or any callable, through make_fx,
nvfuse/frontend/fx.py).  The dynamo backend hands its graphs to a `TracedFrontend`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from torch import fx

from nvfuse.errors import NvfuseError
from nvfuse.frontend.functional import Unfunctionalizable
from nvfuse.frontend.fx import optimizer_step, trace_to_aten
from nvfuse.frontend.torchscript import graph_module_from_script, is_torchscript
from nvfuse.graph.annotate import annotate


class Untraceable(NvfuseError):
    """make_fx cannot trace the callable (data-dependent control flow, outputs it cannot
    represent): it runs through torch.compile, whose graph breaks leave such code to Python."""


class Frontend(Protocol):
    obj: Any
    arity: tuple[int, int | None] | None
    size_generic: bool

    def trace(self, inputs: Sequence[Any]) -> fx.GraphModule: ...

    def autograd_target(self) -> Callable[..., Any] | None: ...


class ScriptFrontend:
    """A traced or scripted TorchScript function or module.  Its graph is converted once when
    the example inputs allow (a scripted graph reading `x.dtype` needs them), else per trace."""

    size_generic = True

    def __init__(self, obj: Any, example_inputs: Sequence[Any] | None) -> None:
        self.obj = obj
        n = _script_arity(obj)
        self.arity: tuple[int, int | None] | None = None if n is None else (n, n)
        self._converted: fx.GraphModule | None = None
        try:
            self._converted = graph_module_from_script(obj, example_inputs)
        except NvfuseError:
            pass  # some scripts need input types (x.dtype): converted per trace instead

    def trace(self, inputs: Sequence[Any]) -> fx.GraphModule:
        converted = self._converted or graph_module_from_script(self.obj, inputs)
        return annotate(converted, list(inputs))

    def autograd_target(self) -> Callable[..., Any] | None:
        # the converted aten graph shares the script's parameters and buffers, so gradients and
        # running statistics land on the user's; one converted per trace only has no single graph
        return self._converted


class TracedFrontend:
    """An nn.Module, fx.GraphModule or callable of tensors, traced by make_fx per input shape."""

    size_generic = False

    def __init__(self, obj: Any, example_inputs: Sequence[Any] | None) -> None:
        if not callable(obj):
            raise TypeError(
                f"nvfuse.fuse: expected a TorchScript function or module, an fx.GraphModule, "
                f"an nn.Module or a callable of tensors; got {type(obj).__name__}")
        if example_inputs is None:
            raise ValueError(
                "nvfuse.fuse: example_inputs are required for an nn.Module, fx.GraphModule or "
                "callable (nvfuse traces it with them); pass a tuple of example tensors")
        self.obj = obj
        n = len(tuple(example_inputs))
        self.arity: tuple[int, int | None] | None = _positional_range(obj) or (n, n)

    def trace(self, inputs: Sequence[Any]) -> fx.GraphModule:
        if optimizer_step(self.obj) is not None:
            raise Untraceable("an optimizer's step: its parameters and state are not inputs "
                              "make_fx can see (torch.compile lifts them)")
        try:
            return trace_to_aten(self.obj, list(inputs))
        except Unfunctionalizable:
            raise  # traceable, but not exactly: the caller runs it eagerly
        except Exception as e:  # make_fx's many refusals: RuntimeError, NotImplementedError..
            raise Untraceable(
                f"make_fx cannot trace {type(self.obj).__name__} ({type(e).__name__}: "
                f"{str(e).splitlines()[0][:200] if str(e) else ''})") from e

    def autograd_target(self) -> Callable[..., Any] | None:
        return self.obj  # type: ignore[no-any-return]


def frontend_for(obj: Any, example_inputs: Sequence[Any] | None) -> Frontend:
    """The frontend that reads `obj` (TypeError / ValueError: nothing can)."""
    if is_torchscript(obj):
        return ScriptFrontend(obj, example_inputs)
    return TracedFrontend(obj, example_inputs)


def _positional_range(obj: Any) -> tuple[int, int | None] | None:
    """(least, most) positional arguments `obj` (a callable, or an nn.Module's forward) takes,
    most None for *args; None when its signature cannot be read or it needs a keyword-only
    argument (then the example inputs' count is the arity)."""
    target = obj.forward if isinstance(obj, torch.nn.Module) else obj
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    least, most = 0, 0
    var = False
    for p in parameters:
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            most += 1
            least += p.default is p.empty
        elif p.kind is p.VAR_POSITIONAL:
            var = True
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            return None
    return least, None if var else most


def _script_arity(obj: Any) -> int | None:
    try:
        n = len(list(obj.graph.inputs()))
    except (AttributeError, RuntimeError):
        return None
    return n - 1 if isinstance(obj, torch.jit.ScriptModule) else n
