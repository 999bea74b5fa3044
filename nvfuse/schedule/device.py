"""Device properties the schedules size blocks by: arch -> `DeviceProps` (cached per arch).

With a CUDA device torch reports them (the current device, when its arch is the one asked
for); without one, documented defaults per arch stand in, so a schedule (and the kernel text)
is the same on a machine with no GPU as on the GPU it targets:

    sm_90 (H100 SXM): 132 SMs, 65536 32-bit registers per SM, 228 KiB shared memory per SM
    sm_80 (A100):     108 SMs, 65536 registers per SM, 164 KiB shared memory per SM
    other archs:      the sm_90 numbers

Only facts that change a schedule belong here.  The row schedules use the registers per SM
(`persist_words`); the SM count and shared memory are for the schedules that size grids by
them (few rows split across blocks).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceProps:
    sm_count: int
    regs_per_sm: int
    smem_per_sm: int  # bytes

    @property
    def persist_words(self) -> int:
        """Registers per thread a persistent row may hold its cached values in: half of what
        a thread gets when 1024 threads share an SM (50% occupancy on an H100, enough to hide
        memory latency for a streaming kernel), the other half left for the index math and
        the phases' temporaries.  32 with 64K registers per SM."""
        return self.regs_per_sm // 1024 // 2


DEFAULTS = {
    "sm_90": DeviceProps(132, 65536, 228 * 1024),
    "sm_80": DeviceProps(108, 65536, 164 * 1024),
}


def arch_number(arch: str) -> int:
    """The compute capability of `arch` as a number: 90 for sm_90 or sm_90a, 0 for a name
    without one."""
    digits = "".join(ch for ch in arch.split("_", 1)[-1] if ch.isdigit())
    return int(digits) if digits else 0


@functools.cache
def device_props(arch: str) -> DeviceProps:
    """The properties of the device `arch` targets (see the module docstring)."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        if f"sm_{props.major}{props.minor}" == arch:
            return DeviceProps(
                props.multi_processor_count,
                int(getattr(props, "regs_per_multiprocessor", 65536)),
                int(getattr(props, "shared_memory_per_multiprocessor",
                            DEFAULTS.get(arch, DEFAULTS["sm_90"]).smem_per_sm)))
    return DEFAULTS.get(arch, DEFAULTS["sm_90"])
