"""NVRTC through CuPy: CUDA C++ source text -> cubin (or PTX) bytes.  No GPU needed.

`compile_to_cubin(source, arch)` runs one raw NVRTC compile with `COMPILE_OPTIONS` plus
`--gpu-architecture=<arch>` and returns the cubin (an ELF image).  Where the loaded NVRTC knows
them it also passes `SPEED_OPTIONS` (`speed_options()`): options that only make NVRTC faster and
change no byte of the cubin of any source that compiles with them (`--minimal`, NVRTC >= 12.4,
leaves out the CUDA runtime's declarations, textures and device-side launch, which nvfuse's
kernels never use, saving ~5 ms of parsing per kernel).  They are not part of the cache key for
that reason.  A source that NVRTC refuses with them is compiled again without them, so a
`compile_source` caller using those features gets the same result and error log as before; an
NVRTC that rejects one as an invalid option stops being given them for the process.

It deliberately passes no fast-math option: fused kernels must round like eager PyTorch (IEEE
division and sqrt, denormals kept).  On failure it raises `CompileError` carrying the source,
the NVRTC log and the arch; an arch the installed NVRTC cannot target is reported as such,
naming the NVRTC version.

The cubin is read through NVRTC's own size query (`_cubin_image`): CuPy's getCUBIN strips a
"trailing NUL" as it does for PTX text, which cuts the last byte off every cubin.

CuPy is imported on first use only, so `import nvfuse` works where CuPy is not installed; calling
these functions there raises CompileError saying NVRTC is unavailable.  No caching happens here
(see runtime/cache.py).
"""

from __future__ import annotations

import ctypes
import functools
import re
import struct
import threading
from typing import TYPE_CHECKING, Any

from nvfuse import config
from nvfuse.errors import CompileError

if TYPE_CHECKING:
    import torch

# Everything besides the arch that changes the produced code.  Part of the disk-cache key, so a
# change here invalidates old entries.  No --use_fast_math (see the module docstring).
COMPILE_OPTIONS: tuple[str, ...] = ("-std=c++17",)

# (option, first NVRTC version that knows it): options that cut compile time and leave the cubin
# unchanged (tests/unit/test_nvrtc_options.py compiles the golden kernels with and without them
# and compares the bytes).
SPEED_OPTIONS: tuple[tuple[str, tuple[int, int]], ...] = (("--minimal", (12, 4)),)
_speed_refused = False  # set once an NVRTC rejects a speed option as invalid

_ARCH = re.compile(r"^(sm|compute)_(\d+)([a-z]?)$")


def _nvrtc() -> Any:  # the cupy_backends nvrtc module (untyped)
    try:
        from cupy_backends.cuda.libs import nvrtc  # type: ignore[import-untyped]
    except ImportError as e:  # CuPy missing or built without NVRTC
        raise CompileError(
            f"NVRTC is unavailable ({e}); install CuPy for your CUDA version "
            "(e.g. pip install cupy-cuda12x or cupy-cuda13x)"
        ) from e
    return nvrtc


@functools.cache
def nvrtc_version() -> str:
    """The installed NVRTC's version as "major.minor" (e.g. "12.8")."""
    major, minor = _nvrtc().getVersion()
    return f"{major}.{minor}"


def speed_options() -> tuple[str, ...]:
    """The `SPEED_OPTIONS` the loaded NVRTC accepts (by its version; none once one was refused
    or where the version cannot be read)."""
    if _speed_refused:
        return ()
    try:
        version = _version_tuple()
    except (CompileError, AttributeError, RuntimeError):
        return ()
    return tuple(opt for opt, since in SPEED_OPTIONS if version >= since)


@functools.cache
def _version_tuple() -> tuple[int, int]:
    major, minor = _nvrtc().getVersion()
    return int(major), int(minor)


@functools.cache
def supported_archs() -> tuple[int, ...]:
    """The compute capabilities (e.g. 80, 90) the installed NVRTC can target."""
    return tuple(int(a) for a in _nvrtc().getSupportedArchs())


