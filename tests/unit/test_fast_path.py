"""The host fast path: replays of fully fused plans (nvfuse/runtime/replay.py), prepared calls
(executor `_Ready`), the driver argument buffer (nvfuse/runtime/packed.py) and lock-free
counters.  Every replayed result is checked against eager on fresh random inputs."""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import pytest
import torch

import nvfuse
from nvfuse import config, counters
from nvfuse.dtypes import DType
from nvfuse.runtime import executor
from nvfuse.runtime.packed import ArgBuffer


def bias_gelu(x: torch.Tensor, b: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.gelu(x + b) + r


def _inputs(rows: int = 4, cols: int = 8) -> tuple[torch.Tensor, ...]:
    return torch.randn(rows, cols), torch.randn(cols), torch.randn(rows, cols)


def _count_graph_runs(fm: nvfuse.FusedModule, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch every plan's graph forward to count calls (a replay never calls it)."""
    runs = [0]
    for plan in fm._plans.values():
        forward = plan.gm.forward

        def counted(*args: Any, _forward: Any = forward) -> Any:
            runs[0] += 1
            return _forward(*args)
        monkeypatch.setattr(plan.gm, "forward", counted)
    return runs


def test_second_call_replays_and_matches_eager_on_new_values(interpret: None,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs())
    fm(*_inputs())
    runs = _count_graph_runs(fm, monkeypatch)
    before = nvfuse.stats()
    for _ in range(3):
        args = _inputs()
        torch.testing.assert_close(fm(*args), bias_gelu(*args))
    after = nvfuse.stats()
    assert runs[0] == 0  # every call replayed
    assert after["launches"] - before["launches"] == 3
    assert after["memory_hits"] - before["memory_hits"] == 3
    assert after["compiles"] == before["compiles"]


def test_replays_per_shape_and_layout(interpret: None) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs())
    for rows in (4, 6, 4, 6, 1):
        args = _inputs(rows)
        torch.testing.assert_close(fm(*args), bias_gelu(*args))
        x, b, r = _inputs(rows)
        xt = torch.randn(8, rows).t()  # transposed: another key
        torch.testing.assert_close(fm(xt, b, r), bias_gelu(xt, b, r))
    assert len(fm._replays) >= 4


def test_one_tensor_passed_twice_does_not_tie_later_calls(interpret: None) -> None:
    def sub(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x * 2 - y

    x = torch.randn(16)
    fm = nvfuse.fuse(sub, (x, x))
    torch.testing.assert_close(fm(x, x), sub(x, x))
    a, b = torch.randn(16), torch.randn(16)
    torch.testing.assert_close(fm(a, b), sub(a, b))
    torch.testing.assert_close(fm(a, b), sub(a, b))


def test_misaligned_input_gets_its_own_replay(interpret: None) -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        return x * 3 + 1

    base = torch.randn(4097)
    aligned, shifted = base[:4096], base[1:]
    fm = nvfuse.fuse(f, (aligned,))
    for _ in range(2):
        torch.testing.assert_close(fm(aligned), f(aligned))
        torch.testing.assert_close(fm(shifted), f(shifted))


def test_grad_inputs_train_and_no_grad_replays(interpret: None) -> None:
    x, b, r = _inputs()
    fm = nvfuse.fuse(bias_gelu, (x, b, r))
    xg = x.clone().requires_grad_(True)
    with torch.no_grad():
        fm(xg, b, r)
        out = fm(xg, b, r)
    assert not out.requires_grad
    torch.testing.assert_close(out, bias_gelu(x, b, r))
    out = fm(xg, b, r)  # grad mode on: the autograd path, not the no-grad replay
    assert out.requires_grad
    out.sum().backward()
    ref = x.clone().requires_grad_(True)
    bias_gelu(ref, b, r).sum().backward()
    torch.testing.assert_close(xg.grad, ref.grad)


def test_plan_with_an_eager_op_is_not_replayed_and_stays_correct(interpret: None) -> None:
    def f(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return torch.relu(x @ w + 1) * 2

    x, w = torch.randn(4, 8), torch.randn(8, 8)
    fm = nvfuse.fuse(f, (x, w))
    for _ in range(2):
        x, w = torch.randn(4, 8), torch.randn(8, 8)
        torch.testing.assert_close(fm(x, w), f(x, w))
    assert not fm._replays


def test_structured_results_and_module_weights(interpret: None) -> None:
    class M(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.randn(8), requires_grad=False)

        def forward(self, x: torch.Tensor) -> dict[str, Any]:
            y = x * self.scale
            return {"y": y, "pair": (y.sum(-1), torch.sigmoid(x)), "n": 3}

    m = M()
    fm = nvfuse.fuse(m, (torch.randn(4, 8),))
    for _ in range(3):
        x = torch.randn(4, 8)
        got, want = fm(x), m(x)
        assert got["n"] == 3 and isinstance(got["pair"], tuple)
        torch.testing.assert_close(got["y"], want["y"])
        torch.testing.assert_close(got["pair"][0], want["pair"][0])
        torch.testing.assert_close(got["pair"][1], want["pair"][1])
        with torch.no_grad():
            m.scale.mul_(1.5)  # the weight is read by reference, as the graph reads it


def test_random_kernel_replays_fresh_reproducible_draws(interpret: None) -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(x, 0.5, training=True)

    x = torch.randn(256) + 5
    fm = nvfuse.fuse(f, (x,))
    fm(x)
    torch.manual_seed(1)
    first, second = fm(x), fm(x)
    assert not torch.equal(first, second)
    torch.manual_seed(1)
    torch.testing.assert_close(fm(x), first)
    kept = first != 0
    torch.testing.assert_close(first[kept], x[kept] * 2)


def test_disable_flag_read_after_a_replay_exists(interpret: None,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    fm = nvfuse.fuse(bias_gelu, _inputs())
    fm(*_inputs())
    fm(*_inputs())
    monkeypatch.setenv("NVFUSE_DISABLE", "1")
    config.reload()
    before = nvfuse.stats()["launches"]
    args = _inputs()
    torch.testing.assert_close(fm(*args), bias_gelu(*args))
    assert nvfuse.stats()["launches"] == before


def test_failed_replay_falls_back_to_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NVFUSE_INTERPRET", "1")
    config.reload()
    fm = nvfuse.fuse(bias_gelu, _inputs())
    fm(*_inputs())
    fail = [True]
    launch = executor.Stage.launch

    def flaky(self: executor.Stage, tensors: Any, scalars: Any) -> None:
        if fail[0]:
            fail[0] = False
            raise RuntimeError("injected launch failure")
        launch(self, tensors, scalars)
    monkeypatch.setattr(executor.Stage, "launch", flaky)
    args = _inputs()
    torch.testing.assert_close(fm(*args), bias_gelu(*args))


def _prepared(fm: nvfuse.FusedModule) -> list[Any]:
    """Every group's prepared calls (executor `_Ready`), replayed or not."""
    return [ready for plan in fm._plans.values() if plan.gm is not None
            for group in plan.gm.modules() if isinstance(group, executor.FusionGroup)
            for ready in group._launches.values()]


def test_plain_prepared_calls_take_the_short_path_and_others_do_not(interpret: None) -> None:
    def scale_(x: torch.Tensor) -> torch.Tensor:
        return x.mul_(2.0)

    def row_sum(x: torch.Tensor) -> torch.Tensor:  # long enough rows to split in two stages
        return (x * 2).sum(0)

    def noisy(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.dropout(x, 0.5, training=True)

    plain = nvfuse.fuse(bias_gelu, _inputs())
    for _ in range(3):
        args = _inputs()
        torch.testing.assert_close(plain(*args), bias_gelu(*args))
    assert [r.plain for r in _prepared(plain)] == [True]
    x = torch.randn(64)
    in_place = nvfuse.fuse(scale_, (x.clone(),))
    for _ in range(3):
        y = torch.randn(64)
        got, want = y.clone(), y.clone()
        in_place(got)
        torch.testing.assert_close(got, scale_(want))
    assert [r.plain for r in _prepared(in_place)] == [False]  # writes its input
    split_input = torch.randn(65536, 4)
    split = nvfuse.fuse(row_sum, (split_input,))
    for _ in range(2):
        torch.testing.assert_close(split(split_input), row_sum(split_input),
                                   rtol=1e-4, atol=1e-3)
    assert [(len(r.stages), bool(r.workspaces), r.plain) for r in _prepared(split)] == [
        (2, True, False)]  # a split reduction's workspace
    dropout = nvfuse.fuse(noisy, (x,))
    dropout(x)
    dropout(x)
    assert [r.plain for r in _prepared(dropout)] == [False]  # a fresh seed per launch


def test_poisoned_outputs_still_fully_written(interpret: None,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)
    fm = nvfuse.fuse(bias_gelu, _inputs())
    for _ in range(3):
        args = _inputs(5, 8)
        torch.testing.assert_close(fm(*args), bias_gelu(*args))


def test_arg_buffer_holds_pointers_then_typed_scalars() -> None:
    tensors = [torch.randn(3), torch.randn(5)]
    buffer = ArgBuffer(2, (DType.INT32, DType.INT64), "k")
    scalars = (7, -(2**40))
    buffer.fill(tensors, scalars)
    slots = (ctypes.c_void_p * 4).from_address(buffer.address)
    assert [ctypes.c_uint64.from_address(slots[i]).value for i in range(2)] == [
        t.data_ptr() for t in tensors]
    assert ctypes.c_int32.from_address(slots[2]).value == 7
    assert ctypes.c_int64.from_address(slots[3]).value == -(2**40)
    buffer.fill(tensors[::-1], (8, 9))  # new pointers and a new scalar tuple are both written
    assert ctypes.c_uint64.from_address(slots[0]).value == tensors[1].data_ptr()
    assert ctypes.c_int32.from_address(slots[2]).value == 8
    with pytest.raises(nvfuse.LaunchError, match="scalars"):
        buffer.fill(tensors, (1,))


def test_counters_lose_no_bump_across_threads() -> None:
    counters.reset()

    def work() -> None:
        for _ in range(5000):
            counters.bump("launches")
        counters.bump_hits(2, 3)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    snap = counters.snapshot()
    assert snap["launches"] == 4 * 5000 + 4 * 3
    assert snap["memory_hits"] == 8
    counters.reset()
    assert counters.snapshot()["launches"] == 0


def test_prefetch_compiles_the_kernels_the_call_will_need(interpret: None) -> None:
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="NVRTC (CuPy) is not installed")
    from nvfuse import pipeline
    from nvfuse.runtime import kernels
    from nvfuse.runtime.executor import _plan_launch, prefetch_groups

    def f(x: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.softmax(x + b, -1) * 2, (x * b).sum(0)

    x, b = torch.randn(6, 40), torch.randn(40)
    fm = nvfuse.fuse(f, (x, b))
    kernels.clear()
    nvfuse.reset_stats()
    prefetch_groups(fm.fusion_groups, torch.device("cuda"))  # no GPU: NVFUSE_ARCH's arch
    futures = list(kernels._pending.values())
    for future in futures:
        future.result(timeout=300)
    assert nvfuse.stats()["compiles"] == len(fm.fusion_groups) == 2
    arch = config.get().arch
    for group in fm.fusion_groups:  # both groups read (x, b)
        launch = _plan_launch(group.fusion_ir, group._key, (x, b), torch.device("cpu"), arch)
        for sig, params, _ in launch.stages:
            built = pipeline.build(launch.ir, launch.key, sig, params, gpu=True)
            assert built.cubin is not None and built.cubin.startswith(b"\x7fELF")
    assert nvfuse.stats()["compiles"] == 2  # the real calls' signatures were the prefetched ones


def test_nvrtc_warm_up_runs_once_in_the_background() -> None:
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="NVRTC (CuPy) is not installed")
    from nvfuse.runtime import nvrtc

    nvrtc.warm_up_async("sm_90")
    nvrtc.warm_up_async("sm_90")  # a second call starts nothing
    threads = [t for t in threading.enumerate() if t.name == "nvfuse-nvrtc-warm-up"]
    assert len(threads) <= 1
    for t in threads:
        t.join(timeout=300)
    assert nvrtc._warm_up_started


def test_bench_host_measures_ratios_and_writes_markdown(interpret: None) -> None:
    from bench import host

    one = torch.randn(4)
    times = host.interleaved_us({"a": lambda: one.add(1), "b": lambda: one * 2},
                                calls=20, repeats=2)
    assert set(times) == {"a", "b"} and all(0 < t < 1e6 for t in times.values())
    stub = host._StubLaunch(pack=True)
    fm = nvfuse.fuse(bias_gelu, _inputs())
    fm(*_inputs())
    ready = next(iter(fm.fusion_groups[0]._launches.values()))
    stub(ready.stages[0], [*_inputs(), torch.empty(4, 8)], ready.scalars[0])
    assert len(stub.buffers) == 1
    report = {"meta": {"date": "2026-01-01"},
              "host": [{"what": "eager x.add(1)", "us": 3.0, "x_eager_add": 1.0}],
              "tracing_ms": 50.0,
              "compile": {"first_nvrtc_call_ms": 600.0, "empty_kernel_ms": 90.0,
                          "bench_kernels": 3, "median_kernel_ms": 120.0,
                          "median_over_empty": 1.333, "two_kernel_plan_serial_ms": 240.0,
                          "two_kernel_plan_parallel_ms": 130.0, "slowest_of_the_two_ms": 125.0,
                          "cores": 2, "options_median_ms": {"(nvfuse's)": 120.0}}}
    text = host.to_markdown(report)
    assert "CPU measurement" in text and "| eager x.add(1) | 3.0 | 1.0 |" in text
    copy = ('extern "C" __global__ void k(const float* a, float* b) '
            '{ b[threadIdx.x] = a[threadIdx.x] + a[threadIdx.x + 64]; }')
    loads = host._sass_loads([copy, copy])
    assert loads is None or loads == 4  # two loads per kernel (None: no nvdisasm here)
