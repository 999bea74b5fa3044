"""CUDA-graph mode on the device (nvfuse/runtime/graphs.py with torch.cuda.CUDAGraph): results
match eager across many replays with changing inputs, the output reuse rule (a held result is
never overwritten), a new shape captures again, random plans are not captured, replays follow
torch's current stream, and the counters say what ran.  Outputs poisoned, strict."""

from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch.nn.functional as F

import nvfuse

pytestmark = [pytest.mark.gpu,
              pytest.mark.filterwarnings("ignore:nvfuse. cuda_graphs:RuntimeWarning")]

DEV = "cuda"


def bias_gelu(x: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return F.gelu(x + b) + r


def norm_gelu(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """More than one kernel per call (a reduction and the pointwise work around it)."""
    h = F.layer_norm(x, (x.shape[-1],), w)
    return F.gelu(h) * x.sum(-1, keepdim=True)


def _inputs(rows: int = 64, cols: int = 256) -> tuple[torch.Tensor, ...]:
    return (torch.randn(rows, cols, device=DEV), torch.randn(cols, device=DEV),
            torch.randn(rows, cols, device=DEV))


def _delta(before: dict[str, int], key: str) -> int:
    return nvfuse.stats()[key] - before[key]


def test_replays_match_eager_with_changing_inputs(strict_poisoned: None) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    fm(*_inputs())  # records; the next call captures
    before = nvfuse.stats()
    for _ in range(20):
        args = _inputs()
        out = fm(*args)
        torch.testing.assert_close(out, bias_gelu(*args))
        del out
    assert _delta(before, "graph_captures") == 1
    assert _delta(before, "graph_replays") == 20
    assert _delta(before, "launches") == 20 and fm.cuda_graph_skips == {}


def test_held_results_are_never_overwritten(strict_poisoned: None) -> None:
    fm = nvfuse.fuse(norm_gelu, (torch.randn(32, 128, device=DEV),
                                 torch.rand(128, device=DEV) + 0.5), cuda_graphs=True)
    w = torch.rand(128, device=DEV) + 0.5
    fm(torch.randn(32, 128, device=DEV), w)
    kept = []
    for _ in range(6):  # all held: two captures, then calls without a graph
        x = torch.randn(32, 128, device=DEV)
        kept.append((fm(x, w), x))
    views = [out[3:] for out, _ in kept]
    kept = [(None, x) for _, x in kept]  # only views stay alive
    for _ in range(4):  # every capture's outputs still viewed: no replay may overwrite them
        fm(torch.randn(32, 128, device=DEV), w)
    torch.cuda.synchronize()
    for view, (_, x) in zip(views, kept):
        torch.testing.assert_close(view, norm_gelu(x, w)[3:])
    stats = nvfuse.stats()
    assert stats["graph_captures"] == 2 and stats["graph_replays"] == 2


def test_loop_alternates_two_captures(strict_poisoned: None) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    fm(*_inputs())
    previous = None
    for _ in range(10):
        args = _inputs()
        out = fm(*args)
        if previous is not None:  # the previous result survived this call
            torch.testing.assert_close(previous[0], bias_gelu(*previous[1]))
        previous = (out, args)
    stats = nvfuse.stats()
    assert stats["graph_captures"] == 2 and stats["graph_replays"] == 10
    assert fm.cuda_graph_skips == {}


def test_new_shape_captures_again(strict_poisoned: None) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    for rows in (64, 64, 96, 96, 64, 96):
        args = _inputs(rows)
        torch.testing.assert_close(fm(*args), bias_gelu(*args))
    stats = nvfuse.stats()
    assert stats["graph_captures"] == 2 and stats["graph_replays"] == 4


def test_random_plan_is_not_captured(strict_poisoned: None) -> None:
    def fn(x: torch.Tensor) -> torch.Tensor:
        return (torch.rand_like(x) < 0.5) * x

    x = torch.rand(128, 128, device=DEV) + 0.5
    graphed, plain = nvfuse.fuse(fn, (x,), cuda_graphs=True), nvfuse.fuse(fn, (x,))
    for seed in range(4):
        torch.manual_seed(seed)
        a = graphed(x)
        torch.manual_seed(seed)
        torch.testing.assert_close(a, plain(x))
    assert not torch.equal(graphed(x), graphed(x))  # a fresh mask per call
    assert nvfuse.stats()["graph_captures"] == 0
    assert any("random" in reason for reason in graphed.cuda_graph_skips)


def test_replays_on_the_current_stream(strict_poisoned: None) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs(), cuda_graphs=True)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    results = []
    with torch.cuda.stream(side):
        for _ in range(5):  # record, capture, replays: all issued on `side`
            args = _inputs(512, 1024)
            results.append((fm(*args), args))
    side.synchronize()
    torch.cuda.current_stream().wait_stream(side)
    for out, args in results:
        torch.testing.assert_close(out, bias_gelu(*args))
    assert nvfuse.stats()["graph_captures"] >= 1


def test_static_inputs_passed_back(strict_poisoned: None) -> None:
    args = _inputs()
    fm = nvfuse.fuse(bias_gelu, args, cuda_graphs=True)
    fm(*args)
    fm(*args)
    static = fm.graph_inputs(*args)
    assert static is not None
    for _ in range(5):
        fresh = _inputs()
        for s, t in zip(static, fresh):
            s.copy_(t)
        out = fm(*static)
        torch.testing.assert_close(out, bias_gelu(*fresh))
        del out


def test_weight_moved_recaptures(strict_poisoned: None) -> None:
    class Scaled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.rand(256, device=DEV) + 0.5, requires_grad=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x * self.w) + self.w

    model = Scaled()
    fm = nvfuse.fuse(model, (torch.randn(64, 256, device=DEV),), cuda_graphs=True)
    for step in range(6):
        if step == 3:
            model.w.data = torch.rand(256, device=DEV) + 2.0
        x = torch.randn(64, 256, device=DEV)
        out = fm(x)
        torch.testing.assert_close(out, model(x))
        del out
    assert nvfuse.stats()["graph_captures"] == 2


def test_torch_compile_option_captures(strict_poisoned: None) -> None:
    torch._dynamo.reset()

    def fn(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x + b) * x

    compiled = torch.compile(fn, backend="nvfuse", options={"cuda_graphs": True})
    with torch.no_grad():
        for _ in range(6):
            x, b = torch.randn(64, 256, device=DEV), torch.randn(256, device=DEV)
            out = compiled(x, b)
            torch.testing.assert_close(out, fn(x, b))
            del out
    stats = nvfuse.stats()
    assert stats["graph_captures"] >= 1 and stats["graph_replays"] >= 3
