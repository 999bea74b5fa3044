"""Group outputs written into the inputs they update (nvfuse/fusion/inplace.py and the executor):
the plan's writes, the call-time checks, the fallbacks that copy, and the kernels' pointers."""

from __future__ import annotations

import pytest
import torch

import nvfuse
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.fusion.inplace import find_writes
from nvfuse.pipeline import plan
from nvfuse.runtime import executor


def _momentum(p: torch.Tensor, buf: torch.Tensor, g: torch.Tensor) -> None:
    buf.mul_(0.9).add_(g)
    p.add_(buf, alpha=-0.1)


def _inputs(shape: tuple[int, ...] = (6, 8)) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    return tuple(torch.randn(shape, generator=gen) for _ in range(3))


def _fresh(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return tuple(t.clone() for t in inputs)


def test_plan_writes_both_updates_and_leaves_no_copy() -> None:
    planned = plan(trace_to_aten(_momentum, _inputs()))
    (group,) = planned.groups
    assert len(group.writes) == 2 and len({i for _, i in group.writes}) == 2  # p and buf
    targets = [n.target for n in planned.fused.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.copy_.default not in targets


def test_kernel_writes_into_the_inputs(interpret: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)  # never poisons an input
    inputs = _inputs()
    p, buf, g = _fresh(inputs)
    expected = _fresh(inputs)
    _momentum(*expected)
    fm = nvfuse.fuse(_momentum, _fresh(inputs))
    ptrs = (p.data_ptr(), buf.data_ptr())
    versions = (p._version, buf._version)
    with torch.profiler.profile() as prof:
        fm(p, buf, g)
    torch.testing.assert_close((p, buf), expected[:2])
    assert (p.data_ptr(), buf.data_ptr()) == ptrs
    assert p._version > versions[0] and buf._version > versions[1]  # autograd sees the writes
    assert not any(e.name == "aten::copy_" for e in prof.events())
    assert nvfuse.stats()["launches"] == 1 and nvfuse.stats()["fallbacks"] == 0
    (kernel,) = fm.kernels
    assert kernel.signature[1].aliased and "__restrict__" not in kernel.source.split("{")[0]


def test_other_layout_at_a_call_copies(interpret: None) -> None:
    """A group planned to write into its input, called with that input transposed: the output
    takes eager's layout (the group's recorded one), no longer the input's, so the kernel
    writes a fresh tensor that is then copied into the input."""
    fm = nvfuse.fuse(_momentum, _inputs((6, 6)))
    (group,) = fm.fusion_groups
    k, i = group.writes[0]
    args = list(_inputs((6, 6)))
    args[i] = args[i].t().contiguous().t()  # same values' shape, other strides
    reference = [t.clone() for t in args]
    expected = group.eager(*reference)[k]
    written = args[i]
    ptr = written.data_ptr()
    out = group(*args)
    assert out[k] is written and written.data_ptr() == ptr
    torch.testing.assert_close(written, expected)
    (ready,) = group._launches.values()
    assert (k, i) in ready.copies and ready.into[k] is None
    assert nvfuse.stats()["fallbacks"] == 0 and nvfuse.stats()["launches"] == 1


def test_input_read_elsewhere_keeps_its_copy() -> None:
    def update_and_read(p: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        total = p.sum()  # p is read by another op: the group may not write it in place
        p.add_(g)
        return total

    planned = plan(trace_to_aten(update_and_read, _inputs()[:2]))
    assert all(not g.writes for g in planned.groups)
    targets = [n.target for n in planned.fused.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.copy_.default in targets


def _counted(p: torch.Tensor, step: torch.Tensor, g: torch.Tensor) -> None:
    step.add_(1)
    p.add_(g * (1 - 0.9 ** step))


def test_counter_read_by_every_element_is_a_group_apart(interpret: None) -> None:
    """A 0-dim counter updated next to a full update (an optimizer's step) is read by every
    element: written in place inside the update's kernel, a thread could read it after
    another wrote it.  It becomes a 0-dim group of its own, written in place before the
    update reads its new value: no copy left."""
    inputs = (torch.randn(4, 5), torch.tensor(3.0), torch.randn(4, 5))
    planned = plan(trace_to_aten(_counted, inputs))
    assert len(planned.groups) == 2 and all(len(g.writes) == 1 for g in planned.groups)
    targets = [n.target for n in planned.fused.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.copy_.default not in targets
    p, step, g = (t.clone() for t in inputs)
    expected = tuple(t.clone() for t in inputs)
    _counted(*expected)
    fm = nvfuse.fuse(_counted, tuple(t.clone() for t in inputs))
    with torch.profiler.profile() as prof:
        fm(p, step, g)
    torch.testing.assert_close((p, step), expected[:2])
    assert not any(e.name == "aten::copy_" for e in prof.events())


def test_eager_fallback_copies_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    nvfuse.config.reload()
    inputs = _inputs()
    fm = nvfuse.fuse(_momentum, _fresh(inputs))

    def refuse(*args: object) -> None:
        raise executor.CannotRun("refused for the test")

    (group,) = fm.fusion_groups
    monkeypatch.setattr(group, "_run_kernel", refuse)
    p, buf, g = _fresh(inputs)
    expected = _fresh(inputs)
    _momentum(*expected)
    with pytest.warns(RuntimeWarning):
        fm(p, buf, g)
    torch.testing.assert_close((p, buf), expected[:2])
    assert nvfuse.stats()["fallbacks"] == 1


def test_find_writes_leaves_its_input_unchanged() -> None:
    planned = plan(trace_to_aten(_momentum, _inputs()))
    before = str(planned.fused.graph)
    find_writes(planned.fused, {g.name: g.ir for g in planned.groups})
    assert str(planned.fused.graph) == before


def test_aliased_kernel_compiles(interpret: None) -> None:
    """The kernel of an in-place group drops __restrict__ (aliasing restrict pointers is
    undefined behaviour) and NVRTC compiles it."""
    fm = nvfuse.fuse(_momentum, _inputs())
    group = fm.fusion_groups[0]
    p, buf, g = _inputs()
    ready = group._prepare((p, buf, g), nvfuse.config.get())
    (stage,) = ready.stages
    source = stage.kernel.source
    assert "__restrict__" not in source.split("{")[0]
    assert nvfuse.compile_source(source, arch="sm_90")[:4] == b"\x7fELF"


def test_cpu_counter_stays_on_the_host() -> None:
    """Adam's CPU `step` beside CUDA parameters (graph metadata made CUDA with fake tensors):
    `step + 1` is a host op the group reads as a scalar, never a device result copied back
    to the host; the parameter is still written in place."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    def step(p: torch.Tensor, g: torch.Tensor, s: torch.Tensor) -> None:
        s.add_(1)
        p.add_(g * (1 - 0.9 ** s))

    gm = trace_to_aten(step, (torch.randn(4, 5), torch.randn(4, 5), torch.tensor(3.0)))
    mode = FakeTensorMode()
    for n in gm.graph.nodes:
        v = n.meta.get("val")
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            with mode:
                n.meta["val"] = torch.empty_strided(v.shape, v.stride(), dtype=v.dtype,
                                                    device="cuda")
    planned = plan(gm)
    (group,) = planned.groups
    assert group.ir.ops.count("aten::add") == 1 and len(group.writes) == 1  # p's update
    (call,) = [n for n in planned.fused.graph.nodes if n.op == "call_module"]
    host = [a for a in call.args if a.op == "call_function"]
    assert [a.target for a in host] == [torch.ops.aten.add.Tensor]  # step + 1, on the host


def test_input_read_before_the_write_is_written_in_place(interpret: None) -> None:
    """Gradient clipping: the norm reads the gradient, the scaling (which depends on the
    norm, so runs after it) writes it: in place, no copy."""
    def clip(g: torch.Tensor) -> torch.Tensor:
        norm = torch.linalg.vector_norm(g)
        g.mul_(torch.clamp(1.0 / (norm + 1e-6), max=1.0))
        return norm

    g = torch.randn(8, 6) * 3
    expected_g = g.clone()
    expected = clip(expected_g)
    fm = nvfuse.fuse(clip, (g.clone(),))
    assert sum(len(group.writes) for group in fm.fusion_groups) == 1
    ptr = g.data_ptr()
    with torch.profiler.profile() as prof:
        norm = fm(g)
    torch.testing.assert_close((norm, g), (expected, expected_g))
    assert g.data_ptr() == ptr and not any(e.name == "aten::copy_" for e in prof.events())
