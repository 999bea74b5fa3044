"""CUDA-graph mode (nvfuse/runtime/graphs.py) on the CPU: the `cuda_graphs` keyword and the
torch.compile option route, which calls are captured and why not, and the orchestration
(static input copies, one capture per key, a second capture while the caller holds the first's
outputs, eviction) through the interpreter with a stand-in graph object.

`FakeBackend` stands in for torch.cuda.CUDAGraph: its capture runs the replay once on the
static inputs (as a real capture records the launches) and its `replay()` recomputes from the
static inputs and writes the results into the very output tensors the capture returned -- what
a real graph's kernels do at fixed addresses.  Every result is compared with eager on fresh
random inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F
import torch.utils._pytree as pytree

import nvfuse
from nvfuse import api, config, counters
from nvfuse.runtime import graphs
from nvfuse.runtime.graphs import GraphedReplay
from nvfuse.runtime.replay import Replay

# the skip reasons warn once each; the tests read them from `cuda_graph_skips` instead
pytestmark = pytest.mark.filterwarnings("ignore:nvfuse. cuda_graphs:RuntimeWarning")


class FakeGraph:
    def __init__(self, fn: Callable[[], Any], result: Any) -> None:
        self.fn = fn
        self.outputs = [t for t in pytree.tree_leaves(result) if isinstance(t, torch.Tensor)]
        self.replays = 0
        self.released = False

    def replay(self) -> None:
        assert not self.released
        self.replays += 1
        real_bump = counters.bump_hits
        counters.bump_hits = lambda *a: None  # type: ignore[assignment]  # a graph counts nothing
        try:
            fresh = [t for t in pytree.tree_leaves(self.fn()) if isinstance(t, torch.Tensor)]
        finally:
            counters.bump_hits = real_bump  # type: ignore[assignment]
        for out, new in zip(self.outputs, fresh):
            if out is not new:
                out.copy_(new)

    def reset(self) -> None:
        self.released = True


class FakeBackend:
    def __init__(self, fail: bool = False) -> None:
        self.graphs: list[FakeGraph] = []
        self.pools = 0
        self.fail = fail

    def refuses(self, tensors: Any, cfg: config.Config) -> str | None:
        return None if all(t.device.type == "cpu" for t in tensors) else "not on the CPU"

    def new_pool(self) -> Any:
        self.pools += 1
        return object()

    def capture(self, fn: Callable[[], Any], pool: Any, device: torch.device) -> tuple[Any, Any]:
        if self.fail:
            raise RuntimeError("operation not permitted when stream is capturing")
        result = fn()
        graph = FakeGraph(fn, result)
        self.graphs.append(graph)
        return graph, result

    def release(self, graph: Any) -> None:
        graph.reset()


@pytest.fixture
def fake() -> Iterator[FakeBackend]:
    backend = FakeBackend()
    previous = graphs.set_backend(backend)
    yield backend
    graphs.set_backend(previous)


def bias_gelu(x: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return F.gelu(x + b) + r


def _inputs(rows: int = 4, cols: int = 8) -> tuple[torch.Tensor, ...]:
    return torch.randn(rows, cols), torch.randn(cols), torch.randn(rows, cols)


def _entry(fm: nvfuse.FusedModule, inputs: tuple[torch.Tensor, ...]) -> Any:
    return fm._replays[api.replay_key(inputs)].replay


# -- API plumbing ------------------------------------------------------------------------------
def test_default_path_stores_plain_replays(interpret: None) -> None:
    args = _inputs()
    fm = nvfuse.fuse(bias_gelu, args)
    fm(*args)
    assert type(_entry(fm, args)) is Replay and fm._graphs is None
    assert fm.cuda_graph_skips == {} and fm.graph_inputs(*args) is None


def test_fuse_keyword_wraps_the_replay(interpret: None, fake: FakeBackend) -> None:
    args = _inputs()
    fm = nvfuse.fuse(bias_gelu, args, cuda_graphs=True)
    torch.testing.assert_close(fm(*args), bias_gelu(*args))
    assert isinstance(_entry(fm, args), GraphedReplay)
    assert nvfuse.stats()["graph_captures"] == 0  # the first call records: kernels run once


def test_backend_options_from_torch_compile_arguments() -> None:
    assert api.backend_options(None, None) == {"cuda_graphs": False}
    assert api.backend_options({"cuda_graphs": True}) == {"cuda_graphs": True}
    assert api.backend_options(None, "reduce-overhead") == {"cuda_graphs": True}
    assert api.backend_options(None, "max-autotune-no-cudagraphs") == {"cuda_graphs": False}
    with pytest.raises(ValueError, match="unknown torch.compile option"):
        api.backend_options({"triton.cudagraphs": True})
    with pytest.raises(ValueError, match="expected True or False"):
        api.backend_options({"cuda_graphs": "yes"})


def test_torch_compile_wrapper_hands_options_to_the_backend() -> None:
    """torch.compile passes a named non-inductor backend `options=` (and `mode=`) as keyword
    arguments through its `_TorchCompileWrapper`; nvfuse_backend reads them."""
    seen: list[bool] = []

    def spy(gm: Any, example_inputs: Any, *, options: Any = None, mode: Any = None,
            **kw: Any) -> Any:
        seen.append(api.backend_options(options, mode)["cuda_graphs"])
        return gm.forward
    wrapper = torch._TorchCompileWrapper(spy, None, {"cuda_graphs": True}, None)
    assert wrapper.kwargs == {"options": {"cuda_graphs": True}}
    wrapper(torch.fx.symbolic_trace(torch.nn.ReLU()), [torch.randn(3)])
    wrapper = torch._TorchCompileWrapper(spy, "reduce-overhead", None, None)
    wrapper(torch.fx.symbolic_trace(torch.nn.ReLU()), [torch.randn(3)])
    assert seen == [True, True]


def _mlp_tail(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x + b) * x


@pytest.mark.parametrize("how", ["options", "mode", "callable"])
def test_torch_compile_inference_captures(how: str, interpret: None, fake: FakeBackend) -> None:
    torch._dynamo.reset()
    kwargs: dict[str, Any] = {
        "options": {"backend": "nvfuse", "options": {"cuda_graphs": True}},
        "mode": {"backend": "nvfuse", "mode": "reduce-overhead"},
        "callable": {"backend": nvfuse.backend(cuda_graphs=True)},
    }[how]
    compiled = torch.compile(_mlp_tail, **kwargs)
    with torch.no_grad():
        for _ in range(4):
            x, b = torch.randn(6, 5), torch.randn(5)
            torch.testing.assert_close(compiled(x, b), _mlp_tail(x, b))
    stats = nvfuse.stats()
    assert stats["graph_captures"] >= 1 and stats["graph_replays"] >= 2


def test_torch_compile_without_the_option_captures_nothing(interpret: None,
                                                            fake: FakeBackend) -> None:
    torch._dynamo.reset()
    compiled = torch.compile(_mlp_tail, backend="nvfuse")
    with torch.no_grad():
        for _ in range(3):
            x, b = torch.randn(6, 5), torch.randn(5)
            torch.testing.assert_close(compiled(x, b), _mlp_tail(x, b))
    assert nvfuse.stats()["graph_captures"] == 0 and not fake.graphs


def test_torch_compile_training_graph_is_not_captured(interpret: None, fake: FakeBackend) -> None:
    torch._dynamo.reset()
    w = torch.randn(5, requires_grad=True)
    compiled = torch.compile(lambda x: torch.sigmoid(x * w), backend="nvfuse",
                             options={"cuda_graphs": True})
    x = torch.randn(6, 5)
    with pytest.warns(RuntimeWarning, match="needs autograd"):
        out = compiled(x)
    out.sum().backward()
    expected_w = w.detach().clone().requires_grad_()
    torch.sigmoid(x * expected_w).sum().backward()
    torch.testing.assert_close(w.grad, expected_w.grad)
    assert nvfuse.stats()["graph_captures"] == 0


# -- orchestration -----------------------------------------------------------------------------
def test_second_call_captures_then_replays_matching_eager(interpret: None,
                                                          fake: FakeBackend) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    fm(*_inputs())  # records
    before = nvfuse.stats()
    for _ in range(6):
        args = _inputs()
        out = fm(*args)
        torch.testing.assert_close(out, bias_gelu(*args))
        del out  # free: the next call may replay the same capture
    after = nvfuse.stats()
    assert after["graph_captures"] - before["graph_captures"] == 1 and len(fake.graphs) == 1
    assert after["graph_replays"] - before["graph_replays"] == 6 == fake.graphs[0].replays
    assert after["launches"] - before["launches"] == 6  # one kernel per replayed call
    assert fake.pools == 1 and fm.cuda_graph_skips == {}


def test_outputs_are_never_overwritten_while_held(interpret: None, fake: FakeBackend) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    fm(*_inputs())
    a, b, c, d = _inputs(), _inputs(), _inputs(), _inputs()
    ya = fm(*a)  # capture 1
    yb = fm(*b)  # ya held: capture 2
    view = yb[1:]  # a view keeps yb's buffer alive too
    del yb
    yc = fm(*c)  # both held: no graph, fresh outputs
    assert len(fake.graphs) == 2 and nvfuse.stats()["graph_replays"] == 2
    assert sum(fm.cuda_graph_skips.values()) == 1
    assert "still holds the outputs" in next(iter(fm.cuda_graph_skips))
    torch.testing.assert_close(ya, bias_gelu(*a))
    torch.testing.assert_close(view, bias_gelu(*b)[1:])
    torch.testing.assert_close(yc, bias_gelu(*c))
    del ya
    yd = fm(*d)  # capture 1 is free again: replayed
    assert nvfuse.stats()["graph_replays"] == 3 and len(fake.graphs) == 2
    torch.testing.assert_close(yd, bias_gelu(*d))
    torch.testing.assert_close(view, bias_gelu(*b)[1:])


def test_loop_alternates_two_captures(interpret: None, fake: FakeBackend) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    fm(*_inputs())
    y = None
    for _ in range(6):
        args = _inputs()
        y = fm(*args)  # the previous y is alive during the call
        torch.testing.assert_close(y, bias_gelu(*args))
    assert [g.replays for g in fake.graphs] == [3, 3] and fm.cuda_graph_skips == {}
    assert fake.pools == 2  # a pool per capture: they replay in any order


def test_capture_bound_of_one_runs_held_calls_without_a_graph(
        interpret: None, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graphs, "MAX_CAPTURES", 1)
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    fm(*_inputs())
    held = []
    for _ in range(3):
        args = _inputs()
        held.append((fm(*args), args))
    for out, args in held:
        torch.testing.assert_close(out, bias_gelu(*args))
    assert len(fake.graphs) == 1 and nvfuse.stats()["graph_replays"] == 1
    assert nvfuse.stats()["graph_skips"] == 2


def test_static_inputs_passed_back_are_not_copied(interpret: None, fake: FakeBackend,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    args = _inputs()
    fm = nvfuse.fuse(bias_gelu, args, cuda_graphs=True)
    fm(*args)
    fm(*args)  # captures
    static = fm.graph_inputs(*args)
    assert static is not None and len(static) == 3
    copies = [0]
    real_copy = torch.Tensor.copy_

    def counted(self: torch.Tensor, *a: Any, **k: Any) -> torch.Tensor:
        copies[0] += 1
        return real_copy(self, *a, **k)
    monkeypatch.setattr(torch.Tensor, "copy_", counted)
    for _ in range(3):
        fresh = _inputs()
        for s, t in zip(static, fresh):
            real_copy(s, t)
        torch.testing.assert_close(fm(*static), bias_gelu(*fresh))
    replay_copies = copies[0]
    fresh = _inputs()
    torch.testing.assert_close(fm(*fresh), bias_gelu(*fresh))
    # the stand-in graph copies its one output per replay; the inputs are copied only when they
    # are not the static buffers themselves
    assert replay_copies == 3
    assert copies[0] - replay_copies == 3 + 1


def test_new_shape_captures_again_and_eviction_bounds_captures(
        interpret: None, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(graphs, "MAX_CAPTURES", 2)
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    shapes = [(4, 8), (5, 8), (6, 8)]
    for rows, cols in shapes * 2:  # each shape: record, then capture
        args = _inputs(rows, cols)
        torch.testing.assert_close(fm(*args), bias_gelu(*args))
    assert fm._graphs is not None and fm._graphs.count() <= 2
    for rows, cols in shapes:  # evicted shapes capture again; the results stay right
        args = _inputs(rows, cols)
        torch.testing.assert_close(fm(*args), bias_gelu(*args))
        assert fm._graphs.count() <= 2
    assert sum(g.released for g in fake.graphs) >= 2
    assert nvfuse.stats()["graph_captures"] == len(fake.graphs) >= 4


def test_output_that_is_an_input_is_the_callers_tensor(interpret: None, fake: FakeBackend
                                                       ) -> None:
    def fn(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = torch.tanh(x) * y
        return z, x, z

    x, y = torch.randn(3, 4), torch.randn(3, 4)
    fm = nvfuse.fuse(fn, (x, y), cuda_graphs=True)
    fm(x, y)
    for _ in range(3):
        x, y = torch.randn(3, 4), torch.randn(3, 4)
        out = fm(x, y)
        assert out[1] is x and out[0] is out[2]
        torch.testing.assert_close(out[0], fn(x, y)[0])
        del out
    assert nvfuse.stats()["graph_replays"] == 3


class Scaled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.rand(8) + 0.5, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x * self.w) + self.w


def test_weight_updated_in_place_is_read_and_moved_weight_recaptures(
        interpret: None, fake: FakeBackend) -> None:
    model = Scaled()
    fm = nvfuse.fuse(model, (torch.randn(4, 8),), cuda_graphs=True)
    fm(torch.randn(4, 8))
    x = torch.randn(4, 8)
    torch.testing.assert_close(fm(x), model(x))
    with torch.no_grad():
        model.w.mul_(2.0)  # same storage: the graph reads the new values
    x = torch.randn(4, 8)
    torch.testing.assert_close(fm(x), model(x))
    assert nvfuse.stats()["graph_captures"] == 1
    model.w.data = torch.rand(8) + 3.0  # a new storage: the old address is stale
    x = torch.randn(4, 8)
    torch.testing.assert_close(fm(x), model(x))
    assert nvfuse.stats()["graph_captures"] == 2 and fake.graphs[0].released


# -- eligibility -------------------------------------------------------------------------------
def test_interpreter_is_not_captured_with_the_cuda_backend(interpret: None) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    for _ in range(3):
        args = _inputs()
        torch.testing.assert_close(fm(*args), bias_gelu(*args))
    assert list(fm.cuda_graph_skips) == ["kernels run on the CPU interpreter (NVFUSE_INTERPRET=1)"]
    assert nvfuse.stats()["graph_captures"] == 0 and nvfuse.stats()["graph_skips"] == 1


def test_random_plan_is_not_captured_and_draws_as_without_the_flag(interpret: None,
                                                                   fake: FakeBackend) -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return (torch.rand_like(x) < 0.5) * x  # a replayable plan (one kernel drawing)

    x = torch.rand(32, 32) + 0.5
    with_graphs = nvfuse.fuse(fn, (x,), cuda_graphs=True)
    without = nvfuse.fuse(fn, (x,))
    for seed in range(3):
        torch.manual_seed(seed)
        a = with_graphs(x)
        torch.manual_seed(seed)
        b = without(x)
        torch.testing.assert_close(a, b)
    assert not fake.graphs and any("random" in r for r in with_graphs.cuda_graph_skips)
    masks = [with_graphs(x) == 0 for _ in range(2)]
    assert not torch.equal(*masks)  # a fresh mask per call


def test_plan_with_eager_ops_is_not_captured(interpret: None, fake: FakeBackend) -> None:
    def fn(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.relu(torch.sigmoid(x) @ w) * 2

    x, w = torch.randn(4, 6), torch.randn(6, 3)
    fm = nvfuse.fuse(fn, (x, w), cuda_graphs=True)
    for _ in range(3):
        x, w = torch.randn(4, 6), torch.randn(6, 3)
        torch.testing.assert_close(fm(x, w), fn(x, w))
    assert not fake.graphs and any("not fully fused" in r for r in fm.cuda_graph_skips)


def test_plan_writing_an_input_is_not_captured(interpret: None, fake: FakeBackend) -> None:
    def fn(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x.mul_(2.0)
        return torch.tanh(x) + y

    x0, y = torch.randn(4, 4), torch.randn(4, 4)
    fm = nvfuse.fuse(fn, (x0.clone(), y), cuda_graphs=True)
    for _ in range(3):
        x0, y = torch.randn(4, 4), torch.randn(4, 4)
        mine, theirs = x0.clone(), x0.clone()
        torch.testing.assert_close(fm(mine, y), fn(theirs, y))
        torch.testing.assert_close(mine, theirs)
    assert not fake.graphs and any("writes into an input" in r for r in fm.cuda_graph_skips)


def test_call_needing_autograd_is_not_captured(interpret: None, fake: FakeBackend) -> None:
    x = torch.randn(4, 8, requires_grad=True)
    b, r = torch.randn(8), torch.randn(4, 8)
    fm = nvfuse.fuse(bias_gelu, (x, b, r), cuda_graphs=True)
    for _ in range(2):
        fm(x, b, r).sum().backward()
    expected = x.detach().clone().requires_grad_()
    for _ in range(2):
        bias_gelu(expected, b, r).sum().backward()
    torch.testing.assert_close(x.grad, expected.grad)
    assert not fake.graphs and "the call needs autograd" in fm.cuda_graph_skips


def test_expanded_input_is_not_captured(interpret: None, fake: FakeBackend) -> None:
    x = torch.randn(1, 8).expand(4, 8)
    fm = nvfuse.fuse(bias_gelu, (x, torch.randn(8), torch.randn(4, 8)), cuda_graphs=True)
    for _ in range(3):
        x, b, r = torch.randn(1, 8).expand(4, 8), torch.randn(8), torch.randn(4, 8)
        torch.testing.assert_close(fm(x, b, r), bias_gelu(x, b, r))
    assert not fake.graphs and any("overlapping" in r for r in fm.cuda_graph_skips)


def test_failed_capture_runs_without_a_graph(interpret: None, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    monkeypatch.delenv("NVFUSE_STRICT")
    config.reload()
    previous = graphs.set_backend(FakeBackend(fail=True))
    try:
        fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
        for _ in range(4):
            args = _inputs()
            torch.testing.assert_close(fm(*args), bias_gelu(*args))
    finally:
        graphs.set_backend(previous)
    assert any("capture failed" in r for r in fm.cuda_graph_skips)
    assert nvfuse.stats()["graph_captures"] == 0


def test_failed_capture_raises_under_strict(interpret: None) -> None:
    previous = graphs.set_backend(FakeBackend(fail=True))
    try:
        fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
        fm(*_inputs())
        with pytest.raises(RuntimeError, match="capturing"):
            fm(*_inputs())
    finally:
        graphs.set_backend(previous)
