"""Warp rows (nvfuse.schedule.reduction WARP_ROW_MAX, nvfuse/lower/warp.py) end to end through
the interpreter (strict, outputs poisoned, the race and barrier checks on), against eager: every
row reduction kind (sum, mean, amax, amin, prod, softmax, log_softmax, var, layer norm, argmax)
over row lengths 1 to 64 (below, at and past a warp) and row counts that fill 1 to 3 blocks of
4 rows, the last one partial; every float dtype; NaN / inf rows; the schedule each shape gets
(kind WARP_ROW, 4 rows a block, no shared memory or barrier in the kernel); and every generated
kernel compiled by NVRTC for sm_80 and sm_90."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from cases import special_rows
from test_reductions import _make, _run, _tol

from nvrtc_batch import compile_all
from nvfuse.lower import kir
from nvfuse.runtime import executor
from nvfuse.schedule.reduction import (
    WARP_BLOCK, WARP_ROW_MAX,
)
from nvfuse.schedule.kind import ScheduleKind

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _ln(x: torch.Tensor) -> torch.Tensor:
    w = torch.linspace(0.5, 1.5, x.shape[-1], dtype=x.dtype, device=x.device)
    return F.layer_norm(x, (x.shape[-1],), w, w - 1)


OPS: dict[str, Callable[[torch.Tensor], object]] = {
    "sum": lambda x: x.sum(-1),
    "mean": lambda x: x.mean(-1),
    "amax": lambda x: x.amax(-1),
    "amin": lambda x: x.amin(-1),
    "prod": lambda x: x.prod(-1),
    "softmax": lambda x: torch.softmax(x, -1),
    "log_softmax": lambda x: torch.log_softmax(x, -1),
    "var": lambda x: torch.var(x, -1, correction=0),
    "layer_norm": _ln,
    "argmax": lambda x: x.argmax(-1),
}
WIDTHS = [1, 5, 31, 32, 33, 64]
ROWS = [1, 3, 4, 5, 9]


def _x(op: str, rows: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    return _make((rows, width), dtype, f"warp{op}{rows}x{width}", near_one=op == "prod")


def _tolerance(op: str, dtype: torch.dtype, width: int) -> tuple[float, float] | None:
    """Reassociated sums and products: test_reductions' n-ulps rule (eager's order differs)."""
    return _tol(op, dtype, width) if op in ("sum", "mean", "prod") else None


def _check(fm: object, rows: int) -> None:
    """One warp-rows kernel, ceil(rows / 4) blocks, no shared memory and no barrier."""
    kernels = fm.kernels  # type: ignore[attr-defined]
    assert kernels
    for k in kernels:
        sig = k.signature[1]
        assert sig.kind is ScheduleKind.WARP_ROW, sig
        assert sig.block == WARP_BLOCK == 128 and sig.persist == 0
        ir = k.kernel_ir
        assert ir.block == 128
        assert not _find(ir.body, (kir.Shared, kir.Sync, kir.BlockReduce))
        scopes = {s.scope for s in _find(ir.body, (kir.WelfordReduce, kir.ArgReduce))}
        assert scopes <= {kir.ReduceScope.WARP}
        _generated[k.name] = k.source


def _find(stmts: tuple, kinds: tuple[type, ...]) -> list:
    found = []
    for s in stmts:
        if isinstance(s, kinds):
            found.append(s)
        found += _find(getattr(s, "body", ()) + getattr(s, "orelse", ()), kinds)
    return found


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("rows", ROWS)
def test_warp_rows_f32(interpret: None, op: str, width: int, rows: int) -> None:
    fm = _run(OPS[op], (_x(op, rows, width, f32),), f32, _tolerance(op, f32, width))
    _check(fm, rows)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [f16, bf16, f64], ids=str)
@pytest.mark.parametrize("width", [5, 33, 64])
def test_warp_rows_dtypes(interpret: None, op: str, dtype: torch.dtype, width: int) -> None:
    fm = _run(OPS[op], (_x(op, 9, width, dtype),), dtype, _tolerance(op, dtype, width))
    _check(fm, 9)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("width", [5, 33, 64])
def test_nan_and_inf_rows(interpret: None, op: str, width: int) -> None:
    """Row 0 all -inf, row 1 one +inf, row 2 one NaN, row 3 +inf and -inf, row 4 finite,
    row 5 its first half -inf (lanes holding only -inf), rows 6-8 finite (a partial block)."""
    x = special_rows(_x(op, 9, width, f32))
    fm = _run(OPS[op], (x,), f32, _tolerance(op, f32, width))
    _check(fm, 9)


def test_schedule_rule(interpret: None) -> None:
    """C <= WARP_ROW_MAX: warp rows; one more: a block per row; the kept dims innermost: the
    column schedule.  A kernel serves every row count and every C from 2 to WARP_ROW_MAX
    (C = 1 changes the stride classes)."""
    def kind(shape: tuple[int, ...], dim: int = -1) -> ScheduleKind:
        x = _make(shape, f32, "rule")
        fm = _run(lambda x: x.sum(dim), (x,), f32)
        return fm.kernels[0].signature[1].kind  # type: ignore[no-any-return]

    assert kind((3, WARP_ROW_MAX)) is ScheduleKind.WARP_ROW
    assert kind((3, WARP_ROW_MAX + 1)) is ScheduleKind.ROW
    assert kind((64, 3), 0) is ScheduleKind.COLUMN
    import nvfuse

    fm = nvfuse.fuse(lambda x: torch.softmax(x, -1), (_make((3, 7), f32, "a"),))
    for rows, width in [(3, 7), (5, 64), (9, 2), (100, 33)]:
        x = _make((rows, width), f32, f"reuse{rows}x{width}")
        torch.testing.assert_close(fm(x), torch.softmax(x, -1))
    assert len(fm.kernels) == 1


def test_strided_rows(interpret: None) -> None:
    """Rows sliced out of a wider tensor, and a 3-d input whose two trailing dims are reduced."""
    base = _make((9, 40), f32, "strided")
    fm = _run(lambda x: torch.softmax(x, -1), (base[:, 3:36],), f32)
    _check(fm, 9)
    fm = _run(lambda x: x.sum((-2, -1)), (_make((5, 4, 8), f32, "rank3"),), f32)
    _check(fm, 5)


# -- compile checks (after the cases above have filled _generated) ---------------------------


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_generated_kernel(arch: str) -> None:
    assert _generated, "run with the numerics cases above"
    compile_all(_generated, arch, "warp_rows")
