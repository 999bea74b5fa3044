"""A group's device: 0-dim CPU tensors beside CUDA tensors (legal in eager) and groups with no
tensor inputs (a constant filled into a shape).  CUDA is simulated with fake tensors (the
partition and device choice read only metadata) and the meta device (a non-CPU device to copy
scalars to); the results go through the interpreter."""

from __future__ import annotations

import pytest
import torch
from torch import fx
from torch._subclasses.fake_tensor import FakeTensorMode

import nvfuse
from nvfuse.fusion.partition import partition, why_unfusible
from nvfuse.runtime import devices


def _scalar_times_cuda_graph() -> tuple[fx.GraphModule, fx.Node]:
    """x (CUDA, half) * s (0-dim CPU float64) + 1, with fake metadata as the tracer records."""
    with FakeTensorMode():
        x_val = torch.empty(4, 8, device="cuda", dtype=torch.float16)
        s_val = torch.empty((), dtype=torch.float64)
        mul_val = x_val * s_val
        add_val = mul_val + 1
    graph = fx.Graph()
    x, s = graph.placeholder("x"), graph.placeholder("s")
    mul = graph.call_function(torch.ops.aten.mul.Tensor, (x, s))
    add = graph.call_function(torch.ops.aten.add.Tensor, (mul, 1))
    graph.output((add,))
    for node, val in ((x, x_val), (s, s_val), (mul, mul_val), (add, add_val)):
        node.meta["val"] = val
    return fx.GraphModule(torch.nn.Module(), graph), mul


def test_cpu_scalar_beside_cuda_tensor_is_fusible() -> None:
    gm, mul = _scalar_times_cuda_graph()
    assert mul.meta["val"].dtype == torch.float16  # eager: a 0-dim tensor does not promote
    assert why_unfusible(mul) is None
    fused, names = partition(gm)
    assert len(names) == 1
    group = getattr(fused, names[0])
    assert [n.target for n in group.graph.nodes if n.op == "call_function"] == [
        torch.ops.aten.mul.Tensor, torch.ops.aten.add.Tensor]
    assert devices.recorded_device(group) == torch.device("cuda", 0)


def test_group_device_skips_cpu_scalars() -> None:
    with FakeTensorMode():
        x = torch.empty(4, 8, device="cuda")
    scalar = torch.tensor(2.5)
    assert devices.group_device([scalar, x], None) == torch.device("cuda", 0)
    assert devices.group_device([x, scalar], None) == torch.device("cuda", 0)
    assert devices.group_device([scalar], torch.device("cuda", 0)) == torch.device("cuda", 0)
    assert devices.group_device([], torch.device("cuda", 1)) == torch.device("cuda", 1)
    assert devices.group_device([], None) == torch.device("cpu")
    with pytest.raises(devices.MixedDevices):
        devices.group_device([x, torch.randn(3)], None)


def test_place_inputs_copies_only_cpu_scalars() -> None:
    meta = torch.device("meta")  # stands in for a GPU: any device that is not the CPU
    x = torch.empty(4, 8, device=meta)
    scalar = torch.tensor(2.5, dtype=torch.float64)
    placed = devices.place_inputs((x, scalar), meta)
    assert placed[0] is x
    assert placed[1].device == meta and placed[1].dtype == torch.float64 and placed[1].dim() == 0
    same = (torch.randn(3), torch.tensor(1.0))
    assert devices.place_inputs(same, torch.device("cpu")) is same


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_zero_dim_tensor_operand_promotes_as_eager(dtype: torch.dtype, interpret: None) -> None:
    def fn(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        if dtype == torch.float16:  # one op: eager rounds each half result
            return x * s
        return (x * s + 1).exp()

    x = torch.randn(8, 16).to(dtype)
    s = torch.tensor(0.75, dtype=torch.float64)
    fm = nvfuse.fuse(fn, (x, s))
    got, want = fm(x, s), fn(x, s)
    assert got.dtype == want.dtype == dtype
    torch.testing.assert_close(got, want)
    assert nvfuse.stats()["launches"] >= 1


def test_group_without_tensor_inputs(interpret: None) -> None:
    """A constant computed in a group of its own: no inputs to take the device from."""
    def fn(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.scalar_tensor(2.0).exp() * 3, torch.full((), 0.5).exp() + x

    x = torch.randn(8, 16)
    fm = nvfuse.fuse(fn, (x,))
    for got, want in zip(fm(x), fn(x)):
        torch.testing.assert_close(got, want)
        assert got.device == want.device
    assert any(not g.fusion_ir.inputs for g in fm.fusion_groups)
