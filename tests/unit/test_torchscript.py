"""TorchScript frontend: traced/scripted functions and modules -> graph IR, checked against the
TorchScript original on random (never zero) inputs."""

from __future__ import annotations

import operator

import warnings

import pytest
import torch
import torch.fx

from nvfuse.errors import NvfuseError
from nvfuse.frontend.torchscript import graph_module_from_script, is_torchscript
from nvfuse.graph.passes import annotate, run_passes

# torch.jit.trace/script are deprecated in favour of torch.compile, but are this frontend's input.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                        "ignore::torch.jit.TracerWarning")


def _rand(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    # Uniform in [0.5, 1.5) with random signs: never zero, so a dropped op cannot hide.
    t = torch.rand(*shape) + 0.5
    t = t * (torch.randint(0, 2, shape) * 2 - 1)
    return t.to(dtype)


def _targets(gm: torch.fx.GraphModule) -> list[object]:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def _assert_same(actual: object, expected: object) -> None:
    assert type(actual) is type(expected)
    if isinstance(expected, (tuple, list)):
        assert len(actual) == len(expected)  # type: ignore[arg-type]
        for a, e in zip(actual, expected, strict=True):  # type: ignore[call-overload]
            _assert_same(a, e)
    elif isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor)
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        torch.testing.assert_close(actual, expected, rtol=1e-6, atol=1e-6)
    else:
        assert actual == expected


def _broadcast_scalars(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b + 2.5) / (b - 3) + a.size(1) * a


class _Sub(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
        self.register_buffer("scale", torch.rand(3) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x) * self.scale


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.sub = _Sub()
        self.bias = torch.nn.Parameter(torch.rand(3) + 0.5)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.sub(x) + self.bias) * y.unsqueeze(-1)
        return h, h.sum(dim=-1)


def test_is_torchscript() -> None:
    traced = torch.jit.trace(_broadcast_scalars, (_rand(2, 3), _rand(3)))
    assert is_torchscript(traced)
    assert is_torchscript(torch.jit.script(_Sub()))
    assert not is_torchscript(_broadcast_scalars)
    assert not is_torchscript(_Sub())
    with pytest.raises(NvfuseError, match="expected a ScriptModule"):
        graph_module_from_script(_Sub())  # type: ignore[arg-type]


def test_traced_function_broadcast_and_scalars() -> None:
    traced = torch.jit.trace(_broadcast_scalars, (_rand(2, 3), _rand(3)))
    before = str(traced.graph)
    gm = graph_module_from_script(traced)
    assert str(traced.graph) == before  # the frontend works on a copy
    assert all(isinstance(t, torch._ops.OpOverload) for t in _targets(gm))
    assert [n.op for n in gm.graph.nodes].count("placeholder") == 2
    for _ in range(3):
        a, b = _rand(2, 3), _rand(3)
        _assert_same(gm(a, b), traced(a, b))
    # Sizes stay symbolic (aten.sym_size), so another batch size gives the traced answer too.
    assert torch.ops.aten.sym_size.int in _targets(gm)
    a, b = _rand(5, 3), _rand(3)
    _assert_same(gm(a, b), traced(a, b))


def test_traced_module_parameters_and_buffers_are_shared() -> None:
    net = _Net()
    traced = torch.jit.trace(net, (_rand(2, 4), _rand(2)))
    gm = graph_module_from_script(traced)
    assert gm.sub.lin.weight is net.sub.lin.weight
    assert gm.sub.lin.bias is net.sub.lin.bias
    assert gm.bias is net.bias
    assert gm.sub.scale is net.sub.scale
    assert dict(gm.named_parameters()).keys() == {"bias", "sub.lin.weight", "sub.lin.bias"}
    assert "sub.scale" in dict(gm.named_buffers())
    # Forward takes exactly the user's tensors (self is dropped).
    assert [n.name for n in gm.graph.nodes if n.op == "placeholder"] == ["x", "y"]
    x, y = _rand(2, 4), _rand(2)
    _assert_same(gm(x, y), traced(x, y))
    # An in-place weight update is seen by the converted graph.
    with torch.no_grad():
        net.sub.lin.weight.mul_(-2.0)
        net.sub.scale.add_(1.0)
    _assert_same(gm(x, y), traced(x, y))
    _assert_same(gm(x, y), net(x, y))


def test_scripted_module_with_submodules_is_inlined() -> None:
    net = _Net()
    scripted = torch.jit.script(net)
    gm = graph_module_from_script(scripted)
    assert torch.ops.aten.linear.default in _targets(gm)
    assert not any(n.op == "call_module" for n in gm.graph.nodes)
    assert gm.sub.lin.weight is net.sub.lin.weight
    x, y = _rand(3, 4), _rand(3)
    _assert_same(gm(x, y), scripted(x, y))


def test_scripted_function() -> None:
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = torch.sigmoid(x) * y + x.shape[0]
        return z.to(torch.float16).to(torch.float32) - 1.5

    scripted = torch.jit.script(fn)
    gm = graph_module_from_script(scripted)
    # TorchScript's dtype ints become torch.dtype in the graph IR.
    casts = [n for n in gm.graph.nodes if n.target == torch.ops.aten.to.dtype]
    assert [n.args[1] for n in casts] == [torch.float16, torch.float32]
    for shape in [(4, 5), (2, 5)]:
        x, y = _rand(*shape), _rand(5)
        _assert_same(gm(x, y), scripted(x, y))


