"""Loading cubins and launching their kernels on torch's streams, through CuPy.

Input: cubin bytes, the `extern "C"` kernel name and a CUDA device index.  Output: a
`LoadedKernel` whose `launch(grid, block, args, shared_mem, stream)` enqueues one 1-D launch on
the raw CUDA stream handle `stream` (see `current_stream_handle`), asynchronously like any torch
op on that stream.  `load_kernel` caches modules per (cubin sha256, name, device).

Argument convention, one entry per kernel parameter, in order:
  * torch.Tensor on the kernel's CUDA device -> its data_ptr(), passed as a 64-bit pointer;
  * `(value, DType)` pair                    -> `value` passed by value as that dtype's C type
                                               (e.g. `(n, DType.INT64)` for a `long long`);
  * numpy scalar (np.int32(n), np.float32(x)) -> passed by value with exactly its width.
A bare Python int/float/bool is refused (its C width would be a guess), as are tensors on another
device and bfloat16 scalars (pass those as float32, the compute dtype).  Errors -> LaunchError.

CuPy is imported on first use only.  Kernels run in the device's primary context, the one torch
uses, so the pointers torch hands out are valid inside them.
"""

from __future__ import annotations

import hashlib
import operator
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from nvfuse.dtypes import DType
from nvfuse.errors import LaunchError

# Highest dynamic shared memory a kernel may use without opting in per function (CUDA's rule).
_DEFAULT_MAX_DYNAMIC_SMEM = 48 * 1024
_MAX_GRID_X = 2**31 - 1
_MAX_BLOCK = 1024
# Scalars of these dtypes have no numpy type holding their *value* (bfloat16 is stored as bits).
_SCALAR_TYPES: dict[DType, type] = {d: d.np_storage for d in DType if d is not DType.BFLOAT16}
# Streams seen per kernel are few (torch pools them); bound the memo anyway so a program creating
# streams in a loop cannot grow it forever.
_MAX_STREAMS = 256

_lock = threading.Lock()
_loaded: dict[tuple[bytes, str, int], LoadedKernel] = {}


class _StreamHandle:
    """A raw cudaStream_t speaking the CUDA stream protocol, for cupy.cuda.Stream.from_external."""

    __slots__ = ("handle",)

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


class LoadedKernel:
    """One kernel function of a loaded cubin module on one device."""

    def __init__(self, function: Any, name: str, device_index: int) -> None:
        import cupy  # type: ignore[import-untyped]
        from cupy_backends.cuda.api import driver, runtime  # type: ignore[import-untyped]

        self.name = name
        self.device_index = device_index
        self._function = function  # holds the cupy Module, keeping the cubin loaded
        self._cupy = cupy
        self._driver = driver
        self._get_device = runtime.getDevice
        self._streams: dict[int, Any] = {}
        self._smem_limit = _DEFAULT_MAX_DYNAMIC_SMEM

    def launch(
        self, grid: int, block: int, args: Sequence[Any], shared_mem: int, stream: int
    ) -> None:
        """Enqueue kernel<<<grid, block, shared_mem, stream>>>(*args); see the module docstring
        for what `args` may hold.  Raises LaunchError when the launch is refused."""
        check_launch_shape(self.name, grid, block)
        kargs = marshal_args(args, self.device_index, self.name)
        cupy_stream = self._streams.get(stream)
        if cupy_stream is None:
            cupy_stream = self._wrap_stream(stream)
        # The function belongs to this device's context; enter it only when torch's current
        # device is another one (the usual case pays one cudaGetDevice).
        if self._get_device() == self.device_index:
            self._launch(grid, block, kargs, shared_mem, cupy_stream)
        else:
            with self._cupy.cuda.Device(self.device_index):
                self._launch(grid, block, kargs, shared_mem, cupy_stream)

    @property
    def function_pointer(self) -> int:
        """The CUfunction handle, for launching through the driver (nvfuse/runtime/packed.py)."""
        return int(self._function.ptr)

    def launch_args(self, grid: int, block: int, params: int, stream: int,
                    shared_mem: int = 0) -> None:
        """cuLaunchKernel with a prebuilt `void* kernelParams[]` at address `params` and
        `shared_mem` bytes of dynamic shared memory, in this kernel's device context (for a
        caller whose current device is another one)."""
        with self._cupy.cuda.Device(self.device_index):
            try:
                if shared_mem > self._smem_limit:
                    self.raise_smem_limit(shared_mem)
                self._driver.launchKernel(self.function_pointer, grid, 1, 1, block, 1, 1,
                                          shared_mem, stream, params, 0)
            except self._driver.CUDADriverError as e:
                raise LaunchError(f"launching {self.name} on cuda:{self.device_index} failed "
                                  f"(grid={grid}, block={block}): {e}") from e

    def _launch(self, grid: int, block: int, kargs: list[Any], smem: int, stream: Any) -> None:
        try:
            if smem > self._smem_limit:
                self.raise_smem_limit(smem)
            self._function((grid,), (block,), kargs, shared_mem=smem, stream=stream)
        except self._driver.CUDADriverError as e:
            raise LaunchError(
                f"launching {self.name} on cuda:{self.device_index} failed "
                f"(grid={grid}, block={block}, shared_mem={smem}, stream={stream.ptr:#x}): {e}"
            ) from e

    @property
    def smem_limit(self) -> int:
        """The dynamic shared memory this function may use without raising its limit."""
        return self._smem_limit

    def raise_smem_limit(self, smem: int) -> None:
        # Above 48 KiB a kernel must opt in to its dynamic shared memory size, once per function.
        self._driver.funcSetAttribute(
            self._function.ptr, self._driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem
        )
        self._smem_limit = smem

    def _wrap_stream(self, handle: int) -> Any:
        # CuPy 14 deprecates ExternalStream in favour of Stream.from_external (CUDA stream
        # protocol); older CuPy only has the former.  Either way CuPy neither owns nor destroys
        # the stream; torch does.
        stream_cls = self._cupy.cuda.Stream
        if hasattr(stream_cls, "from_external"):
            wrapped = stream_cls.from_external(_StreamHandle(handle))
        else:
            wrapped = self._cupy.cuda.ExternalStream(handle, self.device_index)
        if len(self._streams) >= _MAX_STREAMS:
            self._streams.clear()
        self._streams[handle] = wrapped
        return wrapped

    def __repr__(self) -> str:
        return f"LoadedKernel({self.name!r}, cuda:{self.device_index})"


