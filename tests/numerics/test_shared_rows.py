"""Shared-memory rows (nvfuse.schedule.reduction `staged_inputs`, sig.smem): a looped row read
more than once stages its first smem_cols columns in dynamic shared memory, end to end through
the interpreter (strict, outputs poisoned, the shared-memory race check on) against eager.  At
interpreter sizes the persistent buckets are switched off and the staging cap
(SMEM_ROW_BYTES) lowered, so rows both fit whole and overflow it (the columns past smem_cols
re-read from global memory; clusters off, which tests/numerics/test_cluster_rows.py covers);
one case per op runs at a real width.  Covered: the choice (rows
read once are not staged), every float dtype, vector and scalar lanes, two staged inputs side
by side, NaN / inf rows, global bytes read (the traffic counter of bench --model), the
launch's dynamic shared memory, NVRTC for sm_80 / sm_90, ptxas -v (no spills), and the
horizontal combine refusing a member with dynamic shared memory."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_looped_rows import ROW_OPS, _inputs
from test_persistent import OPS, _ptxas_report, _vector_accesses
from cases import special_rows
from test_reductions import _make, _run

import nvfuse
from bench.model.plan import plan_call
from bench.model.traffic import count_traffic
from nvrtc_batch import compile_all
from nvfuse.lower import horizontal, kir
from nvfuse.runtime import executor
from nvfuse.schedule import names, reduction

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
CAP = 2048  # staging bytes per block at interpreter sizes

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


@pytest.fixture
def staged(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row schedule loops, at most CAP bytes of a row are staged, and a row that
    overflows them stays in one block (no clusters: tests/numerics/test_cluster_rows.py)."""
    monkeypatch.setattr(reduction, "persistent_for",
                        lambda n, *_: (reduction.block_for(n), 0))
    monkeypatch.setattr(reduction, "SMEM_ROW_BYTES", CAP)
    monkeypatch.setattr(reduction, "CLUSTER_SIZES", ())


def _check(fn: object, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
           smem: bool, groups: int | None = 1) -> nvfuse.FusedModule:
    fm = _run(fn, inputs, dtype, groups=groups)  # type: ignore[arg-type]
    kernel = fm.kernels[0]
    sig = kernel.signature[1]
    assert sig.persist == 0 and sig.smem is smem
    assert bool(kir.dynamic_shared(kernel.kernel_ir)) is smem
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize(("dtype", "width"), [
    (f32, 400), (f32, 2000), (f32, 301), (f32, 1001),          # fits / overflows, lanes 4 / 1
    (bf16, 1000), (bf16, 4000), (f16, 1002), (f64, 200), (f64, 700),
])
def test_staged_rows(interpret: None, staged: None, op: str, dtype: torch.dtype,
                     width: int) -> None:
    _check(OPS[op][0], _inputs(op, width, dtype), dtype, True)


def _group_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.group_norm(x, 4, w, b)


