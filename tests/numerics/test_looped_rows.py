"""Vector looped rows (nvfuse.schedule.reduction `looped_lanes`): rows past the persistent
buckets read and write `lanes` columns per access, end to end through the interpreter
(strict, outputs poisoned, the shared-memory race check on) against eager.  At interpreter
sizes the persistent buckets are switched off (`persistent_for` monkeypatched to the looped
schedule), as the split tests lower SPLIT_MIN_NUMEL; one case per op runs at a real width
past the last bucket.  Covered: every row op of test_persistent.py and argmax, every float
dtype, the lanes each alignment gets (C % lanes, the row base's and a weight's alignment),
NaN / inf rows, the vector accesses in the kernel IR, NVRTC for sm_80 / sm_90 and ptxas -v
(no spills) on the 1024-thread looped kernels."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from test_persistent import OPS, _loads, _ptxas_report, _vector_accesses
from cases import special_rows
from test_reductions import _make, _run

from nvrtc_batch import compile_all
from nvfuse.runtime import executor
from nvfuse.schedule import reduction

f16, bf16, f32, f64 = torch.float16, torch.bfloat16, torch.float32, torch.float64

_generated: dict[str, str] = {}  # kernel name -> source


@pytest.fixture(autouse=True)
def _poison(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "POISON_OUTPUTS", True)


@pytest.fixture
def looped(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every row schedule loops (no persistent bucket), whatever its width, over global
    memory (nothing staged in shared memory: test_shared_rows.py)."""
    monkeypatch.setattr(reduction, "persistent_for",
                        lambda n, *_: (reduction.block_for(n), 0))
    monkeypatch.setattr(reduction, "SMEM_ROW_BYTES", 0)


ROW_OPS = {**OPS, "argmax": (lambda x: torch.argmax(x, -1), 1)}


def _inputs(op: str, width: int, dtype: torch.dtype, rows: int = 3) -> tuple[torch.Tensor, ...]:
    n = ROW_OPS[op][1]
    x = _make((rows, width), dtype, f"{op}{width}x")
    return (x, *(_make((width,), dtype, f"{op}{width}w{i}") for i in range(n - 1)))


def _groups(op: str) -> int | None:
    return None if op == "var_mean" else 1


def _check(op: str, inputs: tuple[torch.Tensor, ...], dtype: torch.dtype,
           lanes: int | None) -> object:
    fm = _run(ROW_OPS[op][0], inputs, dtype, groups=_groups(op))
    sig = fm.kernels[0].signature[1]
    assert sig.persist == 0
    if lanes is not None:
        assert sig.lanes == lanes
    _generated.update((k.name, k.source) for k in fm.kernels)
    return fm


@pytest.mark.parametrize("op", sorted(ROW_OPS))
@pytest.mark.parametrize(("dtype", "width", "lanes"), [
    (f32, 1000, 4), (f32, 302, 2), (f32, 301, 1), (f16, 1000, 8), (bf16, 2056, 8),
    (bf16, 9000, 8), (f64, 300, 1),
])
def test_looped_lanes(interpret: None, looped: None, op: str, dtype: torch.dtype, width: int,
                      lanes: int) -> None:
    _check(op, _inputs(op, width, dtype), dtype, lanes)


@pytest.mark.parametrize(("dtype", "offset", "lanes"), [
    (f32, 0, 4), (f32, 1, 1), (f32, 2, 2), (bf16, 4, 4), (bf16, 3, 1)])
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "argmax"])
def test_sliced_rows(interpret: None, looped: None, op: str, dtype: torch.dtype, offset: int,
                     lanes: int) -> None:
    """Rows sliced out of a wider tensor (row stride width + 8) at an element offset: the row
    base's alignment decides the lanes."""
    width = 800
    inputs = _inputs(op, width, dtype)
    x = _make((3, width + 8), dtype, f"{op}base")[:, offset:offset + width]
    _check(op, (x, *inputs[1:]), dtype, lanes)


@pytest.mark.parametrize("offset", [1, 2])
def test_misaligned_weight(interpret: None, looped: None, offset: int) -> None:
    """A weight whose data pointer is not 16-byte aligned lowers the whole row's lanes."""
    x, w, b = _inputs("layer_norm", 1024, bf16)
    base = _make((1024 + 8,), bf16, "misaligned-w")
    _check("layer_norm", (x, base[offset:offset + 1024], b), bf16, offset)


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm", "sum",
                                "argmax"])
def test_nan_and_inf_rows(interpret: None, looped: None, op: str) -> None:
    """Row 0 all -inf, row 1 one +inf, row 2 one NaN, row 3 +inf and -inf, row 4 finite,
    row 5 its first half -inf (threads holding only -inf)."""
    width = 1200
    inputs = _inputs(op, width, f32, rows=6)
    x = special_rows(inputs[0])
    _check(op, (x, *inputs[1:]), f32, 4)


@pytest.mark.parametrize(("op", "dtype", "lanes"), [
    ("softmax", bf16, 8), ("log_softmax", f32, 4), ("layer_norm", bf16, 8),
    ("rms_norm", f16, 8)])
def test_vector_accesses(interpret: None, looped: None, op: str, dtype: torch.dtype,
                         lanes: int) -> None:
    """Every input and full output of a looped row is read / written `lanes` columns per
    access; softmax still reads x twice (the online pass, then normalize)."""
    fm = _check(op, _inputs(op, 2048, dtype), dtype, lanes)
    kir = fm.kernels[0].kernel_ir  # type: ignore[attr-defined]
    outputs = {t.name for t in kir.tensors if t.is_output}
    stores = _vector_accesses(kir.body, "Store")
    loads = _vector_accesses(kir.body, "Load")
    if op in ("softmax", "log_softmax", "layer_norm"):
        assert stores == dict.fromkeys(outputs, lanes)
    assert loads == {t.name: lanes for t in kir.tensors if not t.is_output}
    if op in ("softmax", "log_softmax"):
        assert _loads(kir.body, "in0") == 2


@pytest.mark.parametrize("op", ["softmax", "log_softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("dtype", [f32, bf16], ids=str)
def test_real_width(interpret: None, op: str, dtype: torch.dtype,
                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the last persistent bucket with the real buckets: the looped schedule, vector."""
    monkeypatch.setattr(reduction, "SMEM_ROW_BYTES", 0)
    width = reduction.PERSIST_BUCKETS[-1][0] + 1024
    _check(op, _inputs(op, width, dtype, rows=2), dtype, 16 // dtype.itemsize)


# -- compile checks (after the cases above have filled _generated) ---------------------------


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_nvrtc_compiles_every_generated_kernel(arch: str) -> None:
    assert _generated, "run with the numerics cases above"
    compile_all(_generated, arch, "looped")


@pytest.mark.skipif(shutil.which("ptxas") is None, reason="ptxas not installed")
@pytest.mark.parametrize("op", ["softmax", "layer_norm", "rms_norm"])
@pytest.mark.parametrize("dtype", [f32, bf16, f64], ids=str)
def test_looped_kernel_does_not_spill(interpret: None, tmp_path: Path, op: str,
                                      dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
                                      ) -> None:
    """The 1024-thread looped kernels (64 registers at most): no spills."""
    monkeypatch.setattr(reduction, "SMEM_ROW_BYTES", 0)
    width = reduction.PERSIST_BUCKETS[-1][0] + 1024
    regs, stores, loads = _ptxas_report(OPS[op][0], _inputs(op, width, dtype, rows=1),
                                        tmp_path)
    assert stores == 0 and loads == 0, (op, dtype, regs, stores, loads)
    assert regs <= 64
