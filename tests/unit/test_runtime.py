"""nvfuse.runtime on the CPU: NVRTC compiles, the memory and disk cubin caches, dumps, and the
launch argument convention (everything that needs no GPU)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

import nvfuse
from nvfuse import config, version
from nvfuse.dtypes import DType
from nvfuse.errors import CompileError, LaunchError
from nvfuse.runtime import cache, nvrtc
from nvfuse.runtime.dump import dump, enabled
from nvfuse.runtime.launch import LoadedKernel, marshal_args

pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="NVRTC (CuPy) is not installed")

ELF = b"\x7fELF"

COPY = """\
extern "C" __global__ void nvf_copy(const float* __restrict__ x, float* __restrict__ y,
                                    long long n) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i];
}
"""

BROKEN = """\
extern "C" __global__ void nvf_broken(float* y) {
  float v = 1.0f;
  y[0] = v +;
}
"""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    """Fresh flags (cache under tmp_path, no dumps), empty memory cache and zeroed counters."""
    for flag in ("NVFUSE_CACHE", "NVFUSE_DUMP", "NVFUSE_DUMP_DIR", "NVFUSE_ARCH"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setenv("NVFUSE_CACHE_DIR", str(tmp_path / "cache"))
    config.reload()
    cache.clear_memory_cache()
    nvfuse.reset_stats()
    yield monkeypatch
    monkeypatch.undo()  # before reload: the fixture's own teardown runs ahead of monkeypatch's
    config.reload()
    cache.clear_memory_cache()


def _count(key: str) -> int:
    return nvfuse.stats()[key]


def _entry(src: str = COPY, arch: str = "sm_90") -> Path:
    return Path(cache.entry_path(cache.cache_key(src, arch)))


def env_cache_dir() -> Path:
    return Path(config.get().cache_dir)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# -- NVRTC -----------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
def test_compiles_to_cubin(env: pytest.MonkeyPatch, arch: str) -> None:
    cubin = cache.compile_source(COPY, arch)
    assert cubin[:4] == ELF
    assert _count("nvrtc_compiles") == 1


def test_archs_give_different_cubins(env: pytest.MonkeyPatch) -> None:
    assert cache.compile_source(COPY, "sm_80") != cache.compile_source(COPY, "sm_90")


def test_syntax_error_carries_numbered_source_and_log(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(CompileError) as info:
        cache.compile_source(BROKEN, "sm_90")
    text = str(info.value)
    assert "nvf_broken" in text and "sm_90" in text
    assert "   3 |   y[0] = v +;" in text
    assert "error" in info.value.log and info.value.log in text
    assert info.value.source == BROKEN and info.value.arch == "sm_90"
    assert _count("nvrtc_compiles") == 0
    assert not env_cache_dir().exists() or _files(env_cache_dir()) == []  # failures not cached


def test_arch_too_new_for_nvrtc_says_so(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(CompileError, match=r"NVRTC \d+\.\d+ is too old for sm_990"):
        nvrtc.compile_to_cubin(COPY, "sm_990")


def test_bad_arch_names(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(CompileError, match="bad target arch"):
        nvrtc.compile_to_ptx(COPY, "sm_ninety")
    with pytest.raises(CompileError, match="needs a real arch"):
        nvrtc.compile_to_cubin(COPY, "compute_90")


def test_no_fast_math() -> None:
    assert not any("fast" in opt for opt in nvrtc.COMPILE_OPTIONS)


def test_ptx(env: pytest.MonkeyPatch) -> None:
    ptx = nvrtc.compile_to_ptx(COPY, "sm_80")
    assert ".target sm_80" in ptx and "nvf_copy" in ptx


def test_target_arch_without_gpu(env: pytest.MonkeyPatch) -> None:
    if torch.cuda.is_available():
        pytest.skip("asks the GPU instead")
    assert nvrtc.target_arch() == "sm_90"
    env.setenv("NVFUSE_ARCH", "sm_80")
    config.reload()
    assert nvrtc.target_arch() == "sm_80"
    assert nvrtc.target_arch(torch.device("cpu")) == "sm_80"
    assert cache.compile_source(COPY) == cache.compile_source(COPY, "sm_80")


# -- memory and disk caches ------------------------------------------------------------------


def test_memory_hit(env: pytest.MonkeyPatch) -> None:
    first = cache.compile_source(COPY, "sm_90")
    assert cache.compile_source(COPY, "sm_90") == first
    assert (_count("nvrtc_compiles"), _count("memory_hits"), _count("disk_hits")) == (1, 1, 0)


def test_disk_hit_after_clearing_memory(env: pytest.MonkeyPatch) -> None:
    first = cache.compile_source(COPY, "sm_90")
    assert _entry().is_file()
    cache.clear_memory_cache()
    assert cache.compile_source(COPY, "sm_90") == first
    assert (_count("nvrtc_compiles"), _count("disk_hits")) == (1, 1)
    cache.compile_source(COPY, "sm_90")  # and the disk hit refilled the memory cache
    assert _count("memory_hits") == 1


def test_layout_and_header(env: pytest.MonkeyPatch) -> None:
    cubin = cache.compile_source(COPY, "sm_90")
    key = cache.cache_key(COPY, "sm_90")
    path = _entry()
    assert path.parent.name == key[:2] and path.name == f"{key}.cubin"
    data = path.read_bytes()
    assert data.startswith(cache.MAGIC) and data.endswith(cubin)


def test_key_covers_every_input(env: pytest.MonkeyPatch) -> None:
    base = cache.cache_key(COPY, "sm_90")
    assert cache.cache_key(COPY, "sm_90") == base
    assert cache.cache_key(COPY, "sm_80") != base
    assert cache.cache_key(COPY + " ", "sm_90") != base
    changes = [
        (version, "__version__", "999.0"),
        (nvrtc, "COMPILE_OPTIONS", ("-std=c++20",)),
        (nvrtc, "nvrtc_version", lambda: "99.9"),
    ]
    for target, attr, value in changes:
        with pytest.MonkeyPatch.context() as m:
            m.setattr(target, attr, value)
            assert cache.cache_key(COPY, "sm_90") != base, attr


def test_cache_off_touches_no_disk(env: pytest.MonkeyPatch) -> None:
    env.setenv("NVFUSE_CACHE", "0")
    config.reload()
    cache.compile_source(COPY, "sm_90")
    cache.clear_memory_cache()
    cache.compile_source(COPY, "sm_90")
    assert not env_cache_dir().exists()
    assert (_count("nvrtc_compiles"), _count("disk_hits")) == (2, 0)


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _flip_payload(data: bytes) -> bytes:
    i = len(data) - 100
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def _flip_header(data: bytes) -> bytes:
    return data[:20] + bytes([data[20] ^ 0x80]) + data[21:]


CORRUPTIONS = {
    "truncated": _truncate,
    "short header": lambda data: data[:10],
    "empty": lambda data: b"",
    "payload byte flipped": _flip_payload,
    "header byte flipped": _flip_header,
    "garbage": lambda data: os.urandom(len(data)),
    "bare cubin": lambda data: data[cache._HEADER.size :],
    "trailing bytes": lambda data: data + b"\0",
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_corrupt_entry_is_detected_warned_and_rebuilt(env: pytest.MonkeyPatch, how: str) -> None:
    good = cache.compile_source(COPY, "sm_90")
    path = _entry()
    path.write_bytes(CORRUPTIONS[how](path.read_bytes()))
    cache.clear_memory_cache()
    with pytest.warns(RuntimeWarning, match="bad cubin cache entry"):
        assert cache.compile_source(COPY, "sm_90") == good
    assert _count("nvrtc_compiles") == 2
    # Rebuilt on disk: the next process-level miss is a clean disk hit, with no new warning.
    cache.clear_memory_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.compile_source(COPY, "sm_90") == good
    assert _count("disk_hits") == 1


def test_entry_of_another_key_is_foreign(env: pytest.MonkeyPatch) -> None:
    other = COPY.replace("nvf_copy", "nvf_copy2")
    cache.compile_source(other, "sm_90")
    _entry().parent.mkdir(parents=True, exist_ok=True)
    _entry().write_bytes(_entry(other).read_bytes())
    with pytest.warns(RuntimeWarning, match="different key"):
        assert b"nvf_copy2" not in cache.compile_source(COPY, "sm_90")


def test_corruption_is_reported_once(env: pytest.MonkeyPatch) -> None:
    cache.compile_source(COPY, "sm_90")
    path = _entry()
    path.write_bytes(b"junk")
    cache.clear_memory_cache()
    with pytest.warns(RuntimeWarning):
        cache.compile_source(COPY, "sm_90")
    path.write_bytes(b"junk again")
    cache._memory.clear()  # a miss again, but the entry was already reported
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache.compile_source(COPY, "sm_90")


def test_write_leaves_no_temp_files(env: pytest.MonkeyPatch) -> None:
    cache.compile_source(COPY, "sm_90")
    cache.compile_source(COPY, "sm_80")
    names = _files(env_cache_dir())
    assert len(names) == 2 and all(n.endswith(".cubin") and "/." not in n for n in names)


def test_crash_before_replace_never_publishes(env: pytest.MonkeyPatch) -> None:
    seen: list[bytes] = []

    def crash(src: str, dst: str) -> None:
        seen.append(Path(src).read_bytes())  # the temp file is complete at this point
        assert Path(src).parent == Path(dst).parent  # same dir: os.replace is a rename
        raise OSError(28, "No space left on device")

    env.setattr(os, "replace", crash)
    with pytest.warns(RuntimeWarning, match="cannot write the cubin disk cache"):
        cubin = cache.compile_source(COPY, "sm_90")
    assert cubin[:4] == ELF and seen and seen[0].endswith(cubin)
    assert not _entry().exists()
    assert _files(env_cache_dir()) == []  # the temp file was removed too


class Crash(BaseException):
    """Stands in for the process dying mid-write (not an OSError, so nothing absorbs it)."""


def test_interrupted_write_keeps_old_entry_whole(env: pytest.MonkeyPatch) -> None:
    cache.compile_source(COPY, "sm_90")
    path = _entry()
    stale = b"NVFCUBIN stale"  # a bad entry that a rebuild will try to overwrite
    path.write_bytes(stale)
    cache.clear_memory_cache()

    def crash(src: str, dst: str) -> None:
        raise Crash

    env.setattr(os, "replace", crash)
    with pytest.warns(RuntimeWarning, match="bad cubin cache entry"), pytest.raises(Crash):
        cache.compile_source(COPY, "sm_90")
    assert path.read_bytes() == stale  # never a half-written file under the final name
    assert _files(env_cache_dir()) == [str(path.relative_to(env_cache_dir()))]


def test_concurrent_writers(env: pytest.MonkeyPatch) -> None:
    cubin = cache.compile_source(COPY, "sm_90")
    key = cache.cache_key(COPY, "sm_90")
    path = str(_entry())
    cache_dir = config.get().cache_dir
    threads = [
        threading.Thread(target=cache._write_entry, args=(cache_dir, path, key, cubin))
        for _ in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cache.clear_memory_cache()
    assert cache.compile_source(COPY, "sm_90") == cubin and _count("disk_hits") == 1
    assert len(_files(env_cache_dir())) == 1


def test_unwritable_cache_dir_degrades_to_memory(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache directory should be")
    env.setenv("NVFUSE_CACHE_DIR", str(blocker / "cache"))
    config.reload()
    with pytest.warns(RuntimeWarning, match="caching compiled kernels in memory only"):
        cubin = cache.compile_source(COPY, "sm_90")
    assert cubin[:4] == ELF
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once, then silently memory-only
        assert cache.compile_source(COPY, "sm_90") == cubin
        cache.compile_source(COPY, "sm_80")
    assert _count("memory_hits") == 1


# -- dumps -----------------------------------------------------------------------------------


def test_dump_to_stderr(env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    env.setenv("NVFUSE_DUMP", "cuda,launch")
    config.reload()
    assert enabled("cuda") and not enabled("ptx")
    assert dump("cuda", "nvf_k", "int x;")
    assert not dump("ptx", "nvf_k", "never shown")
    err = capsys.readouterr().err
    assert "nvfuse cuda: nvf_k" in err and "int x;\n" in err and "never shown" not in err


def test_dump_to_dir(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    out = tmp_path / "dumps" / "nested"
    env.setenv("NVFUSE_DUMP", "all")
    env.setenv("NVFUSE_DUMP_DIR", str(out))
    config.reload()
    assert dump("kernel_ir", "nvf_k", "kernel text")
    assert (out / "nvf_k.kernel_ir.txt").read_text() == "kernel text\n"
    dump("graph", "../../escape", "x")  # a name never leaves the dump directory
    assert (out / "_.._escape.graph.txt").is_file()


def test_dump_unknown_stage(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown stage"):
        dump("cubin", "k", "x")


def test_ptx_dump_from_compile_source(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("NVFUSE_DUMP", "ptx")
    env.setenv("NVFUSE_DUMP_DIR", str(tmp_path / "d"))
    config.reload()
    cache.compile_source(COPY, "sm_90")
    ptx = (tmp_path / "d" / "nvf_copy.ptx.txt").read_text()
    assert ".target sm_90" in ptx and ".entry nvf_copy" in ptx


# -- launch arguments (no GPU needed) and lazy imports ---------------------------------------


def test_launch_argument_convention() -> None:
    args = marshal_args([(7, DType.INT32), (1 << 40, DType.INT64), np.float32(0.5)], 0)
    assert [type(a) for a in args] == [np.int32, np.int64, np.float32]
    assert [int(a) for a in args[:2]] == [7, 1 << 40]


@pytest.mark.parametrize(
    ("arg", "match"),
    [
        (3, "no C type"),
        (2.5, "no C type"),
        ((2.5, DType.INT64), "does not fit"),
        ((1 << 40, DType.INT32), "does not fit"),
        ((1.0, DType.BFLOAT16), "use float32"),
        ((1, "int32"), "pair"),
        (torch.zeros(2), "tensor on cpu"),
    ],
)
def test_launch_arguments_refused(arg: object, match: str) -> None:
    with pytest.raises(LaunchError, match=match):
        marshal_args([arg], 0, "nvf_k")


class _FakeDriverError(RuntimeError):
    pass


class _FakeFunction:
    """Records what LoadedKernel hands to CuPy's Function.__call__."""

    ptr = 0x1234

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail = False

    def __call__(
        self, grid: tuple[int], block: tuple[int], args: list[Any], shared_mem: int, stream: Any
    ) -> None:
        if self.fail:
            raise _FakeDriverError("CUDA_ERROR_INVALID_VALUE")
        self.calls.append((grid, block, args, shared_mem, stream))