def _batch_norm(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, rm: torch.Tensor,
                rv: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.batch_norm(x, rm, rv, w, b, training=True)


@pytest.mark.parametrize(("h", "w", "lanes"), [
    (8, 8, 4), (16, 16, 4),   # rows of 128 / 512 columns: fit, overflow
    (5, 10, 2), (5, 9, 1),    # the pixels per channel decide the lanes
])
@pytest.mark.parametrize("norm", ["group", "batch"])
def test_rows_of_several_dims(interpret: None, staged: None, norm: str, h: int, w: int,
                              lanes: int) -> None:
    """Group norm (channels x pixels per row) and batch-norm training (batch x pixels per
    channel): rows of two inner dims, staged through their strides, a group of lanes inside
    one channel's pixels."""
    x = _make((2, 8, h, w), f32, f"{norm}x")
    weight, b = _make((8,), f32, f"{norm}w"), _make((8,), f32, f"{norm}b")
    if norm == "group":
        fm = _check(_group_norm, (x, weight, b), f32, True)
    else:
        rm, rv = _make((8,), f32, "rm"), _make((8,), f32, "rv", near_one=True)
        fm = _check(_batch_norm, (x, weight, b, rm, rv), f32, True, groups=None)
    sig = fm.kernels[0].signature[1]
    assert sig.inner_rank == 2 and sig.lanes == lanes
    if lanes > 1:
        k = fm.kernels[0].kernel_ir
        assert _vector_accesses(k.body, "Load")[k.tensors[0].name] == lanes
        out = next(t.name for t in k.tensors if t.is_output)  # the normalized x
        assert _vector_accesses(k.body, "Store")[out] == lanes


@pytest.mark.parametrize("op", ["sum", "var_mean", "argmax"])
def test_rows_read_once_are_not_staged(interpret: None, staged: None, op: str) -> None:
    """One pass over the row, no full output: staging would only add shared-memory traffic."""
    groups = None if op == "var_mean" else 1
    _check(ROW_OPS[op][0], _inputs(op, 1000, f32), f32, False, groups)


@pytest.mark.parametrize("width", [200, 1000])
def test_two_staged_inputs(interpret: None, staged: None, width: int) -> None:
    """softmax(x + y): both inputs staged, side by side in the dynamic shared memory."""
    x, y = _make((3, width), f32, "two-x"), _make((3, width), bf16, "two-y")
    fm = _check(lambda a, b: torch.softmax(a + b, -1), (x, y), f32, True)
    arrays = kir.dynamic_shared(fm.kernels[0].kernel_ir)
    assert [a.dtype.itemsize for a in arrays] == [4, 2]


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("width", [400, 2000])
def test_nan_and_inf_rows(interpret: None, staged: None, op: str, width: int) -> None:
    """Row 0 all -inf, row 1 one +inf, row 2 one NaN (in the overflow part of a long row),
    row 3 +inf and -inf, row 4 finite, row 5 its first half -inf."""
    inputs = _inputs(op, width, f32, rows=6)
    x = special_rows(inputs[0])
    _check(OPS[op][0], (x, *inputs[1:]), f32, True)


@pytest.mark.parametrize(("width", "reads"), [(400, 1.0), (2048, 1.75)])
def test_global_reads(interpret: None, staged: None, width: int, reads: float) -> None:
    """A softmax row that fits is read from global memory once; one of 2048 fp32 columns with
    512 staged reads the other 1536 twice: 1 + 1536 / 2048 = 1.75 times the row."""
    x = _make((4, width), f32, "reads")
    fm = _check(lambda t: torch.softmax(t, -1), (x,), f32, True)
    call, _ = plan_call(fm.fusion_groups[0], (x,), "sm_90", torch.device("cpu"))
    assert call is not None
    (stage,) = call.stages
    k = stage.kernel.kernel_ir
    t = count_traffic(k, call.tensors, call.scalars[0], stage.grid)
    assert t.elements[k.tensors[0].name] == reads * x.nbytes
    assert t.elements[k.tensors[1].name] == x.nbytes
    cols = min(width, CAP // 4)
    assert kir.dynamic_shared_bytes(k, call.scalars[0]) == cols * 4
    assert dict(zip((p.name for p in k.scalars), call.scalars[0]))[names.SMEM_COLS] == cols


def _online(k: kir.Kernel) -> bool:
    """Whether the kernel runs the online softmax update (its running max registers)."""
    def walk(body: tuple[kir.Stmt, ...]) -> bool:
        return any((isinstance(s, kir.Declare) and s.name.startswith("omn"))
                   or walk(getattr(s, "body", ())) for s in body)
    return walk(k.body)


@pytest.mark.parametrize(("width", "whole"), [(400, True), (2048, False)])
def test_softmax_passes(interpret: None, staged: None, width: int, whole: bool) -> None:
    """A row staged whole takes softmax's max and sum of exp in two plain passes over shared
    memory (the online update's rescale costs a second exp and a select per element); a row
    staged in part keeps the online pass, which reads the overflow once less."""
    x = _make((4, width), f32, "passes")
    fm = _check(lambda t: torch.softmax(t, -1), (x,), f32, True)
    assert fm.kernels[0].signature[1].whole_row is whole
    assert _online(fm.kernels[0].kernel_ir) is not whole


@pytest.mark.parametrize(("width", "staged_row"), [(400, True), (2048, False)])
def test_rows_read_once_online_are_staged_whole(interpret: None, staged: None, width: int,
                                                staged_row: bool) -> None:
    """A softmax's statistics alone (a cross-entropy's row kernel) read the row once in the
    online pass: staged only where the row fits whole, for the two cheaper passes; in part,
    staging would add traffic for nothing."""
    x = _make((4, width), f32, "lse")

    def stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = t.amax(-1, keepdim=True)
        return m, torch.exp(t - m).sum(-1, keepdim=True).log()

    fm = _check(stats, (x,), f32, staged_row)
    assert _online(fm.kernels[0].kernel_ir) is not staged_row


def test_smem_cols_at_real_sizes() -> None:
    """The cap: a whole 50K-wide bf16 row fits; a 128K one stages a multiple of 16 columns."""
    assert reduction.smem_cols(50_304, [2]) == 50_304
    cols = reduction.smem_cols(131_072, [2])
    assert cols % reduction.SMEM_COLS_STEP == 0 and cols * 2 <= reduction.SMEM_ROW_BYTES
    assert reduction.SMEM_ROW_BYTES + 48 * 1024 // 32 <= 227 * 1024
    # an A100 opts in to at most 163 KiB a block: its cap is lower
    assert reduction.smem_row_bytes("sm_90") == reduction.SMEM_ROW_BYTES == 224 * 1024
    assert reduction.smem_row_bytes("sm_80") == 160 * 1024
    assert reduction.smem_cols(131_072, [2], "sm_80") == 80 * 1024


def test_dynamic_layout_matches_the_launch_size() -> None:
    """The emitter places each dynamic array after the previous ones rounded up to 16 bytes,
    exactly as `kir.dynamic_shared_bytes` sizes the launch; a nested declaration is refused."""
    from nvfuse.codegen.cuda import emit_cuda
    from nvfuse.dtypes import DType
    from nvfuse.fusion.prims import Prim
    from nvfuse.lower.verify import verify_kernel

    i32 = DType.INT32
    cols = kir.Param(names.SMEM_COLS, i32)
    a = kir.Shared("s_a", DType.FLOAT32, 64, count=cols)
    b = kir.Shared("s_b", DType.BFLOAT16, 64, count=cols)
    idx = kir.Special("threadIdx.x", i32)
    body: tuple[kir.Stmt, ...] = (a, b, kir.Assign(
        kir.SharedElem("s_b", idx, DType.BFLOAT16),
        kir.Compute(Prim.CAST, (kir.SharedElem("s_a", idx, DType.FLOAT32),),
                    DType.BFLOAT16)))
    k = verify_kernel(kir.Kernel("k", (), (cols,), body, 32, kir.Const(1, i32), i32))
    assert kir.dynamic_shared_bytes(k, (5,)) == 32 + 16 and kir.dynamic_shared_bytes(k, (8,)) == 48
    src = emit_cuda(k)
    assert "float* s_a = reinterpret_cast<float*>(nvf_dyn_smem + 0);" in src
    assert ("s_b = reinterpret_cast<nvf_bfloat16*>(nvf_dyn_smem + (((size_t)smem_cols * 4 + 15)"
            " / 16 * 16));") in src
    nested = kir.Kernel("k", (), (cols,), (kir.If(kir.Const(True, DType.BOOL), (a,)),), 32,
                        kir.Const(1, i32), i32)
    with pytest.raises(Exception, match="nested scope"):
        verify_kernel(nested)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm"])
@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
def test_real_width(interpret: None, op: str, dtype: torch.dtype) -> None:
    """Past the last persistent bucket with the real cap: the whole row staged."""
    width = reduction.PERSIST_BUCKETS[-1][0] + 1024
    fm = _check(OPS[op][0], _inputs(op, width, dtype, rows=2), dtype, True)
    assert fm.kernels[0].signature[1].lanes == 16 // dtype.itemsize


def test_horizontal_refuses_dynamic_shared_memory(interpret: None, staged: None) -> None:
    """A kernel with dynamic shared memory is sized per launch: it never shares a launch."""
    x = _make((3, 400), f32, "horiz")
    fm = _check(lambda t: torch.softmax(t, -1), (x,), f32, True)
    k = fm.kernels[0].kernel_ir
    with pytest.raises(ValueError, match="dynamic shared memory"):
        horizontal.combine("h", [k, k])
    assert horizontal.shared_bytes(k) > reduction.SMEM_ROW_BYTES // 4


# -- compile checks (after the cases above have filled _generated) ---------------------------


def test_independent_staged_rows_launch_alone(interpret: None, staged: None) -> None:
    """Two independent staged softmaxes of one call: each launches alone (the horizontal
    bundling counts a dynamic array at its cap), both against eager."""
    x, y = _make((3, 400), f32, "alone-x"), _make((5, 480), f32, "alone-y")  # one block size

    def two(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.softmax(a, -1), torch.softmax(b, -1)

    fm = _run(two, (x, y), f32, groups=2)
    assert nvfuse.stats()["launches"] == 2
    assert all(kir.dynamic_shared(k.kernel_ir) for k in fm.kernels)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_generated_kernel(arch: str) -> None:
    assert _generated, "run with the numerics cases above"
    compile_all(_generated, arch, "shared rows")


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas not installed")
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("dtype", [f32, bf16, f64], ids=str)
def test_staged_kernel_does_not_spill(interpret: None, tmp_path: Path, op: str,
                                      dtype: torch.dtype) -> None:
    """The 1024-thread staged kernels (64 registers at most): no spills."""
    width = reduction.PERSIST_BUCKETS[-1][0] + 1024
    regs, stores, loads = _ptxas_report(OPS[op][0], _inputs(op, width, dtype, rows=1),
                                        tmp_path)
    assert stores == 0 and loads == 0, (op, dtype, regs, stores, loads)
    assert regs <= 64


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas not installed")
@pytest.mark.parametrize("norm", ["group", "batch"])
def test_staged_norms_of_several_dims_do_not_spill(interpret: None, tmp_path: Path,
                                                   norm: str) -> None:
    """Group norm (one group: rows of 8 channels x 4096 pixels) and batch-norm training
    (8 x 4096 per channel): past the persistent buckets, staged with the index math of two
    inner dims."""
    x = _make((8, 8, 64, 64), f32, f"{norm}-ptxas")
    w, b = _make((8,), f32, "w"), _make((8,), f32, "b")
    if norm == "group":
        fn, inputs = (lambda a, c, d: torch.nn.functional.group_norm(a, 1, c, d)), (x, w, b)
    else:
        rm, rv = _make((8,), f32, "rm"), _make((8,), f32, "rv", near_one=True)
        fn, inputs = _batch_norm, (x, w, b, rm, rv)  # type: ignore[assignment]
    fm = nvfuse.fuse(fn, inputs)
    fm(*inputs)
    sig = fm.kernels[0].signature[1]
    assert sig.smem and sig.inner_rank == 2 and sig.block == 1024
    regs, stores, loads = _ptxas_report(fn, inputs, tmp_path)
    assert stores == 0 and loads == 0, (norm, regs, stores, loads)
    assert regs <= 64