def test_tuple_and_list_outputs() -> None:
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        a, b = x.chunk(2, dim=1)
        values, indices = x.max(dim=0)
        return (a * 2, [b + 1, values, indices])

    traced = torch.jit.trace(fn, (_rand(3, 4),), strict=False)
    scripted = torch.jit.script(fn)
    for original in (traced, scripted):
        gm = graph_module_from_script(original)
        assert operator.getitem in _targets(gm)  # multi-output ops are picked apart
        x = _rand(3, 4)
        out = gm(x)
        assert isinstance(out, tuple) and isinstance(out[1], list)
        _assert_same(out, original(x))


def test_tensor_constants_become_buffers() -> None:
    table = torch.tensor([1.5, -2.0, 3.0], dtype=torch.float64)

    def fn(x: torch.Tensor) -> torch.Tensor:
        return x * torch.tensor([0.5, 2.0, -1.0]) + table

    traced = torch.jit.trace(fn, (_rand(2, 3),))
    gm = graph_module_from_script(traced)
    constants = [n.target for n in gm.graph.nodes if n.op == "get_attr"]
    assert constants and all(t.startswith("_tensor_constant") for t in constants)
    assert all(t in dict(gm.named_buffers()) for t in constants)
    x = _rand(2, 3)
    _assert_same(gm(x), traced(x))


def test_dtype_of_scripted_input_needs_example_inputs() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return (x * 2).to(x.dtype) + x

    scripted = torch.jit.script(fn)
    with pytest.raises(NvfuseError, match=r"node prim::dtype .* is not supported"):
        graph_module_from_script(scripted)
    x = _rand(2, 3, dtype=torch.float64)
    gm = graph_module_from_script(scripted, (x,))
    _assert_same(gm(x), scripted(x))


def test_control_flow_is_rejected_with_source() -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return x * 2
        return x - 1

    scripted = torch.jit.script(fn)
    with pytest.raises(NvfuseError, match=r"TorchScript frontend: node prim::If \(.*\) is not "
                                          r"supported"):
        graph_module_from_script(scripted)


def test_traced_module_through_annotate_and_passes() -> None:
    net = _Net()
    traced = torch.jit.trace(net, (_rand(2, 4), _rand(2)))
    gm = graph_module_from_script(traced)
    x, y = _rand(6, 4), _rand(6)
    annotated = annotate(gm, (x, y))
    assert all("val" in n.meta for n in annotated.graph.nodes)
    optimized = run_passes(annotated)
    assert optimized.sub.lin.weight is net.sub.lin.weight
    _assert_same(optimized(x, y), traced(x, y))


def test_data_dependent_graph_is_annotated_from_a_real_run() -> None:
    """aten::Int of a tensor cannot run on fake tensors; annotate falls back to the real inputs."""
    from nvfuse.graph.annotate import annotate

    def fn(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x) * int(x.abs().max().ceil())

    x = torch.rand(3, 4) * 5 + 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(fn, (x,))
    gm = annotate(graph_module_from_script(traced), [x])
    vals = [n.meta["val"] for n in gm.graph.nodes if n.op == "call_function"]
    assert all(not isinstance(v, torch.Tensor) or v.device == x.device for v in vals)
    torch.testing.assert_close(gm(x), fn(x))


class _Nested(torch.nn.Module):
    """Tuple and list inputs, a nested tuple / list output, None arguments and constants."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.rand(4) + 0.5)
        self.register_buffer("shift", _rand(4))
        self.scale = 2.5  # a Python constant, baked into the trace

    def forward(self, pair: tuple[torch.Tensor, torch.Tensor], items: list[torch.Tensor]
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, y = pair
        h = torch.nn.functional.layer_norm(x + y, (4,), None, None, 1e-3)
        g = torch.nn.functional.layer_norm(h * self.scale, (4,), self.weight, None)
        z = torch.nn.functional.linear(g, self.weight.unsqueeze(0).expand(4, 4), None)
        return (h, (g + self.shift, h.sum(-1))), [z, items[0] * items[1]]


def test_nested_inputs_outputs_and_none_arguments() -> None:
    net = _Nested()
    args = lambda n: ((_rand(n, 4), _rand(4)), [_rand(n, 4), _rand(n, 1)])
    traced = torch.jit.trace(net, args(3), strict=False)
    gm = graph_module_from_script(traced)
    for n in (3, 5):
        example = args(n)
        _assert_same(gm(*example), net(*example))


class _Dicts(torch.nn.Module):
    def forward(self, d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"norm": torch.nn.functional.layer_norm(d["x"], (4,)) * d["w"],
                "act": torch.relu(d["x"])}


def test_dict_input_and_output() -> None:
    """torch.jit.trace(strict=False) takes and returns dicts: prim::DictConstruct and
    aten::__getitem__ on a dict input (both used to be rejected)."""
    example = {"x": _rand(3, 4), "w": _rand(4)}
    traced = torch.jit.trace(_Dicts(), (example,), strict=False)
    gm = graph_module_from_script(traced)
    out = gm(example)
    assert isinstance(out, dict) and list(out) == ["norm", "act"]
    for key, value in _Dicts()(example).items():
        torch.testing.assert_close(out[key], value)
