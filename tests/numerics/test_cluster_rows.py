"""Cluster rows (nvfuse.schedule.reduction `cluster_for`, sig.cluster, nvfuse/lower/cluster.py):
a staged row too long for one block's shared memory is split over a thread-block cluster, each
block staging its contiguous chunk, the reductions combined across the cluster
(kir.ClusterReduce).  End to end through the interpreter (strict, outputs poisoned, the
shared-memory race check on) against eager, with the persistent buckets off and the staging
cap lowered so that interpreter-sized rows need clusters of 2, 4 and 8 blocks.  Covered: the
choice (the size, the chunk, no cluster on sm_80, past 8 blocks or with an arg reduction),
every float dtype, vector and scalar lanes, chunks that end inside a row and blocks with no
columns, NaN / inf rows with the special value in any block, rows of several inner dims
(batch and group norm), global bytes read once, the interpreter's contract checks, the
emitted CUDA (NVRTC for sm_90, ptxas without spills at real sizes) and the horizontal combine
refusing a cluster kernel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_looped_rows import _inputs
from test_persistent import OPS, _ptxas_report
from cases import special_rows
from test_reductions import _make, _run

import nvfuse
from bench.model.plan import plan_call
from bench.model.traffic import count_traffic
from nvrtc_batch import compile_all
from nvfuse.codegen.cuda import emit_cuda
from nvfuse.dtypes import DType
from nvfuse.interpret.machine import InterpretError, run_kernel
from nvfuse.lower import horizontal, kir
from nvfuse.lower.verify import KernelIRError, verify_kernel
from nvfuse.runtime import executor
from nvfuse.schedule import names, reduction

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
NAN = float("nan")
CAP = 2048  # staging bytes per block at interpreter sizes: 512 fp32 columns

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


@pytest.fixture
def small_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row schedule loops, and at most CAP bytes of a row are staged per block."""
    monkeypatch.setattr(reduction, "persistent_for",
                        lambda n, *_: (reduction.block_for(n), 0))
    monkeypatch.setattr(reduction, "SMEM_ROW_BYTES", CAP)


def _check(fn: object, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype, cluster: int,
           groups: int | None = 1) -> nvfuse.FusedModule:
    fm = _run(fn, inputs, dtype, groups=groups)  # type: ignore[arg-type]
    kernel = fm.kernels[0]
    sig = kernel.signature[1]
    assert sig.persist == 0 and sig.smem and sig.cluster == cluster
    assert kernel.kernel_ir.cluster == cluster
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize(("dtype", "width", "cluster"), [
    (f32, 600, 2), (f32, 2000, 4), (f32, 4000, 8),     # lanes 4
    (f32, 1001, 2), (f32, 2002, 4),                    # lanes 1, 2: chunks end mid-group
    (bf16, 1500, 2), (f16, 3000, 4), (f64, 1100, 8),
])
def test_cluster_rows(interpret: None, small_cap: None, op: str, dtype: torch.dtype,
                      width: int, cluster: int) -> None:
    _check(OPS[op][0], _inputs(op, width, dtype), dtype, cluster)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("width", [600, 4000])
def test_nan_and_inf_rows(interpret: None, small_cap: None, op: str, width: int) -> None:
    """Row 0 all -inf, row 1 one +inf, row 2 one NaN in the last block, row 3 +inf in the
    first block and -inf in the last, row 4 finite, row 5 its first half -inf (blocks holding
    only -inf), row 6 one NaN in the first block."""
    inputs = _inputs(op, width, f32, rows=7)
    x = special_rows(inputs[0])
    x[6, 1] = NAN
    _check(OPS[op][0], (x, *inputs[1:]), f32, 2 if width == 600 else 8)