def target_arch(device: torch.device | int | None = None) -> str:
    """`sm_XY` of `device` (or of the current CUDA device when None), else NVFUSE_ARCH when
    there is no CUDA device to ask (CPU device, CPU-only build, no GPU)."""
    import torch

    if not torch.cuda.is_available():
        return config.get().arch
    if device is None:
        return _device_arch(torch.cuda.current_device())
    device = torch.device(device)
    if device.type != "cuda":
        return config.get().arch
    return _device_arch(device.index if device.index is not None else torch.cuda.current_device())


@functools.cache
def _device_arch(index: int) -> str:
    # Capabilities never change during a process; asking the driver each time is wasted work.
    import torch

    major, minor = torch.cuda.get_device_capability(index)
    return f"sm_{major}{minor}"


_WARM_UP_SOURCE = 'extern "C" __global__ void nvf_warm_up(int* y) { y[threadIdx.x] = 0; }\n'
_warm_up_lock = threading.Lock()
_warm_up_started = False


def warm_up_async(arch: str) -> None:
    """Start NVRTC in a background thread, once per process: its first compile pays a start-up
    of several hundred milliseconds, which then overlaps tracing and planning.  Failures are
    left for the real compile to report."""
    global _warm_up_started
    with _warm_up_lock:
        if _warm_up_started:
            return
        _warm_up_started = True

    def warm() -> None:
        try:
            _compile(_WARM_UP_SOURCE, arch, "nvf_warm_up.cu", want_ptx=False)
        except Exception:  # the real compile reports NVRTC's problems
            pass
    threading.Thread(target=warm, name="nvfuse-nvrtc-warm-up", daemon=True).start()


def compile_to_cubin(source: str, arch: str, name: str = "kernel.cu") -> bytes:
    """Compile `source` for `arch` (an sm_XY name) and return the cubin bytes."""
    if not arch.startswith("sm_"):
        raise CompileError(
            f"cannot build a cubin for {arch!r} ({name}): a cubin needs a real arch like sm_90",
            source=source,
            arch=arch,
        )
    return _compile(source, arch, name, want_ptx=False)


def compile_to_ptx(source: str, arch: str, name: str = "kernel.cu") -> str:
    """Compile `source` for `arch` (sm_XY or compute_XY) and return the PTX text (for dumps)."""
    ptx = _compile(source, arch, name, want_ptx=True)
    return ptx.rstrip(b"\0").decode("utf-8", errors="replace")


def _compile(source: str, arch: str, name: str, want_ptx: bool) -> bytes:
    global _speed_refused
    nvrtc = _nvrtc()
    _check_arch(source, arch, name)
    options = (f"--gpu-architecture={arch}", *COMPILE_OPTIONS)
    fast = speed_options()
    if fast:
        try:
            return _run(nvrtc, source, (*options, *fast), name, want_ptx)
        except _Failed as failed:
            if failed.status == _INVALID_OPTION:
                _speed_refused = True  # this NVRTC does not know one of them: never again
            # else the source may use what --minimal leaves out: the full compile decides
    try:
        return _run(nvrtc, source, options, name, want_ptx)
    except _Failed as failed:
        raise CompileError(
            f"NVRTC {nvrtc_version()} failed to compile {name} for {arch}: {failed.error}",
            source=source,
            log=failed.log,
            arch=arch,
        ) from None


_INVALID_OPTION = 5  # NVRTC_ERROR_INVALID_OPTION


