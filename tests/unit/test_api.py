"""The public contract of design.md, end to end through the interpreter, and bad input."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import nvfuse
from nvfuse import config
from nvfuse.runtime import kernels


def _bias_gelu(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.gelu(x + b) * 2


def _inputs(rows: int = 8, cols: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(rows)
    return torch.randn(rows, cols, generator=g), torch.randn(cols, generator=g)


def test_fuse_callable_runs_one_kernel(interpret: None) -> None:
    x, b = _inputs()
    fm = nvfuse.fuse(_bias_gelu, (x, b))
    assert isinstance(fm, nvfuse.FusedModule)
    assert len(fm.fusion_groups) == 1
    group = fm.fusion_groups[0]
    assert "aten::gelu" in group.ops and "add" in group.ops and "aten.mul.Tensor" in group.ops
    assert str(group).startswith("fusion fused_0(")
    torch.testing.assert_close(fm(x, b), _bias_gelu(x, b))
    (kernel,) = fm.kernels
    assert kernel.name in kernel.source and 'extern "C" __global__' in kernel.source
    assert hash(kernel.signature) == hash(kernel.signature)
    assert str(kernel.kernel_ir).startswith(f"kernel {kernel.name}(")
    stats = nvfuse.stats()
    assert stats["compiles"] == 1 and stats["launches"] == 1 and stats["fallbacks"] == 0


def test_new_batch_size_reuses_the_kernel(interpret: None) -> None:
    kernels.clear()
    fm = nvfuse.fuse(_bias_gelu, _inputs(8))
    for rows in (8, 3, 100):
        x, b = _inputs(rows)
        torch.testing.assert_close(fm(x, b), _bias_gelu(x, b))
    assert nvfuse.stats()["compiles"] == 1
    assert nvfuse.stats()["memory_hits"] >= 2
    assert len(fm.kernels) == 1


def test_new_dtype_builds_a_new_specialization(interpret: None) -> None:
    fm = nvfuse.fuse(_bias_gelu, _inputs())
    x, b = _inputs()
    fm(x, b)
    out = fm(x.double(), b.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, _bias_gelu(x.double(), b.double()))
    assert len(fm.kernels) == 2


def test_module_with_parameters_and_unfusable_ops(interpret: None) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Dropout(0.0))
    model.eval()
    x = torch.randn(4, 16)
    fm = nvfuse.fuse(model, (x,))
    torch.testing.assert_close(fm(x), model(x))
    assert all("aten::addmm" not in g.ops for g in fm.fusion_groups)  # the matmul stays eager


def test_torchscript_trace_without_example_inputs(interpret: None) -> None:
    x, b = _inputs()
    traced = torch.jit.trace(_bias_gelu, (x, b))
    fm = nvfuse.fuse(traced)
    torch.testing.assert_close(fm(x, b), _bias_gelu(x, b))
    assert len(fm.fusion_groups) == 1 and nvfuse.stats()["launches"] == 1


def test_tuple_outputs_keep_their_structure(interpret: None) -> None:
    fn = lambda x: (torch.exp(x), [torch.sin(x) + 1])
    x = torch.randn(5, 7)
    out = nvfuse.fuse(fn, (x,))(x)
    assert isinstance(out, tuple) and isinstance(out[1], list)
    torch.testing.assert_close(out[0], torch.exp(x))
    torch.testing.assert_close(out[1][0], torch.sin(x) + 1)


def test_zero_size_inputs_launch_nothing(interpret: None) -> None:
    fm = nvfuse.fuse(_bias_gelu, _inputs())
    out = fm(torch.randn(0, 64), torch.randn(64))
    assert out.shape == (0, 64) and nvfuse.stats()["launches"] == 0


def test_wrong_argument_count_is_a_type_error(interpret: None) -> None:
    fm = nvfuse.fuse(_bias_gelu, _inputs())
    with pytest.raises(TypeError, match="takes 2 input"):
        fm(torch.randn(8, 64))


def test_bad_objects_and_missing_inputs() -> None:
    with pytest.raises(TypeError, match="callable"):
        nvfuse.fuse(42, (torch.randn(2),))
    with pytest.raises(ValueError, match="example_inputs"):
        nvfuse.fuse(_bias_gelu)


def test_compile_error_carries_source_and_log() -> None:
    bad = 'extern "C" __global__ void k(float* x) {\n  x[0] = undefined_name;\n}\n'
    with pytest.raises(nvfuse.CompileError) as info:
        nvfuse.compile_source(bad, "sm_90")
    text = str(info.value)
    assert "   2 |   x[0] = undefined_name;" in text and "undefined_name" in info.value.log


def test_disable_compiles_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_DISABLE", "1")
    config.reload()
    x, b = _inputs()
    fm = nvfuse.fuse(_bias_gelu, (x, b))
    torch.testing.assert_close(fm(x, b), _bias_gelu(x, b))
    assert nvfuse.stats()["compiles"] == 0 and fm.kernels == []


def test_cpu_tensors_without_interpreter_fall_back_once_with_a_warning() -> None:
    x, b = _inputs()
    fm = nvfuse.fuse(_bias_gelu, (x, b))
    from nvfuse.runtime import executor

    executor._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.testing.assert_close(fm(x, b), _bias_gelu(x, b))
        fm(x, b)
    messages = [str(w.message) for w in caught if "runs eagerly" in str(w.message)]
    assert len(messages) == 1 and "NVFUSE_INTERPRET" in messages[0]
    assert nvfuse.stats()["fallbacks"] == 2


def test_strict_raises_instead_of_falling_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_STRICT", "1")
    config.reload()
    x, b = _inputs()
    fm = nvfuse.fuse(_bias_gelu, (x, b))
    with pytest.raises(nvfuse.NvfuseError, match="CPU tensors"):
        fm(x, b)


def test_dump_stages(monkeypatch: pytest.MonkeyPatch, tmp_path, interpret: None) -> None:
    monkeypatch.setenv("NVFUSE_DUMP", "graph,fusion_ir,kernel_ir,cuda,ptx,launch")
    monkeypatch.setenv("NVFUSE_DUMP_DIR", str(tmp_path))
    config.reload()
    kernels.clear()
    x, b = _inputs()
    nvfuse.fuse(_bias_gelu, (x, b))(x, b)
    stages = {p.name.rsplit(".", 2)[-2] for p in tmp_path.iterdir()}
    assert stages == {"graph", "fusion_ir", "kernel_ir", "cuda", "ptx", "launch"}
    (ptx,) = tmp_path.glob("*.ptx.txt")
    assert ".entry" in ptx.read_text()


def test_unknown_dump_stage_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_DUMP", "cuda,bogus")
    with pytest.raises(ValueError, match="bogus"):
        config.reload()


def test_torch_compile_backend(interpret: None) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    x, b = _inputs()
    compiled = torch.compile(_bias_gelu, backend="nvfuse")
    torch.testing.assert_close(compiled(x, b), _bias_gelu(x, b))
    assert nvfuse.stats()["launches"] >= 1


def test_repeat_call_skips_planning(interpret: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from nvfuse.schedule import pointwise

    calls = []
    real = pointwise.plan_launch
    monkeypatch.setattr(pointwise, "plan_launch", lambda *a: calls.append(1) or real(*a))
    x, b = _inputs()
    fm = nvfuse.fuse(_bias_gelu, (x, b))
    for _ in range(3):
        torch.testing.assert_close(fm(x, b), _bias_gelu(x, b))
    assert len(calls) == 1
    x2, b2 = _inputs(8)
    fm(x2.clone(), b2.clone())  # same shapes and layout, other tensors: still prepared
    assert len(calls) == 1


def test_misaligned_view_after_aligned_call_is_planned_again(interpret: None) -> None:
    x, b = _inputs(8, 64)
    fm = nvfuse.fuse(_bias_gelu, (x, b))
    fm(x, b)  # vectorized: 16-byte aligned rows
    storage = torch.randn(8 * 64 + 1)
    shifted = storage[1:].view(8, 64)  # same shape and strides, 4-byte aligned only
    torch.testing.assert_close(fm(shifted, b), _bias_gelu(shifted, b))
    assert {k.signature[1].lanes for k in fm.kernels} == {4, 1}


def test_calls_needing_gradients_train_through_autograd(interpret: None) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU())
    reference = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.GELU())
    reference.load_state_dict(model.state_dict())
    x = torch.randn(4, 8)
    fm = nvfuse.fuse(model, (x,))
    out = fm(x)
    assert out.requires_grad  # as eager's
    out.square().sum().backward()
    reference(x).square().sum().backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, q.grad)
    assert nvfuse.stats()["launches"] >= 2  # forward and backward kernels
    with torch.no_grad():
        assert not fm(x).requires_grad  # inference stays on the plain fused path


def test_input_requiring_grad_gets_a_gradient(interpret: None) -> None:
    import torch._dynamo

    torch._dynamo.reset()
    x = torch.randn(6, requires_grad=True)
    fm = nvfuse.fuse(lambda t: torch.sin(t) * 2, (x,))
    fm(x).sum().backward()
    torch.testing.assert_close(x.grad, 2 * torch.cos(x.detach()))


def test_data_dependent_control_flow_runs_through_torch_compile(interpret: None) -> None:
    import torch._dynamo

    torch._dynamo.reset()

    def fn(x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(x) * 2
        if y.sum() > x.numel():  # make_fx cannot trace a branch on a value
            return (y + 1).relu()
        return (y - 1).tanh()

    x = torch.randn(8, 16)
    with pytest.warns(RuntimeWarning, match="torch.compile"):
        fm = nvfuse.fuse(fn, (x,))
    with torch.no_grad():
        for sample in (x, x.abs() + 3):  # both branches
            torch.testing.assert_close(fm(sample), fn(sample))
    assert nvfuse.stats()["launches"] >= 2 and nvfuse.stats()["fallbacks"] == 0
    assert "kernels per step" in str(nvfuse.explain(fn, x))


def test_nested_input_requiring_grad_gets_a_gradient(interpret: None) -> None:
    """A tensor requiring grad inside a list input still routes the call through autograd
    (it used to get a fused result with no history, so its gradient was silently lost)."""
    import torch._dynamo

    torch._dynamo.reset()
    x, b = torch.randn(3, 4, requires_grad=True), torch.randn(4)
    fm = nvfuse.fuse(lambda pair: torch.relu(pair[0]) * pair[1], ([x, b],))
    out = fm([x, b])
    assert out.requires_grad
    out.sum().backward()
    torch.testing.assert_close(x.grad, (x.detach() > 0) * b)


def test_container_inputs_are_keyed_by_structure_not_values(interpret: None) -> None:
    """Tuple, list and dict inputs key a plan by their tensors' facts: other values of the
    same shapes reuse it (repr() of the container used to make every call a new plan)."""
    fn = lambda d, pair: F.gelu(d["x"] + pair[0]) * pair[1]
    inputs = lambda: ({"x": torch.randn(4, 8)}, (torch.randn(8), torch.randn(4, 1)))
    fm = nvfuse.fuse(fn, inputs())
    for _ in range(3):
        args = inputs()
        torch.testing.assert_close(fm(*args), fn(*args))
    assert len(fm._plans) == 1 and nvfuse.stats()["compiles"] == 1
    d, (a, b) = inputs()
    fm({"x": d["x"].double()}, (a.double(), b.double()))  # a new dtype is a new plan
    assert len(fm._plans) == 2
