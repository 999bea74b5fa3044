"""Which device a fusion group runs on, and its inputs made ready there.

Eager lets a 0-dim CPU tensor (a scalar such as `torch.tensor(2.5)` or a folded constant) meet
tensors on a CUDA device: it takes part in type promotion as a 0-dim tensor and is read as a
value.  A fusion group may therefore have such inputs beside CUDA ones (the partition lets
them in), and a group may have no tensor inputs at all (a constant filled into a shape).

`group_device(inputs, recorded)`: the device of the inputs that are not 0-dim CPU tensors;
where there are none, the device the traced graph recorded for the group's results
(`recorded_device`), else the CPU.  Inputs that are not 0-dim CPU tensors on two devices raise
`MixedDevices` (the group then runs eagerly, as any failure does).

`place_inputs(inputs, device)`: the inputs with every 0-dim CPU tensor copied to `device` (a
kernel cannot read host memory); unchanged, and cheap, where there is none to move.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import fx

from nvfuse.errors import NvfuseError

_CPU = torch.device("cpu")


class MixedDevices(NvfuseError):
    """A group's tensor inputs live on more than one device."""


def is_cpu_scalar(t: torch.Tensor) -> bool:
    """A 0-dim CPU tensor: legal beside tensors of any device, as in eager."""
    return t.dim() == 0 and t.device.type == "cpu"


def recorded_device(eager: fx.GraphModule) -> torch.device | None:
    """The device of the first tensor result the traced group records (meta["val"])."""
    for node in eager.graph.nodes:
        if node.op == "output":
            for result in node.all_input_nodes:
                val = result.meta.get("val")
                if isinstance(val, torch.Tensor):
                    return torch.device(val.device)
    return None


def group_device(inputs: Sequence[torch.Tensor], recorded: torch.device | None) -> torch.device:
    """The device the group's kernel runs on (see the module docstring)."""
    devices = {t.device for t in inputs if not is_cpu_scalar(t)}
    if len(devices) > 1:
        raise MixedDevices(f"inputs on different devices: {sorted(map(str, devices))}")
    if devices:
        return devices.pop()
    return recorded if recorded is not None else _CPU


def place_inputs(inputs: tuple[torch.Tensor, ...],
                 device: torch.device) -> tuple[torch.Tensor, ...]:
    """`inputs` with each 0-dim CPU tensor copied to `device` (see the module docstring)."""
    if device.type == "cpu" or all(t.device == device for t in inputs):
        return inputs
    return tuple(t.to(device) if is_cpu_scalar(t) else t for t in inputs)