def test_blocks_without_columns(interpret: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 128-byte cap stages 32 fp32 columns a block: a 65-wide row (past the warp rows)
    takes a cluster of 4 with chunks of 32, so rank 2 holds one column and rank 3 none (its
    partials are the identities)."""
    monkeypatch.setattr(reduction, "persistent_for", lambda n, *_: (reduction.block_for(n), 0))
    monkeypatch.setattr(reduction, "SMEM_ROW_BYTES", 128)
    for op in ("softmax", "layer_norm"):
        inputs = _inputs(op, 65, f32, rows=4)
        fm = _check(OPS[op][0], inputs, f32, 4)
        call, _ = plan_call(fm.fusion_groups[0], inputs, "sm_90", torch.device("cpu"))
        assert call is not None
        k = call.stages[0].kernel.kernel_ir
        assert dict(zip((p.name for p in k.scalars), call.scalars[0]))[names.SMEM_COLS] == 32
        assert call.stages[0].grid == 4 * 4


@pytest.mark.parametrize(("h", "w", "lanes", "cluster"), [
    (16, 16, 4, 4), (9, 10, 2, 2), (9, 9, 1, 2)])
@pytest.mark.parametrize("norm", ["group", "batch"])
def test_rows_of_several_dims(interpret: None, small_cap: None, norm: str, h: int, w: int,
                              lanes: int, cluster: int) -> None:
    """Group norm (one group: rows of 8 channels x pixels) and batch-norm training (8 x pixels
    per channel, a Welford with a cluster combine): chunks of two inner dims, a group of lanes
    inside one channel's pixels."""
    x = _make((8, 8, h, w), f32, f"{norm}x")
    weight, b = _make((8,), f32, f"{norm}w"), _make((8,), f32, f"{norm}b")
    if norm == "group":
        fm = _check(lambda a, c, d: torch.nn.functional.group_norm(a, 1, c, d), (x, weight, b),
                    f32, cluster)
    else:
        rm, rv = _make((8,), f32, "rm"), _make((8,), f32, "rv", near_one=True)
        fm = _check(_batch_norm, (x, weight, b, rm, rv), f32, cluster, groups=None)
    sig = fm.kernels[0].signature[1]
    assert sig.inner_rank == 2 and sig.lanes == lanes


def _batch_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, rm: torch.Tensor,
                rv: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.batch_norm(x, rm, rv, w, b, training=True)


@pytest.mark.parametrize(("width", "cluster"), [(2048, 4), (4000, 8)])
def test_global_reads_once(interpret: None, small_cap: None, width: int, cluster: int) -> None:
    """Each block reads its chunk once: the row is read from global memory once (one block
    re-reads what its shared memory cannot hold: 1.75x at 2048 columns,
    tests/numerics/test_shared_rows.py), and written once."""
    x = _make((4, width), f32, "reads")
    fm = _check(lambda t: torch.softmax(t, -1), (x,), f32, cluster)
    call, _ = plan_call(fm.fusion_groups[0], (x,), "sm_90", torch.device("cpu"))
    assert call is not None
    (stage,) = call.stages
    k = stage.kernel.kernel_ir
    assert stage.grid == 4 * cluster
    t = count_traffic(k, call.tensors, call.scalars[0], stage.grid)
    assert t.elements[k.tensors[0].name] == x.nbytes
    assert t.elements[k.tensors[1].name] == x.nbytes
    step = reduction.SMEM_COLS_STEP
    per_block = -(-width // cluster)
    chunk = -(-per_block // step) * step
    assert kir.dynamic_shared_bytes(k, call.scalars[0]) == chunk * 4 <= CAP


def test_cluster_choice() -> None:
    """The smallest portable cluster whose chunks fit; none where one block holds the row,
    before sm_90, or past 8 blocks."""
    ir = _softmax_ir()
    fit = reduction.SMEM_ROW_BYTES // 4
    assert reduction.cluster_for(ir, fit, [4], "sm_90") == (1, 0)
    assert reduction.cluster_for(ir, fit + 1, [4], "sm_90") == (2, fit // 2 + 16)
    assert reduction.cluster_for(ir, 131_072, [4], "sm_90") == (4, 32_768)
    assert reduction.cluster_for(ir, 131_072, [2], "sm_90") == (2, 65_536)
    assert reduction.cluster_for(ir, 131_072, [4, 2], "sm_90") == (4, 32_768)
    assert reduction.cluster_for(ir, 131_072, [8], "sm_90") == (8, 16_384)
    assert reduction.cluster_for(ir, 131_072, [4], "sm_80") == (1, 0)
    assert reduction.cluster_for(ir, 131_072, [4], "sm_100") == (4, 32_768)
    assert reduction.cluster_for(ir, 8 * fit + 16, [4], "sm_90") == (1, 0)
    assert reduction.cluster_for(ir, 131_072, [], "sm_90") == (1, 0)


def _softmax_ir() -> object:
    x = torch.randn(2, 64)
    fm = nvfuse.fuse(lambda t: torch.softmax(t, -1), (x,))
    return fm.fusion_groups[0].fusion_ir


def test_arg_reductions_keep_one_block(interpret: None, small_cap: None) -> None:
    """An argmax has no cluster combine: its fusion stays a one-block row."""
    x = _make((3, 2000), f32, "arg")

    def fn(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.softmax(t, -1), t.argmax(-1)

    fm = _run(fn, (x,), f32, groups=None)
    for k in fm.kernels:
        ir = k.kernel_ir
        has_arg = any(isinstance(s, kir.ArgReduce) for s in _walk(ir.body))
        assert not (has_arg and ir.cluster > 1)


def _walk(body: tuple[kir.Stmt, ...]) -> list[kir.Stmt]:
    out: list[kir.Stmt] = []
    for s in body:
        out.append(s)
        out += _walk(getattr(s, "body", ()))
    return out


@pytest.mark.parametrize("op", ["softmax", "layer_norm"])
@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
def test_real_width(interpret: None, op: str, dtype: torch.dtype) -> None:
    """A 128K-wide row with the real cap: a cluster of 4 (fp32) or 2 (bf16) blocks."""
    _check(OPS[op][0], _inputs(op, 131_072, dtype, rows=1), dtype, 4 if dtype == f32 else 2)


# -- the kernel IR, the interpreter's contract and the emitted text ------------------------


def _cluster_kernel(body: tuple[kir.Stmt, ...], cluster: int = 2) -> kir.Kernel:
    i32, f = DType.INT32, DType.FLOAT32
    out = kir.TensorParam("out", f, True, 4)
    return kir.Kernel("k", (out,), (), body, 32, kir.Const(4, i32), i32, cluster=cluster)


def _sum_body(value: kir.Expr, slots: tuple[str, ...] = ("slot",)) -> tuple[kir.Stmt, ...]:
    f, i32 = DType.FLOAT32, DType.INT32
    block = kir.Special("blockIdx.x", i32)
    stmts: list[kir.Stmt] = [kir.Shared("scratch", f, 1)]
    for n, slot in enumerate(slots):
        stmts += [kir.Declare(f"b{n}", f), kir.Declare(f"r{n}", f),
                  kir.BlockReduce(kir.Var(f"b{n}", f), value, kir.ReduceOp.SUM, "scratch"),
                  kir.Shared(slot, f, 1),
                  kir.ClusterReduce((kir.Var(f"r{n}", f),), (kir.Var(f"b{n}", f),),
                                    kir.ReduceOp.SUM, slot)]
    stmts += [kir.Declare("w", f, lanes=1),
              kir.Assign(kir.Elem("w", kir.Const(0, i32), f), kir.Var("r0", f)),
              kir.If(kir.IndexOp("==", kir.Special("threadIdx.x", i32), kir.Const(0, i32),
                                 DType.BOOL), (kir.Store("out", f, block, "w", 1, False),)),
              kir.ClusterSync()]
    return tuple(stmts)


def test_interpreter_cluster_reduce() -> None:
    """Block b sums 32 threads' (b + 1): the clusters {0, 1} and {2, 3} each get the sum of
    their two blocks' sums, in every block."""
    f, i32 = DType.FLOAT32, DType.INT32
    one = kir.Compute(nvfuse.fusion.prims.Prim.CAST, (kir.IndexOp(
        "+", kir.Special("blockIdx.x", i32), kir.Const(1, i32), i32),), f)
    k = verify_kernel(_cluster_kernel(_sum_body(one)))
    out = torch.full((4,), NAN)
    run_kernel(k, [out], [], 4)
    assert out.tolist() == [32 * 3.0, 32 * 3.0, 32 * 7.0, 32 * 7.0]
    src = emit_cuda(k)
    assert "__cluster_dims__(2, 1, 1)" in src
    assert "nvf_cluster_allreduce<2, nvf_op_sum, float>(b0, slot);" in src
    assert src.rstrip().endswith("nvf_cluster_sync_relaxed();\n}".rstrip())
    assert "cluster=2" in str(k) and "cluster_sum(b0) slot $slot" in str(k)
    compile_all({"k": src}, "sm_90", "cluster ir")


def test_interpreter_contract() -> None:
    """A grid that splits a cluster, a divergent cluster reduction and a reused slot raise."""
    f, i32 = DType.FLOAT32, DType.INT32
    one = kir.Const(1.0, f)
    k = _cluster_kernel(_sum_body(one))
    with pytest.raises(InterpretError, match="multiple of the cluster"):
        run_kernel(k, [torch.zeros(4)], [], 3)
    reused = _cluster_kernel(_sum_body(one, ("slot", "slot2")))
    body = list(reused.body)
    second = body.index(kir.Shared("slot2", f, 1))
    body[second + 1] = kir.ClusterReduce((kir.Var("r1", f),), (kir.Var("b1", f),),
                                         kir.ReduceOp.SUM, "slot")
    with pytest.raises(InterpretError, match="already served"):
        run_kernel(_cluster_kernel(tuple(body)), [torch.zeros(4)], [], 4)
    rank0 = kir.IndexOp("<", kir.Special("blockIdx.x", i32), kir.Const(1, i32), DType.BOOL)
    divergent = _cluster_kernel((kir.If(rank0, _sum_body(one)[:-1]),))
    with pytest.raises(InterpretError, match="divergent"):
        run_kernel(divergent, [torch.zeros(4)], [], 4)


def test_kernel_ir_checks() -> None:
    f, i32 = DType.FLOAT32, DType.INT32
    with pytest.raises(ValueError, match="needs 3"):
        kir.ClusterReduce((kir.Var("a", f),), (kir.Var("b", f),), None, "s")
    with pytest.raises(ValueError, match="float32 or float64"):
        kir.ClusterReduce(tuple(kir.Var(n, DType.INT64) for n in "abc"),
                          tuple(kir.Var(n, DType.INT64) for n in "def"), None, "s")
    plain = kir.Kernel("k", (), (), (kir.ClusterSync(),), 32, kir.Const(1, i32), i32)
    with pytest.raises(KernelIRError, match="without clusters"):
        verify_kernel(plain)


def test_horizontal_refuses_cluster_kernels(interpret: None, small_cap: None) -> None:
    x = _make((3, 2000), f32, "horiz")
    fm = _check(lambda t: torch.softmax(t, -1), (x,), f32, 4)
    k = fm.kernels[0].kernel_ir
    with pytest.raises(ValueError, match="launches alone"):
        horizontal.combine("h", [k, k])


# -- compile checks (after the cases above have filled _generated) ---------------------------


def test_nvrtc_compiles_every_generated_kernel() -> None:
    assert _generated, "run with the numerics cases above"
    compile_all(_generated, "sm_90", "cluster rows")


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas not installed")
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("dtype", [f32, bf16, f64], ids=str)
def test_cluster_kernel_does_not_spill(interpret: None, tmp_path: Path, op: str,
                                       dtype: torch.dtype) -> None:
    """The 1024-thread cluster kernels at a real width: no spills."""
    regs, stores, loads = _ptxas_report(OPS[op][0], _inputs(op, 131_072, dtype, rows=1),
                                        tmp_path)
    assert stores == 0 and loads == 0, (op, dtype, regs, stores, loads)
    assert regs <= 64
