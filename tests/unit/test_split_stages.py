"""Split reductions stage by stage: the heuristic's numbers (`choose_splits`), which fusions
qualify (`splittable`), the launch plan (grids, scalars, workspaces, signatures), both kernel
IRs (verifier, printer, arguments) and running them by hand through the interpreter."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from nvfuse.dtypes import DType
from nvfuse.frontend.fx import trace_to_aten
from nvfuse.fusion.build import build_fusion
from nvfuse.fusion.ir import FusionIR
from nvfuse.fusion.partition import partition
from nvfuse.interpret import memory, state
from nvfuse.interpret.machine import run_kernel
from nvfuse.lower import kir
from nvfuse.lower.kir import bind_scalars
from nvfuse.lower.split import lower_split
from nvfuse.lower.verify import verify_kernel
from nvfuse.fusion.phases import PhaseKind
from nvfuse.schedule import split
from nvfuse.schedule.device import device_props
from nvfuse.schedule.kind import ScheduleKind
from nvfuse.schedule.reduction import column_block_for
from nvfuse.schedules import plan_launch
from nvfuse.schedule.split import (
    MAX_SPLITS, SplitSignature, choose_splits, parts, plan_split, splittable, stage2_columns,
    workspace_dtypes,
)



def _ir(fn, *inputs: torch.Tensor) -> FusionIR:  # type: ignore[no-untyped-def]
    gm, names = partition(trace_to_aten(fn, inputs))
    (name,) = names
    return build_fusion(name, getattr(gm, name))


def test_choose_splits_numbers() -> None:
    assert device_props("sm_90").sm_count == 132  # no GPU here: the H100 / H200 default
    # one row of 2^26: two waves of 132 SMs want 264 chunks, capped at 256
    assert choose_splits(1, 1 << 26, 132) == MAX_SPLITS == 256
    # 8 rows: ceil(264 / 8) = 33 -> 32 (powers of two)
    assert choose_splits(8, 1 << 24, 132) == 32
    # below SPLIT_MIN_NUMEL one block per row stays; at it, chunks of MIN_CHUNK
    assert choose_splits(1, split.SPLIT_MIN_NUMEL - 1, 132) == 1
    assert choose_splits(1, 1 << 16, 132) == 16  # 65536 / 4096
    assert choose_splits(132, 1 << 26, 132) == 1  # a row per SM already
    assert choose_splits(100, 1 << 20, 132) == 2  # ceil(264 / 100) = 3 -> 2
    # 512-thread column blocks count half an SM: 128 tiles of 32 columns over 8192 rows (the
    # layer-norm weight gradient at hidden 4096) -> ceil(528 / 128) = 5 -> 4
    assert choose_splits(128, 8192 * 32, 132, threads=512) == 4
    assert choose_splits(132, 8192 * 32, 132, threads=512) == 1  # a block per SM: no split


def test_which_fusions_split() -> None:
    x = torch.randn(4, 64)
    assert splittable(_ir(lambda x: x.sum(), x))
    assert splittable(_ir(lambda x: torch.var_mean(x, -1), x))
    assert splittable(_ir(lambda x: (x * x).amax(-1), x))
    assert not splittable(_ir(lambda x: torch.softmax(x, -1), x))  # full-size output
    assert not splittable(_ir(lambda x: x.argmax(-1), x))
    assert not splittable(_ir(lambda x: (x - x.mean(-1, keepdim=True)).abs().sum(-1), x))


def test_parts_group_welford_with_its_sums() -> None:
    ir = _ir(lambda x: torch.var_mean(x, -1), torch.randn(4, 64))
    (p,) = parts(ir)
    assert p.kind is PhaseKind.WELFORD and len(p.partners) == 1
    assert workspace_dtypes(ir) == [DType.FLOAT32] * 4  # mean, m2, n, then the sum


def test_plan_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(split, "SPLIT_MIN_NUMEL", 512)
    monkeypatch.setattr(split, "MIN_CHUNK", 128)
    x = torch.randn(3, 1000)
    ir = _ir(lambda x: x.sum(-1), x)
    out = torch.empty(3)
    launch = plan_launch(ir, [x], [out], "sm_90")
    plan = plan_split(ir, launch)
    assert plan is not None and plan.splits == 4  # 1000 // 128 = 7 -> 4
    (s1, p1, g1), (s2, p2, g2) = plan.stages
    assert (g1, g2) == (12, 3) and (s1.stage, s2.stage) == (1, 2)
    assert s1.block == p1.block == 128 and s2.block == p2.block == split.STAGE2_BLOCK
    assert plan.scalars == {**launch.scalars, "splits": 4, "chunk_len": 250}
    assert plan.workspaces == ((DType.FLOAT32, 12),)
    assert hash(s1) != hash(s2) and s1.base == s2.base
    monkeypatch.setattr(split, "SPLIT_MIN_NUMEL", 1 << 16)
    assert plan_split(ir, launch) is None


def test_plan_split_column(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(1 << 12, 40)  # 40 kept columns: 4 lanes of float32 per thread, one block
    ir = _ir(lambda x: x.sum(0), x)
    launch = plan_launch(ir, [x], [torch.empty(40)], "sm_90")
    assert launch.signature.kind is ScheduleKind.COLUMN and launch.grid == 1
    assert launch.signature.lanes == 4
    plan = plan_split(ir, launch)
    # the block reads its 40 kept elements per reduced index: 4096 * 40 "elements", and
    # 163840 // MIN_CHUNK = 40 -> 32 splits of 128 reduced indices
    assert plan is not None and plan.splits == 32
    (s1, p1, g1), (s2, _, g2) = plan.stages
    # kernel 2 is a column kernel too: 8 threads across of 4 kept elements each (a 128-byte
    # line of a partial row), 32 thread rows: 2 blocks
    assert (g1, g2) == (32, 2) and s1.base.lanes == 4 and stage2_columns(ir, s1.base) == (4, 8)
    assert s1.block == column_block_for(128) == 256 and s2.lanes == 4  # folds 4 partials
    assert plan.workspaces == ((DType.FLOAT32, 40 * 32),)


def test_kernels_verify_and_run_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 1000, dtype=torch.float64)
    ir = _ir(lambda x: x.var(-1), x)
    out = torch.empty(2, dtype=torch.float64)
    launch = plan_launch(ir, [x], [out], "sm_90")
    base = launch.signature
    k1 = verify_kernel(lower_split(ir, SplitSignature(base, 1, 128)))
    k2 = verify_kernel(lower_split(ir, SplitSignature(base, 2, 256)))
    assert k1.name.startswith("nvfuse_split1_") and k2.name.startswith("nvfuse_split2_")
    assert [t.name for t in k1.tensors] == [t.name for t in k2.tensors]
    assert [p.name for p in k1.scalars][-2:] == ["splits", "chunk_len"]
    assert "col_end" in str(k1) and "welford" in str(k2).lower()
    splits, chunk = 5, 200
    ws = [torch.empty(2 * splits, dtype=torch.float64) for _ in workspace_dtypes(ir)]
    scalars = {**launch.scalars, "splits": splits, "chunk_len": chunk}
    args1, args2 = bind_scalars([k1, k2], scalars)
    run_kernel(k1, [x, out, *ws], args1, 2 * splits)
    assert torch.allclose(ws[2], torch.full((10,), 200.0, dtype=torch.float64))  # counts
    run_kernel(k2, [x, out, *ws], args2, 2)
    torch.testing.assert_close(out, x.var(-1))


@pytest.mark.parametrize("dtype,reduce,splits,lanes", [
    (torch.float32, "sum", 32, 4), (torch.float32, "amax", 2, 2), (torch.float64, "sum", 8, 2),
    (torch.int64, "sum", 4, 2), (torch.float16, "amin", 16, 4),
])
def test_stage2_loads_its_partials_as_vectors(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                              reduce: str, splits: int, lanes: int) -> None:
    """Kernel 2 of a split without a Welford part reads a row's partials up to 16 bytes at a
    time (float32 partials 4, float64 / int64 2, never more than `splits`), folds them in order
    and matches eager; both kernels compile with NVRTC."""
    from nvfuse.codegen.cuda import emit_cuda
    from nvfuse.runtime.nvrtc import compile_to_cubin

    monkeypatch.setattr(split, "SPLIT_MIN_NUMEL", 512)
    monkeypatch.setattr(split, "MIN_CHUNK", 2048 // splits)
    x = (torch.randn(3, 2048) * 100).to(dtype)
    fn = {"sum": lambda x: x.sum(-1), "amax": lambda x: x.amax(-1),
          "amin": lambda x: (x * 2).amin(-1)}[reduce]
    ir = _ir(fn, x)
    want = fn(x)
    out = torch.empty_like(want)
    launch = plan_launch(ir, [x], [out], "sm_90")
    plan = plan_split(ir, launch)
    assert plan is not None and plan.splits == splits
    (s1, _, g1), (s2, _, g2) = plan.stages
    assert (s1.lanes, s2.lanes) == (1, lanes)
    k1, k2 = (verify_kernel(lower_split(ir, s)) for s in (s1, s2))
    def walk(body: tuple[kir.Stmt, ...]):  # type: ignore[no-untyped-def]
        for s in body:
            yield s
            if isinstance(s, (kir.If, kir.For)):
                yield from walk(s.body)

    loads = [s for s in walk(k2.body) if isinstance(s, kir.Load) and s.tensor == "ws0"]
    assert [(ld.lanes, ld.vector) for ld in loads] == [(lanes, True)]
    ws = [torch.full((n,), 7, dtype=d.torch) for d, n in plan.workspaces]
    args1, args2 = bind_scalars([k1, k2], plan.scalars)
    run_kernel(k1, [x, out, *ws], args1, g1)
    run_kernel(k2, [x, out, *ws], args2, g2)
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-3)
    for k in (k1, k2):
        assert compile_to_cubin(emit_cuda(k), "sm_90", "split.cu")[:4] == b"\x7fELF"


# -- the column layout: [splits, kept], consecutive kept elements at consecutive addresses -------
@contextlib.contextmanager
def _warp_accesses(tensor: str, out: list[tuple[type, int, bool, int, np.ndarray]]
                   ) -> Iterator[None]:
    """Record every Load / Store of `tensor` the interpreter runs: (kind, lanes, vector, warp,
    the sorted elements) per warp-level access (a warp: 32 consecutive threads of a block)."""
    rules = state._STMTS
    original = {kind: rules[kind] for kind in (kir.Load, kir.Store)}

    def recorder(kind: type):  # type: ignore[no-untyped-def]
        def rule(m: state.Machine, s: kir.Load | kir.Store) -> None:
            if s.tensor == tensor:
                index = memory._offsets(m, s.offset, s.lanes)
                index = np.broadcast_to(index.reshape(s.lanes, -1), (s.lanes, m.threads))
                active = np.ones(m.threads, bool) if m.mask is None else np.broadcast_to(
                    m.mask, (m.threads,))
                for warp in range(m.threads // 32):
                    lanes = np.flatnonzero(active[warp * 32:(warp + 1) * 32]) + warp * 32
                    if lanes.size:
                        out.append((kind, s.lanes, s.vector, warp,
                                    np.sort(index[:, lanes], None)))
            original[kind](m, s)  # type: ignore[arg-type]
        return rule

    rules[kir.Load], rules[kir.Store] = recorder(kir.Load), recorder(kir.Store)
    try:
        yield
    finally:
        rules.update(original)


def _runs(elements: np.ndarray, width: int) -> bool:
    """Whether `elements` are whole aligned vectors of `width` consecutive elements."""
    groups = elements.reshape(-1, width)
    return bool((groups[:, 0] % width == 0).all()
                and (groups == groups[:, :1] + np.arange(width)).all())


@pytest.mark.parametrize(("dtype", "kept", "lanes"), [
    (torch.float32, 256, 4), (torch.bfloat16, 512, 8), (torch.float32, 40, 4),
    (torch.float64, 64, 2), (torch.float32, 36, 4), (torch.float16, 13, 1)])
def test_column_workspace_is_splits_by_kept(monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype,
                                            kept: int, lanes: int) -> None:
    """A column split's workspace is [splits, kept]: the partial of chunk c for kept element r
    (its chunk's sum) lies at c * kept + r, so kernel 1's warp stores the partials of its
    32 * L consecutive kept elements at consecutive addresses, as 16-byte vectors where the
    thread's L allow (4 float32, 2 float64 partials per store), and each of kernel 2's warp
    loads reads 128-byte lines of partial rows: A threads across V consecutive kept elements
    each (`stage2_columns`)."""
    monkeypatch.setattr(split, "SPLIT_MIN_NUMEL", 512)
    monkeypatch.setattr(split, "MIN_CHUNK", 64)
    x = (torch.randn(512, kept, dtype=torch.float64) * 4).to(dtype)
    ir = _ir(lambda x: x.sum(0), x)
    want = x.sum(0)
    out = torch.empty_like(want)
    launch = plan_launch(ir, [x], [out], "sm_90")
    plan = plan_split(ir, launch)
    assert plan is not None and launch.signature.lanes == lanes and plan.splits > 2
    (s1, _, g1), (s2, _, g2) = plan.stages
    k1, k2 = (verify_kernel(lower_split(ir, s)) for s in (s1, s2))
    ws = torch.full((kept * plan.splits,), float("nan"), dtype=torch.float64 if dtype is
                    torch.float64 else torch.float32)
    args1, args2 = bind_scalars([k1, k2], plan.scalars)
    stores: list[tuple[type, int, bool, int, np.ndarray]] = []
    with _warp_accesses("ws0", stores):
        run_kernel(k1, [x, out, ws], args1, g1)
    width = min(lanes, 16 // ws.element_size())
    assert stores and all(kind is kir.Store for kind, *_ in stores)
    per_warp: dict[int, list[np.ndarray]] = {}
    for _, n, vector, warp, elements in stores:
        assert (n, vector) == (width, width > 1) and _runs(elements, width)
        per_warp.setdefault(warp, []).append(elements)
    for parts_of_warp in per_warp.values():  # the L / width stores of one warp
        elements = np.sort(np.concatenate(parts_of_warp))
        assert np.array_equal(elements, np.arange(elements[0], elements[0] + elements.size))
        assert elements.size == min(32 * lanes, kept - elements[0] % kept)
    chunk = plan.scalars["chunk_len"]
    partials = torch.stack([x[c * chunk:(c + 1) * chunk].to(ws.dtype).sum(0)
                            for c in range(plan.splits)])
    torch.testing.assert_close(ws.view(plan.splits, kept), partials, rtol=1e-5, atol=1e-4)
    loads: list[tuple[type, int, bool, int, np.ndarray]] = []
    with _warp_accesses("ws0", loads):
        run_kernel(k2, [x, out, ws], args2, g2)
    columns, across = stage2_columns(ir, s1.base)
    assert loads and {(kind, n, vector) for kind, n, vector, *_ in loads} == {
        (kir.Load, columns, columns > 1)}
    assert across * columns * ws.element_size() == 128 or across == 32
    line = across * columns
    for *_, elements in loads:  # whole lines: of 32 / A partial rows, A * V kept elements each
        for c in np.unique(elements // kept):
            part = elements[elements // kept == c] - c * kept
            assert part[0] % line == 0 and part.size == min(line, kept - part[0])
            assert np.array_equal(part, np.arange(part[0], part[0] + part.size))
    torch.testing.assert_close(out, want, rtol=1e-3, atol=1e-2)