def check_launch_shape(name: str, grid: int, block: int) -> None:
    """Refuse a 1-D launch shape CUDA would reject or CuPy would silently change (it clamps a
    0 grid to 1 and truncates a huge one)."""
    if not (0 < grid <= _MAX_GRID_X and 0 < block <= _MAX_BLOCK):
        raise LaunchError(f"{name}: invalid launch shape grid={grid}, block={block}")


def load_kernel(cubin: bytes, name: str, device_index: int) -> LoadedKernel:
    """Load `cubin` on device `device_index` and fetch kernel `name` (cached)."""
    key = (hashlib.sha256(cubin).digest(), name, device_index)
    found = _loaded.get(key)
    if found is not None:
        return found
    import cupy
    from cupy_backends.cuda.api import driver

    try:
        with cupy.cuda.Device(device_index):
            module = cupy.cuda.Module()
            module.load(cubin)
            function = module.get_function(name)
            kernel = LoadedKernel(function, name, device_index)
    except driver.CUDADriverError as e:
        raise LaunchError(
            f"loading kernel {name} on cuda:{device_index} failed: {e} (a cubin built for "
            "another arch, or by an NVRTC newer than the driver, cannot load)"
        ) from e
    with _lock:
        return _loaded.setdefault(key, kernel)


def marshal_args(args: Sequence[Any], device_index: int, name: str = "kernel") -> list[Any]:
    """`args` (module docstring convention) as the values CuPy's launcher passes by value."""
    out: list[Any] = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor):
            # get_device() is -1 for CPU tensors, so this one test also refuses those.
            if a.get_device() != device_index:
                raise LaunchError(
                    f"{name} argument {i}: tensor on {a.device}, kernel runs on cuda:{device_index}"
                )
            out.append(np.uint64(a.data_ptr()))
        elif isinstance(a, tuple):
            out.append(_typed_scalar(a, i, name))
        elif isinstance(a, np.generic):
            out.append(a)
        else:
            raise LaunchError(
                f"{name} argument {i}: {type(a).__name__} {a!r} has no C type; pass a tensor, "
                "a (value, DType) pair or a numpy scalar"
            )
    return out


def _typed_scalar(pair: tuple[Any, ...], i: int, name: str) -> np.generic:
    if len(pair) != 2 or not isinstance(pair[1], DType):
        raise LaunchError(f"{name} argument {i}: expected a (value, DType) pair, got {pair!r}")
    value, dtype = pair
    np_type = _SCALAR_TYPES.get(dtype)
    if np_type is None:
        raise LaunchError(f"{name} argument {i}: {dtype} scalars cannot be passed; use float32")
    try:
        # operator.index refuses 2.5 for an integer parameter rather than truncating it.
        return np_type(value if dtype.is_float else operator.index(value))  # type: ignore
    except (OverflowError, TypeError, ValueError) as e:
        raise LaunchError(f"{name} argument {i}: {value!r} does not fit {dtype}: {e}") from e


def current_stream_handle(device: torch.device | int) -> int:
    """The raw cudaStream_t of torch's current stream on `device` (0 is the legacy default)."""
    return int(torch.cuda.current_stream(device).cuda_stream)