def test_launch_plumbing_without_gpu() -> None:
    pytest.importorskip("cupy")
    function = _FakeFunction()
    kernel = LoadedKernel(function, "nvf_k", 0)
    attrs: list[tuple[int, int, int]] = []
    kernel._get_device = lambda: 0  # type: ignore[method-assign]
    kernel._driver = SimpleNamespace(
        CUDADriverError=_FakeDriverError,
        CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES=8,
        funcSetAttribute=lambda f, a, v: attrs.append((f, a, v)),
    )
    kernel.launch(4, 128, [(5, DType.INT64)], 0, 0xABC)
    kernel.launch(4, 128, [np.int32(6)], 64 * 1024, 0xABC)
    kernel.launch(2, 64, [], 64 * 1024, 0)
    (g, b, args, smem, stream), second, third = function.calls
    assert (g, b, args, smem) == ((4,), (128,), [np.int64(5)], 0)
    assert type(args[0]) is np.int64
    assert stream.ptr == 0xABC and second[4] is stream  # one CuPy wrapper per stream handle
    assert third[4].ptr == 0  # torch's legacy default stream
    assert attrs == [(0x1234, 8, 64 * 1024)]  # opted in above 48 KiB once, not per launch
    function.fail = True
    with pytest.raises(LaunchError, match=r"nvf_k on cuda:0 failed \(grid=4, block=128"):
        kernel.launch(4, 128, [], 0, 0xABC)
    with pytest.raises(LaunchError, match="invalid launch shape"):
        kernel.launch(1, 2048, [], 0, 0xABC)


def test_runtime_imports_without_cupy() -> None:
    code = (
        "import sys\n"
        "import nvfuse.runtime.cache, nvfuse.runtime.launch, nvfuse.runtime.nvrtc\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('cupy', 'cupy_backends')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
