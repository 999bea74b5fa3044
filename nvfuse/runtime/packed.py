"""Launching a prepared stage through the CUDA driver with a prebuilt argument buffer.

Input: a stage (the executor's `GpuStage`: `.kernel`, a compiled kernel, and `.grid`), the call's
tensors (inputs, outputs, workspaces: the kernel's pointer parameters, in order) and its scalars:
the values of the kernel's scalar parameters in declared order, which the executor ordered from
the schedule's named scalars once per prepared call (`kir.bind_scalars`), so the hot path
passes a prebuilt tuple.  Effect: one `cuLaunchKernel` on torch's current
stream of the stage's device.

`cuLaunchKernel` reads its arguments from an array of pointers, one per kernel parameter, each
pointing at the argument's bytes.  `ArgBuffer` builds that array once per stage (and thread):
a 64-bit slot per tensor, patched with `data_ptr()` on each call, and one typed slot per scalar,
rewritten only when the call's scalars are another tuple than last time (a random kernel's fresh
seed).  So a launch costs one `data_ptr()` and one store per tensor plus the driver call: no
per-argument Python conversion (CuPy's launcher), no argument objects allocated per call.

The buffer is per thread (`threading.local`): two threads launching the same stage never patch
each other's pointers between patching and the driver copying them at launch.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

import torch

from nvfuse.dtypes import DType
from nvfuse.errors import LaunchError
from nvfuse.lower.kir import dynamic_shared, dynamic_shared_bytes

# The C type of each scalar parameter dtype (kernel scalars are sizes, strides, counts, seeds).
_CTYPES: dict[DType, type] = {
    DType.BOOL: ctypes.c_bool, DType.UINT8: ctypes.c_uint8, DType.INT8: ctypes.c_int8,
    DType.INT16: ctypes.c_int16, DType.INT32: ctypes.c_int32, DType.INT64: ctypes.c_int64,
    DType.FLOAT32: ctypes.c_float, DType.FLOAT64: ctypes.c_double,
}


class ArgBuffer:
    """The `void* kernelParams[]` array of one kernel: `n_tensors` pointer slots followed by one
    slot per scalar parameter of `scalar_dtypes`."""

    def __init__(self, n_tensors: int, scalar_dtypes: Sequence[DType], name: str) -> None:
        self.name = name
        self.pointers = (ctypes.c_uint64 * n_tensors)()
        try:
            self.scalars = [_CTYPES[d]() for d in scalar_dtypes]
        except KeyError as e:
            raise LaunchError(f"{name}: no C argument type for a {e.args[0]} scalar") from None
        slots = [ctypes.addressof(self.pointers) + 8 * i for i in range(n_tensors)]
        slots += [ctypes.addressof(s) for s in self.scalars]
        self.params = (ctypes.c_void_p * len(slots))(*slots)
        self.address = ctypes.addressof(self.params)
        self._written: tuple[int, ...] | None = None

    def fill(self, tensors: Sequence[torch.Tensor], scalars: tuple[int, ...]) -> None:
        """Patch the pointer slots with `tensors`' data pointers and, when `scalars` is another
        tuple than last time, the scalar slots with its values."""
        pointers = self.pointers
        for i, t in enumerate(tensors):
            pointers[i] = t.data_ptr()
        if scalars is not self._written:
            if len(scalars) != len(self.scalars):
                raise LaunchError(f"{self.name}: {len(scalars)} scalars for "
                                  f"{len(self.scalars)} scalar parameters")
            for slot, value in zip(self.scalars, scalars):
                slot.value = value
            self._written = scalars


class _Loaded(threading.local):
    """Per thread and stage: the argument buffer (the kernel function is shared)."""

    buffer: ArgBuffer | None = None


class PackedLaunch:
    """A stage's kernel function on one device plus the per-thread argument buffers."""

    def __init__(self, stage: Any, device_index: int, n_tensors: int) -> None:
        from cupy_backends.cuda.api import driver, runtime  # type: ignore[import-untyped]

        from nvfuse.runtime.launch import check_launch_shape, load_kernel

        kernel = stage.kernel
        if kernel.cubin is None:
            raise LaunchError(f"{kernel.name}: no cubin to launch")
        check_launch_shape(kernel.name, stage.grid, kernel.params.block)
        self.name = kernel.name
        self.device_index = device_index
        self.grid = stage.grid
        self.block = kernel.params.block
        self.n_tensors = n_tensors
        self.scalar_dtypes = tuple(p.dtype for p in kernel.kernel_ir.scalars)
        self._loaded = load_kernel(kernel.cubin, kernel.name, device_index)
        self._function = self._loaded.function_pointer
        self._launch = driver.launchKernel
        self._driver_error = driver.CUDADriverError
        self._get_device = runtime.getDevice
        self._local = _Loaded()
        # dynamic shared memory (kir.Shared.count): sized per launch from its scalars
        self._kir = kernel.kernel_ir
        self._dynamic = bool(dynamic_shared(self._kir))

    def buffer(self) -> ArgBuffer:
        buffer = self._local.buffer
        if buffer is None:
            buffer = self._local.buffer = ArgBuffer(self.n_tensors, self.scalar_dtypes, self.name)
        return buffer

    def __call__(self, tensors: Sequence[torch.Tensor], scalars: tuple[int, ...]) -> None:
        buffer = self.buffer()
        buffer.fill(tensors, scalars)
        stream = current_raw_stream(self.device_index)
        smem = dynamic_shared_bytes(self._kir, scalars) if self._dynamic else 0
        if self._get_device() != self.device_index:
            self._loaded.launch_args(self.grid, self.block, buffer.address, stream, smem)
            return  # another device is current: enter the kernel's context for this launch
        try:
            if smem > self._loaded.smem_limit:
                self._loaded.raise_smem_limit(smem)
            self._launch(self._function, self.grid, 1, 1, self.block, 1, 1, smem, stream,
                         buffer.address, 0)
        except self._driver_error as e:
            raise LaunchError(f"launching {self.name} on cuda:{self.device_index} failed "
                              f"(grid={self.grid}, block={self.block}): {e}") from e


def launch_packed(stage: Any, tensors: list[torch.Tensor], scalars: tuple[int, ...]) -> None:
    """Launch `stage` on the device of its first tensor (every tensor is on that device: the
    executor checks it once per prepared call)."""
    packed: PackedLaunch | None = stage._gpu_launch
    if packed is None or packed.n_tensors != len(tensors):
        device = tensors[0].device
        index = device.index if device.index is not None else torch.cuda.current_device()
        for i, t in enumerate(tensors):
            if t.get_device() != index:
                raise LaunchError(f"{stage.kernel.name} argument {i}: tensor on {t.device}, "
                                  f"kernel runs on cuda:{index}")
        packed = stage._gpu_launch = PackedLaunch(stage, index, len(tensors))
    packed(tensors, scalars)


def _raw_stream_getter() -> Any:
    getter = getattr(torch._C, "_cuda_getCurrentRawStream", None)
    if getter is not None:
        return getter
    return lambda index: torch.cuda.current_stream(index).cuda_stream


_raw_stream: Any = None


def current_raw_stream(device_index: int) -> int:
    """The raw cudaStream_t of torch's current stream on `device_index` (0: legacy default)."""
    global _raw_stream
    if _raw_stream is None:
        _raw_stream = _raw_stream_getter()
    return int(_raw_stream(device_index))