class _Failed(Exception):
    """NVRTC refused a program: its error, status code and log."""

    def __init__(self, error: Exception, log: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.status = getattr(error, "status", None)
        self.log = log


def _run(nvrtc: Any, source: str, options: tuple[str, ...], name: str, want_ptx: bool) -> bytes:
    """One NVRTC program: the PTX or the cubin; `_Failed` when NVRTC refuses it."""
    prog = nvrtc.createProgram(source, name, (), ())
    try:
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as e:
            raise _Failed(e, _log(nvrtc, prog)) from None
        return bytes(nvrtc.getPTX(prog)) if want_ptx else _cubin_image(nvrtc, prog)
    finally:
        nvrtc.destroyProgram(prog)


def _cubin_image(nvrtc: Any, prog: int) -> bytes:
    """The whole cubin of compiled program `prog`: nvrtcGetCUBINSize bytes, read through the
    NVRTC library CuPy loaded (a program handle belongs to the library that made it).  Where
    that library cannot be reached, CuPy's image with the byte it drops put back: the last byte
    of the section header table that ends every NVRTC cubin, the top byte of a size field."""
    lib = _loaded_nvrtc()
    if lib is not None:
        size = ctypes.c_size_t(0)
        if lib.nvrtcGetCUBINSize(ctypes.c_void_p(prog), ctypes.byref(size)) == 0:
            image = ctypes.create_string_buffer(size.value)
            if lib.nvrtcGetCUBIN(ctypes.c_void_p(prog), image) == 0:
                return image.raw
    data = bytes(nvrtc.getCUBIN(prog))
    if elf_end(data) == len(data) + 1:
        return data + b"\0"
    return data


@functools.cache
def _loaded_nvrtc() -> Any:
    """ctypes handle on the libnvrtc this process already mapped (CuPy's), or None."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libnvrtc.so" in line}
    except OSError:
        return None
    for path in sorted(paths):
        if "builtins" in path or not path.startswith("/"):
            continue
        try:
            lib = ctypes.CDLL(path)
            for fn in (lib.nvrtcGetCUBINSize, lib.nvrtcGetCUBIN):
                fn.restype = ctypes.c_int
            lib.nvrtcGetCUBINSize.argtypes = (ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t))
            lib.nvrtcGetCUBIN.argtypes = (ctypes.c_void_p, ctypes.c_char_p)
            return lib
        except (OSError, AttributeError):
            continue
    return None


def elf_end(data: bytes) -> int:
    """Where a 64-bit little-endian ELF image ends by its own headers: the furthest of its
    program header table, section header table and section contents (0 if `data` is not one)."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return 0
    phoff, shoff = struct.unpack_from("<QQ", data, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", data, 0x36)
    end = max(64, phoff + phentsize * phnum, shoff + shentsize * shnum)
    for i in range(shnum):
        at = shoff + i * shentsize
        if at + 64 > len(data):
            break
        sh_type, = struct.unpack_from("<I", data, at + 4)
        offset, size = struct.unpack_from("<QQ", data, at + 24)
        if sh_type != 8:  # SHT_NOBITS occupies no bytes in the file
            end = max(end, offset + size)
    return end


def _log(nvrtc: Any, prog: int) -> str:
    try:
        return str(nvrtc.getProgramLog(prog))
    except nvrtc.NVRTCError as e:  # a log we cannot read must not hide the compile error
        return f"<NVRTC log unavailable: {e}>"


def _check_arch(source: str, arch: str, name: str) -> None:
    """Raise a clear CompileError when NVRTC cannot target `arch` (its own message is only
    'invalid value for --gpu-architecture')."""
    m = _ARCH.match(arch)
    if m is None:
        raise CompileError(
            f"bad target arch {arch!r} for {name}: expected sm_XY or compute_XY",
            source=source,
            arch=arch,
        )
    try:
        archs = supported_archs()
    except (AttributeError, RuntimeError):  # old NVRTC/CuPy lacking it: let NVRTC decide
        return
    cc = int(m.group(2))
    if not archs or cc in archs:
        return
    listed = ", ".join(f"sm_{a}" for a in archs)
    if cc > max(archs):
        why = f"the installed NVRTC {nvrtc_version()} is too old for {arch}"
        hint = "; upgrade the CUDA NVRTC package (and CuPy) to a release that knows this GPU"
    else:
        why = f"the installed NVRTC {nvrtc_version()} no longer supports {arch}"
        hint = "; use an older CUDA toolkit for this GPU"
    raise CompileError(
        f"cannot compile {name}: {why} (it supports {listed}){hint}", source=source, arch=arch
    )
