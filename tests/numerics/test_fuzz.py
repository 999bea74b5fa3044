"""The differential fuzzer (fuzzer.py) in the suite: a bounded, seeded run (every pattern
generated: no issue-10 item is open) must give no wrong result and no crash; and the fuzzer's own
parts (CUDA's cast rule for the reference, the comparison, minimisation, the repro script) do
what they promise.  Run many more programs by hand:

    PYTHONPATH=$PWD python -m tests.numerics.fuzzer --programs 2000 --seed 0
"""

from __future__ import annotations

import math

import pytest
import torch

from fuzzer import (
    AVOID_ALL, InputSpec, Program, Result, Stmt, _float_variance_overflows,
    _cpu_gelu_of_inf, _fmod_quotient_overflows, _product_order_matters, _squares_overflow,
    _sum_order_matters, _undefined_int_cast,
    compare, cuda_to, fallback_reason, fuzz, generate, interpreter_env, minimise, repro, run,
)

CI_PROGRAMS = 60  # about 30 s on two uncontended cores


def test_fuzz_programs_match_eager() -> None:
    summary = fuzz(range(CI_PROGRAMS), AVOID_ALL)
    report = [f"seed {s}: {r.kind}: {r.detail}\n{repro(p, r)}" for s, p, r in summary.failures]
    assert not report, "\n".join(report)
    assert sum(summary.counts.values()) == CI_PROGRAMS
    assert summary.counts["fused"] > CI_PROGRAMS // 2  # the generator exercises the fuser


def test_generation_is_seeded() -> None:
    assert generate(7).source() == generate(7).source()
    assert generate(7) != generate(8)


def test_cuda_cast_rule() -> None:
    x = torch.tensor([math.nan, math.inf, -math.inf, 3.9, -3.9, 3e9, -3e9, 1e30])
    assert cuda_to(x, torch.int32).tolist() == [0, 2**31 - 1, -2**31, 3, -3, 2**31 - 1,
                                                -2**31, 2**31 - 1]
    assert cuda_to(x, torch.int64).tolist()[:5] == [0, 2**63 - 1, -2**63, 3, -3]
    assert cuda_to(torch.tensor([300.0, -1.0]), torch.uint8).tolist() == [44, 255]


def test_compare_checks_values_nan_dtype_shape_layout() -> None:
    r = torch.tensor([[1.0, math.nan], [math.inf, 2.0]])
    assert compare(r.clone(), r, "o") is None
    assert "NaN" in str(compare(torch.tensor([[1.0, 0.0], [math.inf, 2.0]]), r, "o"))
    assert "at" in str(compare(torch.tensor([[1.1, math.nan], [math.inf, 2.0]]), r, "o"))
    assert "dtype" in str(compare(r.double(), r, "o"))
    assert "shape" in str(compare(r.reshape(4), r, "o"))
    assert "strides" in str(compare(r.t().contiguous().t(), r, "o"))
    assert compare(r + 1e-6, r, "o") is None  # within float32's tolerance


