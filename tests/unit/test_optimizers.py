"""torch.compile(optimizer.step, backend="nvfuse") against eager, interpreted: SGD, Adam and
AdamW (foreach and single-tensor), several steps, parameters and state updated in place.

Each parameter's whole update is one pointwise group (foreach ops decompose per tensor,
nvfuse/frontend/foreach.py) that writes the parameter and its state in place
(nvfuse/fusion/inplace.py): one kernel per parameter, the 0-dim `step` counters' increments as
0-dim groups of their own, also in place (inside the update's kernel every element reads the
counter); all of them in one or two launches (horizontal fusion), no copy left.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch._dynamo
from torch.profiler import profile

import nvfuse
from nvfuse import config

STEPS = 5
# mixed shapes: a matrix, a vector, a 0-dim scalar, and a matrix whose gradient is transposed
SHAPES = [(6, 4), (5,), (), (3, 4)]


@pytest.fixture(autouse=True)
def _fresh_dynamo() -> None:
    torch._dynamo.reset()


def _params(dtype: torch.dtype, device: str) -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    return [torch.nn.Parameter(torch.randn(s).to(dtype=dtype, device=device)) for s in SHAPES]


def _grads(params: list[torch.nn.Parameter], step: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(100 + step)
    grads = [torch.randn(p.shape, generator=g).to(p) for p in params]
    grads[3] = torch.randn(4, 3, generator=g).to(params[3]).t()  # non-contiguous
    return grads


def _state_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [v for p in opt.param_groups[0]["params"] for v in opt.state[p].values()
            if isinstance(v, torch.Tensor)]


def run_steps(make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
              dtype: torch.dtype = torch.float32, device: str = "cpu") -> tuple[int, int]:
    """Five steps eager and compiled from the same start; checks values and that every
    parameter and state tensor stays the same tensor, written in place.  Returns (launches,
    copy_ ops) of the last compiled step."""
    eager_params, params = _params(dtype, device), _params(dtype, device)
    eager_opt, opt = make(eager_params), make(params)
    step = torch.compile(opt.step, backend="nvfuse")
    launches = copies = 0
    for i in range(STEPS):
        for p, g in zip(eager_params, _grads(eager_params, i)):
            p.grad = g
        for p, g in zip(params, _grads(params, i)):
            p.grad = g
        eager_opt.step()
        before = [(t, t.data_ptr()) for t in [*params, *_state_tensors(opt)]]
        nvfuse.reset_stats()
        with profile() as prof:
            step()
        launches = nvfuse.stats()["launches"]
        copies = sum(e.name == "aten::copy_" for e in prof.events())
        assert nvfuse.stats()["fallbacks"] == 0
        if i:  # the state exists from the first step on: the same tensors, same memory
            after = {id(t): t.data_ptr() for t in [*params, *_state_tensors(opt)]}
            assert all(after.get(id(t)) == ptr for t, ptr in before)
    tol = {"atol": 2e-2, "rtol": 2e-2} if dtype is torch.bfloat16 else {}
    for p, q in zip(params, eager_params):
        torch.testing.assert_close(p, q, **tol)
    for s, r in zip(_state_tensors(opt), _state_tensors(eager_opt)):
        torch.testing.assert_close(s, r, **tol)
    return launches, copies


# (name, optimizer factory, whether it counts steps: 0-dim counters, a group apart)
CASES: list[tuple[str, Callable[..., Any], bool]] = [
    ("sgd_momentum_dampening_wd_maximize", lambda ps: torch.optim.SGD(
        ps, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.1, maximize=True,
        foreach=False), False),
    ("sgd_nesterov_foreach", lambda ps: torch.optim.SGD(
        ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01, foreach=True), False),
    ("sgd_plain", lambda ps: torch.optim.SGD(ps, lr=0.1, foreach=True), False),
    ("adam_amsgrad_wd", lambda ps: torch.optim.Adam(
        ps, lr=0.01, amsgrad=True, weight_decay=0.1, foreach=False), True),
    ("adam_maximize_foreach", lambda ps: torch.optim.Adam(
        ps, lr=0.01, maximize=True, foreach=True), True),
    ("adamw", lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1, foreach=False), True),
    ("adamw_amsgrad_foreach", lambda ps: torch.optim.AdamW(
        ps, lr=0.01, amsgrad=True, foreach=True), True),
]


@pytest.mark.parametrize(("name", "make", "counts"), CASES, ids=[c[0] for c in CASES])
def test_step_matches_eager_in_place(name: str, make: Callable[..., Any], counts: bool,
                                     interpret: None) -> None:
    launches, left = run_steps(make)
    assert launches == per_step_launches(counts)
    assert left == 0


def per_step_launches(counts: bool) -> int:
    """One kernel per parameter's whole update, and one per step counter of a parameter that
    is not 0-dim itself (a 0-dim parameter's counter joins its update); horizontally, one
    launch for the counters and one for the updates that read them."""
    if config.get().horizontal:
        return 2 if counts else 1
    return len(SHAPES) + (sum(len(s) > 0 for s in SHAPES) if counts else 0)


def test_bf16_parameters(interpret: None) -> None:
    launches, left = run_steps(lambda ps: torch.optim.AdamW(ps, lr=0.01, foreach=True),
                          torch.bfloat16)
    assert launches == per_step_launches(True) and left == 0


@pytest.mark.parametrize("make", [lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9),
                                  lambda ps: torch.optim.AdamW(ps, lr=1e-2)],
                         ids=["sgd", "adamw"])
def test_explain_and_fuse_of_a_step_leave_no_trace(make, interpret: None) -> None:
    """explain(opt.step) changes no parameter, grad or state; nvfuse.fuse(opt.step) goes
    through torch.compile (make_fx would capture the parameters as constants) and never runs
    the step to see whether it raises (that would be an extra update)."""
    g = torch.Generator().manual_seed(5)
    params = [torch.randn(s, generator=g).requires_grad_() for s in [(8, 4), (4,), (3, 3, 3)]]
    twins = [p.detach().clone().requires_grad_() for p in params]
    for p, t in zip(params, twins):
        p.grad = torch.randn(p.shape, generator=g)
        t.grad = p.grad.clone()
    opt, ref = make(params), make(twins)
    opt.step()
    ref.step()
    values = [p.detach().clone() for p in params]
    state = {k: v.clone() for s in opt.state.values() for k, v in s.items()
             if isinstance(v, torch.Tensor)}
    report = nvfuse.explain(opt.step)
    assert report.kernels_per_step <= 2, str(report)
    assert all(torch.equal(v, p) for v, p in zip(values, params))
    after = {k: v for s in opt.state.values() for k, v in s.items() if isinstance(v, torch.Tensor)}
    assert all(torch.equal(state[k], after[k]) for k in state)
    step = nvfuse.fuse(opt.step, ())
    for _ in range(3):
        step()
        ref.step()
    for p, t in zip(params, twins):
        torch.testing.assert_close(p, t, rtol=1e-5, atol=1e-6)
