"""nvfuse.runtime.launch on a real GPU: load a cubin and launch it on torch's streams.

Outputs are poisoned with NaN before each launch and inputs are random, so a kernel that never
ran, or ran on the wrong stream before its input existed, cannot pass.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch

from nvfuse import config
from nvfuse.dtypes import DType
from nvfuse.errors import LaunchError
from nvfuse.runtime import cache, nvrtc
from nvfuse.runtime.launch import LoadedKernel, current_stream_handle, load_kernel

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

COPY = """\
extern "C" __global__ void nvf_copy(const float* __restrict__ x, float* __restrict__ y,
                                    long long n) {
  long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = x[i];
}
"""

# Scale by an int32 and a float, staged through dynamic shared memory (sized by the launch).
SCALE = """\
extern "C" __global__ void nvf_scale(const float* __restrict__ x, float* __restrict__ y,
                                     int n, float k) {
  extern __shared__ float tile[];
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  tile[threadIdx.x] = i < n ? x[i] : 0.0f;
  __syncthreads();
  if (i < n) y[i] = tile[threadIdx.x] * k;
}
"""

BLOCK = 256


@pytest.fixture(autouse=True)
def _fresh(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    monkeypatch.setenv("NVFUSE_CACHE_DIR", str(tmp_path_factory.mktemp("cubins")))
    config.reload()
    cache.clear_memory_cache()
    yield
    monkeypatch.undo()
    config.reload()


def _kernel(src: str, name: str) -> tuple[LoadedKernel, torch.device]:
    device = torch.device("cuda", torch.cuda.current_device())
    cubin = cache.compile_source(src, nvrtc.target_arch(device))
    return load_kernel(cubin, name, device.index), device


def _inputs(n: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.rand(n, device=device) + 0.5
    y = torch.full((n,), float("nan"), device=device)
    return x, y


@pytest.mark.parametrize("n", [1, 1000, (1 << 20) + 3])
def test_copy_on_current_stream(n: int) -> None:
    kernel, device = _kernel(COPY, "nvf_copy")
    x, y = _inputs(n, device)
    grid = (n + BLOCK - 1) // BLOCK
    kernel.launch(grid, BLOCK, [x, y, (n, DType.INT64)], 0, current_stream_handle(device))
    torch.testing.assert_close(y, x, rtol=0, atol=0)


def test_copy_on_non_default_stream() -> None:
    kernel, device = _kernel(COPY, "nvf_copy")
    n = 1 << 22
    side = torch.cuda.Stream(device)
    with torch.cuda.stream(side):
        # Produced on `side` and consumed right after on `side`: correct only if the kernel is
        # ordered on that stream, not on the legacy default stream.
        x, y = _inputs(n, device)
        handle = current_stream_handle(device)
        assert handle == side.cuda_stream != 0
        kernel.launch((n + BLOCK - 1) // BLOCK, BLOCK, [x, y, np.int64(n)], 0, handle)
        z = y * 2
    torch.cuda.current_stream(device).wait_stream(side)
    torch.testing.assert_close(z, x * 2, rtol=0, atol=0)


def test_scalars_and_dynamic_shared_memory() -> None:
    kernel, device = _kernel(SCALE, "nvf_scale")
    n = 5000
    x, y = _inputs(n, device)
    stream = current_stream_handle(device)
    for block in (128, 1024):
        y.fill_(float("nan"))
        grid = (n + block - 1) // block
        args = [x, y, (n, DType.INT32), (0.25, DType.FLOAT32)]
        kernel.launch(grid, block, args, block * 4, stream)
        torch.testing.assert_close(y, x * 0.25, rtol=0, atol=0)


def test_large_dynamic_shared_memory_opt_in() -> None:
    kernel, device = _kernel(SCALE, "nvf_scale")
    if torch.cuda.get_device_capability(device) < (8, 0):
        pytest.skip("needs more than 48 KiB of shared memory per block")
    n = 3000
    x, y = _inputs(n, device)
    smem = 64 * 1024  # above the 48 KiB default: the launch must opt the function in
    args = [x, y, np.int32(n), np.float32(3.0)]
    kernel.launch((n + BLOCK - 1) // BLOCK, BLOCK, args, smem, current_stream_handle(device))
    torch.testing.assert_close(y, x * 3.0, rtol=0, atol=0)


def test_load_is_cached() -> None:
    device = torch.device("cuda", torch.cuda.current_device())
    cubin = cache.compile_source(COPY, nvrtc.target_arch(device))
    assert load_kernel(cubin, "nvf_copy", device.index) is load_kernel(
        cubin, "nvf_copy", device.index
    )


def test_errors() -> None:
    kernel, device = _kernel(COPY, "nvf_copy")
    x, y = _inputs(10, device)
    stream = current_stream_handle(device)
    with pytest.raises(LaunchError, match="tensor on cpu"):
        kernel.launch(1, BLOCK, [x.cpu(), y, np.int64(10)], 0, stream)
    with pytest.raises(LaunchError, match="no C type"):
        kernel.launch(1, BLOCK, [x, y, 10], 0, stream)
    with pytest.raises(LaunchError, match="invalid launch shape"):
        kernel.launch(0, BLOCK, [x, y, np.int64(10)], 0, stream)
    with pytest.raises(LaunchError, match="failed"):
        kernel.launch(1, 1024, [x, y, np.int64(10)], 1 << 30, stream)  # 1 GiB of shared memory
    cubin = cache.compile_source(COPY, nvrtc.target_arch(device))
    with pytest.raises(LaunchError, match="nvf_missing"):
        load_kernel(cubin, "nvf_missing", device.index)
    torch.cuda.synchronize(device)  # the refused launches left the context healthy
