"""Foreach ops as per-tensor ops (nvfuse/frontend/foreach.py): the table against eager, and a
foreach program fused per tensor."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import nvfuse
from nvfuse.frontend.foreach import foreach_decompositions

aten = torch.ops.aten


def _lists(n: int = 3) -> list[list[torch.Tensor]]:
    g = torch.Generator().manual_seed(7)
    shapes = [(4, 3), (5,), ()]
    return [[torch.rand(s, generator=g) + 0.5 for s in shapes[:n]] for _ in range(3)]


A, B, C = _lists()
CASES: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = [
    (aten._foreach_add.List, (A, B), {"alpha": 2.0}),
    (aten._foreach_add.Scalar, (A, 1.5), {}),
    (aten._foreach_add.ScalarList, (A, [1.0, 2.0, 3.0]), {}),
    (aten._foreach_add.Tensor, (A, torch.tensor(0.25)), {"alpha": 3}),
    (aten._foreach_mul.Tensor, (A, torch.tensor(3.0)), {}),
    (aten._foreach_div.ScalarList, (A, [2.0, 4.0, 8.0]), {}),
    (aten._foreach_sub.List, (A, B), {"alpha": 0.5}),
    (aten._foreach_addcmul.Scalar, (A, B, C), {"value": 0.1}),
    (aten._foreach_addcmul.ScalarList, (A, B, C, [0.1, 0.2, 0.3]), {}),
    (aten._foreach_addcdiv.Scalar, (A, B, C), {"value": -0.1}),
    (aten._foreach_lerp.Scalar, (A, B, 0.3), {}),
    (aten._foreach_lerp.Scalar, (A, B, 0.8), {}),
    (aten._foreach_lerp.List, (A, B, C), {}),
    (aten._foreach_lerp.ScalarList, (A, B, [0.1, 0.6, 0.9]), {}),
    (aten._foreach_pow.ScalarAndTensor, (0.9, A), {}),
    (aten._foreach_pow.Scalar, (A, 2.0), {}),
    (aten._foreach_maximum.List, (A, B), {}),
    (aten._foreach_maximum.Scalar, (A, 0.9), {}),
    (aten._foreach_minimum.ScalarList, (A, [0.9, 1.0, 1.1]), {}),
    (aten._foreach_clamp_min.Scalar, (A, 0.9), {}),
    (aten._foreach_sqrt.default, (A,), {}),
    (aten._foreach_reciprocal.default, (A,), {}),
    (aten._foreach_neg.default, (A,), {}),
    (aten._foreach_norm.Scalar, (A,), {}),
    (aten._foreach_norm.Scalar, (A, 1), {"dtype": torch.float64}),
    (aten._foreach_max.default, (A,), {}),
    (aten._foreach_copy.default, (A, B), {}),
]


@pytest.mark.parametrize(("op", "args", "kwargs"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_decomposition_matches_eager(op: Any, args: tuple[Any, ...],
                                     kwargs: dict[str, Any]) -> None:
    decomposition = foreach_decompositions()[op]
    actual, expected = decomposition(*args, **kwargs), op(*args, **kwargs)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.dtype == e.dtype
        torch.testing.assert_close(a, e)


def test_every_functional_foreach_op_is_covered_or_known() -> None:
    """The table is built from the schemas: only these have no per-tensor form."""
    table = foreach_decompositions()
    missing = set()
    for schema in torch._C._jit_get_all_schemas():
        if not schema.name.startswith("aten::_foreach_") or schema.name.endswith("_") \
                or schema.overload_name.endswith("out"):
            continue
        packet = getattr(aten, schema.name.split("::")[-1])
        op = getattr(packet, schema.overload_name or "default")
        if op not in table:
            missing.add(str(op))
    # per-tensor scalars held in a tensor (eager reads them on the host); a sum of powers
    assert missing <= {"aten._foreach_addcmul.Tensor", "aten._foreach_addcdiv.Tensor",
                       "aten._foreach_powsum.Scalar"}


def test_foreach_program_fuses_per_tensor(interpret: None) -> None:
    def update(ps: list[torch.Tensor], gs: list[torch.Tensor]) -> list[torch.Tensor]:
        scaled = torch._foreach_mul(gs, 0.1)
        moved = torch._foreach_add(ps, scaled, alpha=-1.0)
        return torch._foreach_sqrt(torch._foreach_abs(moved))

    ps, gs = _lists()[:2]
    fm = nvfuse.fuse(update, (ps, gs))
    assert len(fm.fusion_groups) == len(ps)  # one group per tensor, no foreach op left
    for actual, expected in zip(fm(ps, gs), update(ps, gs)):
        torch.testing.assert_close(actual, expected)
    assert nvfuse.stats()["fallbacks"] == 0
