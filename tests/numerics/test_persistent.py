"""Persistent row schedules (nvfuse.schedule.reduction `persistent_for`) end to end through
the interpreter (strict, outputs poisoned, the shared-memory race check on), against eager:
softmax, log_softmax, layer norm, RMSNorm, var_mean and sum over row lengths on both sides of
every persistent bucket edge and past the last one (the looped schedule), in every float
dtype, with NaN / inf rows and row lengths that are no multiple of the block; the schedule
each width gets; every generated kernel compiled by NVRTC for sm_80 and sm_90; and ptxas -v
on the largest persistent bucket (no spills)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from cases import special_rows
from test_reductions import _make, _run

from nvrtc_batch import compile_all
from nvfuse.runtime import executor
from nvfuse.runtime.nvrtc import compile_to_ptx
from nvfuse.schedule import reduction
from nvfuse.schedule.device import DeviceProps, device_props
from nvfuse.schedule.reduction import PERSIST_BUCKETS, PERSIST_WORDS, persistent_for

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64
FLOATS = (f32, f16, bf16, f64)

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


def _ln(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (x.shape[-1],), w, b)


def _rms(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    xf = x.float() if x.dtype in (f16, bf16) else x
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6)).to(x.dtype) * w


def _var_mean(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.var_mean(x, -1)


OPS: dict[str, tuple[Callable[..., object], int]] = {  # name -> (fn, inputs: x then (C,) ones)
    "softmax": (lambda x: torch.softmax(x, -1), 1),
    "log_softmax": (lambda x: torch.log_softmax(x, -1), 1),
    "layer_norm": (_ln, 3),
    "rms_norm": (_rms, 2),
    "var_mean": (_var_mean, 1),
    "sum": (lambda x: x.sum(-1), 1),
}
# each persistent bucket's edge and one past it (the last one past is the looped schedule),
# a short row, and a row no multiple of 32
EDGES = [limit for limit, _ in PERSIST_BUCKETS]
WIDTHS = [7, 100, *EDGES, *(e + 1 for e in EDGES)]


def _inputs(op: str, width: int, dtype: torch.dtype, rows: int = 3) -> tuple[torch.Tensor, ...]:
    n = OPS[op][1]
    x = _make((rows, width), dtype, f"{op}{width}x")
    return (x, *(_make((width,), dtype, f"{op}{width}w{i}") for i in range(n - 1)))


def _groups(op: str) -> int | None:
    return None if op == "var_mean" else 1  # var_mean's siblings may be two kernels


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("width", WIDTHS)
def test_widths_across_buckets(interpret: None, op: str, width: int) -> None:
    fm = _run(OPS[op][0], _inputs(op, width, f32), f32, groups=_groups(op))
    _generated.update((k.name, k.source) for k in fm.kernels)


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("dtype", [f16, bf16, f64], ids=str)
@pytest.mark.parametrize("width", [100, 2049, 8193, 32769])
def test_dtypes(interpret: None, op: str, dtype: torch.dtype, width: int) -> None:
    fm = _run(OPS[op][0], _inputs(op, width, dtype, rows=2), dtype, groups=_groups(op))
    _generated.update((k.name, k.source) for k in fm.kernels)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm", "sum"])
@pytest.mark.parametrize("width", [300, 9000, 40000])
def test_nan_and_inf_rows(interpret: None, op: str, width: int) -> None:
    """Row 0 all -inf, row 1 one +inf, row 2 one NaN, row 3 +inf and -inf, row 4 finite,
    row 5 its first half -inf (threads holding only -inf)."""
    inputs = _inputs(op, width, f32, rows=6)
    x = special_rows(inputs[0])
    fm = _run(OPS[op][0], (x, *inputs[1:]), f32)
    _generated.update((k.name, k.source) for k in fm.kernels)


@pytest.mark.parametrize("op", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", [f32, f16], ids=str)
def test_softmax_50000_wide(interpret: None, monkeypatch: pytest.MonkeyPatch, op: str,
                            dtype: torch.dtype) -> None:
    """Rows far past the persistent buckets, staged in shared memory (test_shared_rows.py).
    Whole (the real cap): one copy loop reads x, then the max, the sum of exp and normalize
    read shared memory.  In part (a 64 KiB cap, no clusters): one online (max, sum of exp)
    pass, then normalize, each reading global memory past the staged columns."""
    x = _make((2, 50_000), dtype, f"{op}50k") * 4
    x[1, 123] = 60.0  # a late, dominant maximum: the online pass rescales its running sum
    fm = _run(OPS[op][0], (x,), dtype)
    assert fm.kernels[0].signature[1].whole_row
    assert _loads(fm.kernels[0].kernel_ir.body, "in0") == 1
    _generated.update((k.name, k.source) for k in fm.kernels)
    monkeypatch.setattr(reduction, "SMEM_ROW_BYTES", 64 * 1024)
    monkeypatch.setattr(reduction, "CLUSTER_SIZES", ())
    fm = _run(OPS[op][0], (x,), dtype)
    sig = fm.kernels[0].signature[1]
    assert sig.smem and not sig.whole_row
    assert _loads(fm.kernels[0].kernel_ir.body, "in0") == 3
    _generated.update((k.name, k.source) for k in fm.kernels)


def test_schedule_per_width() -> None:
    """The persistent buckets and the register budget (one fp32 input: 1 word a column)."""
    assert persistent_for(7, 1) == (32, 4)          # the block is cut to the row: one warp
    assert persistent_for(512, 1) == (128, 4)
    assert persistent_for(513, 1) == (128, 8)        # the 2048 bucket's 8 slots, 65 -> 128
    assert persistent_for(2048, 1) == (256, 8)
    assert persistent_for(4096, 1) == (256, 16)      # not 512 threads with half of them idle
    assert persistent_for(4096, 3) == (512, 8)       # doubled for the budget, then cut
    assert persistent_for(8192, 1) == (512, 16)
    assert persistent_for(8192, 2) == (512, 16)      # x and a residual, or one fp64 input
    assert persistent_for(8192, 3) == (1024, 8)      # over budget at 512: the block doubles
    assert persistent_for(8192, 5) == (512, 0)       # still over: looped (its block_for)
    assert persistent_for(8193, 1) == (1024, 16)
    assert persistent_for(16384, 2) == (1024, 16)    # a 16K-wide bf16 norm and its residual
    assert persistent_for(16385, 2) == (1024, 0)     # 2 x 32 words: over budget, looped
    assert persistent_for(32768, 1) == (1024, 32)    # a 32K-wide softmax
    assert persistent_for(32769, 1) == (1024, 0)     # past the last bucket: looped
    assert persistent_for(32768, 1, inner_rank=2) == (1024, 0)  # 32 slots of 2-d index math
    assert persistent_for(16384, 1, inner_rank=2) == (1024, 16)
    assert persistent_for(100, 0) == (128, 0)        # nothing to cache (e.g. a row-invariant)
    assert persistent_for(8192, 2, budget=16) == (1024, 8)   # a device with half the registers


@pytest.mark.skipif(torch.cuda.is_available(), reason="the defaults stand in without a GPU")
def test_device_defaults() -> None:
    assert device_props("sm_90") == DeviceProps(132, 65536, 228 * 1024)
    assert device_props("sm_80").sm_count == 108
    assert device_props("sm_75") == device_props("sm_90")
    assert device_props("sm_90").persist_words == PERSIST_WORDS == 32


@pytest.mark.parametrize(("dtype", "width", "offset", "lanes"), [
    (f32, 300, 0, 4), (f32, 302, 0, 2), (f32, 301, 0, 1),     # C % lanes: masked tails
    (f32, 300, 1, 1), (f32, 300, 2, 2),                        # the row base's alignment
    (bf16, 1024, 0, 8), (f16, 300, 0, 4), (f64, 2048, 0, 2),   # 16 bytes, at most persist
])
@pytest.mark.parametrize("op", ["softmax", "layer_norm"])
def test_vector_lanes(interpret: None, op: str, dtype: torch.dtype, width: int, offset: int,
                      lanes: int) -> None:
    """Vector row loads: the lanes the schedule picks (signature) and the results, for rows
    sliced out of a wider tensor (row stride width + 8) at an element offset."""
    inputs = _inputs(op, width, dtype)
    base = _make((3, width + 8), dtype, f"{op}{width}base")
    x = base[:, offset:offset + width]
    fm = _run(OPS[op][0], (x, *inputs[1:]), dtype)
    assert fm.kernels[0].signature[1].lanes == lanes
    _generated.update((k.name, k.source) for k in fm.kernels)


def test_softmax_kernel_loads_each_element_once(interpret: None) -> None:
    """The persistent softmax's kernel IR has one Load of x, in the load loop; the max, the
    sum of exp and the normalize loops read registers.  Looped and staged whole: one (the
    copy into shared memory)."""
    fm = _run(OPS["softmax"][0], _inputs("softmax", 1000, f32), f32)
    (kernel,) = fm.kernels
    assert kernel.signature[1].persist == 8
    assert _loads(kernel.kernel_ir.body, "in0") == 1
    fm = _run(OPS["softmax"][0], _inputs("softmax", 40000, f32), f32)
    assert _loads(fm.kernels[0].kernel_ir.body, "in0") == 1


def _vector_accesses(stmts: tuple, kind: str) -> dict[str, int]:
    """tensor -> lanes of every vector Load / Store (`kind`) in a kernel IR body."""
    found: dict[str, int] = {}
    for s in stmts:
        if type(s).__name__ == kind and s.vector:
            found[s.tensor] = s.lanes
        found.update(_vector_accesses(getattr(s, "body", ()), kind))
    return found


@pytest.mark.parametrize(("dtype", "width", "lanes"), [
    (bf16, 4096, 8), (f16, 1024, 8), (bf16, 768, 8), (f32, 300, 4), (f32, 302, 2),
])
@pytest.mark.parametrize("op", ["layer_norm", "rms_norm", "softmax"])
def test_epilogue_vector_accesses(interpret: None, op: str, dtype: torch.dtype, width: int,
                                  lanes: int) -> None:
    """A persistent row with vector loads also writes its full outputs and reads its weights
    `lanes` columns per access (16 bytes for 16-bit rows), against eager."""
    fm = _run(OPS[op][0], _inputs(op, width, dtype), dtype)
    kir = fm.kernels[0].kernel_ir
    assert fm.kernels[0].signature[1].lanes == lanes
    n_in = OPS[op][1]
    outputs = {t.name for t in kir.tensors if t.is_output}
    assert _vector_accesses(kir.body, "Store") == dict.fromkeys(outputs, lanes)
    weights = {t.name for t in kir.tensors[1:n_in]}
    assert weights <= set(_vector_accesses(kir.body, "Load"))
    _generated.update((k.name, k.source) for k in fm.kernels)


@pytest.mark.parametrize("offset", [1, 2])
def test_epilogue_misaligned_weight(interpret: None, offset: int) -> None:
    """A weight whose data pointer is not 16-byte aligned lowers the vector width of the whole
    row (the epilogue reads it `lanes` at a time): bf16, offset 1 -> 1 lane, 2 -> 2."""
    x, w, b = _inputs("layer_norm", 1024, bf16)
    base = _make((1024 + 8,), bf16, "misaligned-w")
    fm = _run(OPS["layer_norm"][0], (x, base[offset:offset + 1024], b), bf16)
    assert fm.kernels[0].signature[1].lanes == offset
    _generated.update((k.name, k.source) for k in fm.kernels)


def _loads(stmts: tuple, tensor: str) -> int:
    count = 0
    for s in stmts:
        count += getattr(s, "tensor", None) == tensor and type(s).__name__ == "Load"
        count += _loads(getattr(s, "body", ()), tensor)
    return count


# -- compile checks (after the cases above have filled _generated) ---------------------------


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_generated_kernel(arch: str) -> None:
    assert _generated, "run with the numerics cases above"
    compile_all(_generated, arch, "persistent")


def _ptxas_report(fn: Callable[..., object], inputs: tuple[torch.Tensor, ...],
                  tmp: Path) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) of the kernel `fn` builds, sm_90."""
    import nvfuse

    fm = nvfuse.fuse(fn, inputs)
    fm(*inputs)
    (kernel,) = fm.kernels
    ptx = tmp / f"{kernel.name}.ptx"
    text = compile_to_ptx(kernel.source, "sm_90")
    ptx.write_text(text)
    cmd = ["ptxas", "-v", "-arch=sm_90", str(ptx), "-o", str(tmp / "k.cubin")]
    run = subprocess.run(cmd, capture_output=True, text=True)
    older = re.search(r"current version is '([\d.]+)'", run.stderr)
    if run.returncode and older:
        # NVRTC may be newer than the installed ptxas: the kernels use no newer PTX feature,
        # so state ptxas's own ISA version
        ptx.write_text(re.sub(r"^\.version [\d.]+", f".version {older.group(1)}", text,
                              flags=re.M))
        run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    log = run.stderr
    regs = int(re.search(r"Used (\d+) registers", log).group(1))  # type: ignore[union-attr]
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    assert spill is not None, log
    return regs, int(spill.group(1)), int(spill.group(2))


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas not installed")
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("dtype", [f32, f16, f64], ids=str)
def test_largest_persistent_bucket_does_not_spill(interpret: None, tmp_path: Path, op: str,
                                                   dtype: torch.dtype) -> None:
    width = EDGES[-1]
    fm_inputs = _inputs(op, width, dtype, rows=1)
    regs, stores, loads = _ptxas_report(OPS[op][0], fm_inputs, tmp_path)
    assert stores == 0 and loads == 0, (op, dtype, regs, stores, loads)
    assert regs <= 128  # a 512-thread block at 64K registers per SM