def test_minimise_finds_a_small_repro(monkeypatch: pytest.MonkeyPatch) -> None:
    """A planted defect (every sigmoid off by one) shrinks to the one op on a small input."""
    import nvfuse.runtime.executor as executor

    program = Program(
        (InputSpec((3, 4), torch.float32, "permuted", "special", 3, (1, 0)),
         InputSpec((4,), torch.float32, "contiguous", "normal", 4)),
        (Stmt("torch.add({0}, {1})", (0, 1)), Stmt("torch.exp({0})", (2,)),
         Stmt("torch.sigmoid({0})", (3,)), Stmt("{0} * 2", (4,))),
        (5,))
    real = executor.FusionGroup.forward

    def planted(self: executor.FusionGroup, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = real(self, *inputs)
        if "aten::sigmoid" in self.ops:
            outs = tuple(o + 1 for o in outs)
        return outs

    monkeypatch.setattr(executor.FusionGroup, "forward", planted)
    with interpreter_env():
        failure = run(program)
        assert failure.kind == "wrong"
        small, why = minimise(program, failure, budget_s=25)
    assert why.kind == "wrong"
    assert len(small.stmts) == 1 and "sigmoid" in small.stmts[0].expr
    assert all(math.prod(s.shape) <= 2 for s in small.inputs)
    text = repro(small, why)
    compile(text, "repro.py", "exec")  # a valid standalone script
    assert "torch.sigmoid" in text and "nvfuse.fuse" in text


def test_run_classifies_partial_and_fused() -> None:
    fused = Program((InputSpec((5, 3), torch.float32),), (Stmt("torch.exp({0})", (0,)),), (1,))
    partial = Program((InputSpec((5, 3), torch.float32),),
                      (Stmt("torch.cumsum({0}, -1)", (0,)), Stmt("torch.exp({0})", (1,))), (2,))
    with interpreter_env():
        assert run(fused).kind == "fused"
        assert run(partial).kind == "partial"
    assert Result("wrong").failed and not Result("partial").failed


def test_cpu_and_device_differences_are_recognised() -> None:
    """The conditions under which the fuzzer does not generate a statement because eager's
    CPU result differs from the device's (fuzzer._allowed), each next to the CPU behaviour it
    stands for (so a torch that changes it shows here)."""
    a, b = torch.full((64,), 1e38), torch.full((64,), 0.25)
    assert torch.fmod(a, b).isnan().all()  # the vectorised CPU fmod; exact: 0
    assert _fmod_quotient_overflows([a, b])
    assert not _fmod_quotient_overflows([a, torch.full((64,), 1.64)])
    assert not _fmod_quotient_overflows([a.double(), b.double()])
    row = torch.full((1, 4), 1e300, dtype=torch.float64)
    assert torch.nn.functional.layer_norm(row, (4,)).isnan().all()  # CUDA's Welford: 0
    assert _squares_overflow(row) and not _squares_overflow(row / 1e200)
    spread = torch.tensor([1e19, -1e19, 3.0])
    assert torch.var(spread).isfinite()  # float64 accumulation; in float32 it overflows
    assert _float_variance_overflows(spread) and not _float_variance_overflows(spread.double())
    huge = torch.tensor([1e300, 2.5], dtype=torch.float64)
    assert huge.to(torch.int64)[0] == -2**63 and cuda_to(huge, torch.int64)[0] == 2**63 - 1
    assert _undefined_int_cast(huge, torch.int64) and not _undefined_int_cast(huge[1:], torch.int32)
    # the CPU's vectorised float32 gelu(+inf) is NaN with AVX-512 and inf with AVX2 (CUDA: inf)
    cpu_gelu = torch.nn.functional.gelu(torch.full((16,), math.inf))
    assert cpu_gelu.isnan().all() or (cpu_gelu == math.inf).all()
    assert _cpu_gelu_of_inf(torch.tensor([math.inf, 1.0]))
    assert not _cpu_gelu_of_inf(torch.tensor([math.inf]).double())
    assert _sum_order_matters(torch.tensor([-1e38, -2.5e38, math.inf]))
    assert not _sum_order_matters(torch.tensor([-1e38, 1e37, math.inf]))
    assert _product_order_matters(torch.tensor([1e38, 10.0, 0.01]))
    assert not _product_order_matters(torch.tensor([1e30, 10.0, 0.01]))


def test_fallback_reasons_group_alike() -> None:
    a = fallback_reason("eager ops ['aten::cumsum', 'aten::cumsum']; ")
    assert a == "ops left eager: aten::cumsum"
    b = fallback_reason("eager ops []; nvfuse: group fused_3 (aten::sum) runs eagerly: "
                        "CannotRun: input shapes [(3, 0)]: x")
    c = fallback_reason("eager ops []; nvfuse: group fused_0 (aten::sum) runs eagerly: "
                        "CannotRun: input shapes [(1, 7)]: x")
    assert b == c and b.startswith("group ran eagerly: CannotRun")
