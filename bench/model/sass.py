"""What ptxas made of a kernel: CUDA source -> registers, spills, shared memory (ptxas -v through
NVRTC) and the widths of its global loads and stores (the SASS, disassembled by nvdisasm).

`compile_report(source, arch)` compiles with nvfuse's own NVRTC options plus
`--ptxas-options=-v` (the same code as nvfuse's cubin; -v only adds the report) and returns
`Resources` and the cubin.  `disassemble(cubin)` runs nvdisasm (`find_nvdisasm`: PATH,
$CUDA_HOME/bin, /usr/local/cuda*/bin, then the `nvidia-cuda-nvdisasm` wheel's
site-packages/nvidia/*/bin); `global_widths(sass)` reads the LDG/STG (and generic LD/ST)
instructions: `LDG.E.128` is 128 bits, `LDG.E.64` 64, `LDG.E` 32, `.U16`/`.S16` 16,
`.U8`/`.S8` 8.  A generic access through a 32-bit address (`[R2.U32+UR4]`: the shared window,
a cluster kernel's distributed-shared-memory read, `ld.shared::cluster`) is not global.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass

from nvfuse.runtime.nvrtc import COMPILE_OPTIONS


@dataclass(frozen=True)
class Resources:
    regs: int
    spill_stores: int  # bytes
    spill_loads: int   # bytes
    smem: int          # static shared memory, bytes
    stack: int         # stack frame, bytes

    @property
    def spills(self) -> int:
        return self.spill_stores + self.spill_loads


def parse_ptxas_log(log: str) -> Resources:
    """Resources from ptxas -v's info lines (one kernel)."""
    regs = re.search(r"Used (\d+) registers", log)
    spill = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    stack = re.search(r"(\d+) bytes stack frame", log)
    smem = re.search(r"(\d+) bytes smem", log)
    if regs is None or spill is None:
        raise ValueError(f"no ptxas -v resource lines in:\n{log}")
    return Resources(int(regs.group(1)), int(spill.group(1)), int(spill.group(2)),
                     int(smem.group(1)) if smem else 0, int(stack.group(1)) if stack else 0)


def compile_report(source: str, arch: str = "sm_90") -> tuple[Resources, bytes]:
    """(ptxas resources, cubin) of `source` compiled by NVRTC for `arch`."""
    from cupy_backends.cuda.libs import nvrtc  # type: ignore[import-untyped]

    prog = nvrtc.createProgram(source, "kernel.cu", (), ())
    try:
        nvrtc.compileProgram(prog, (f"--gpu-architecture={arch}", *COMPILE_OPTIONS,
                                    "--ptxas-options=-v"))
        log = str(nvrtc.getProgramLog(prog))
        cubin = whole_elf(bytes(nvrtc.getCUBIN(prog)))
    finally:
        nvrtc.destroyProgram(prog)
    return parse_ptxas_log(log), cubin


def whole_elf(image: bytes) -> bytes:
    """The cubin padded to the size its ELF headers describe: CuPy's getCUBIN can drop the
    image's last byte (a NUL), which nvdisasm then rejects as an invalid ELF file."""
    if image[:4] != b"\x7fELF" or len(image) < 64:
        return image
    phoff, shoff = struct.unpack_from("<QQ", image, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", image, 0x36)
    size = max(phoff + phentsize * phnum, shoff + shentsize * shnum)
    return image + b"\0" * max(0, size - len(image))


def find_nvdisasm() -> str | None:
    """A path to nvdisasm, or None (module docstring)."""
    found = shutil.which("nvdisasm")
    if found:
        return found
    roots = [os.environ.get("CUDA_HOME", ""), os.environ.get("CUDA_PATH", ""),
             *sorted(glob.glob("/usr/local/cuda*"), reverse=True)]
    roots += [os.path.join(p, "nvidia", sub) for p in sys.path
              for sub in ("cu13", "cu12", "cuda_nvdisasm")]
    for root in roots:
        path = os.path.join(root, "bin", "nvdisasm")
        if root and os.access(path, os.X_OK):
            return path
    return None


def disassemble(cubin: bytes, nvdisasm: str) -> str:
    """The SASS text of `cubin`."""
    with tempfile.TemporaryDirectory(prefix="nvfuse-model-") as tmp:
        path = os.path.join(tmp, "k.cubin")
        with open(path, "wb") as f:
            f.write(cubin)
        run = subprocess.run([nvdisasm, path], capture_output=True, text=True, timeout=120)
    if run.returncode:
        raise RuntimeError(f"nvdisasm failed: {run.stderr.strip()}")
    return run.stdout


# An instruction: optional predicate, the opcode with its dot-modifiers.
_INSN = re.compile(r"^\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)((?:\.[A-Z0-9_]+)*)")
_SIZE = {"128": 128, "64": 64, "U16": 16, "S16": 16, "U8": 8, "S8": 8}
_LOADS, _STORES = {"LDG", "LD"}, {"STG", "ST"}
_SHARED_WINDOW = re.compile(r"\[[^\]]*\.U32")  # a 32-bit address: shared / distributed shared


def global_accesses(sass: str) -> tuple[list[int], list[int]]:
    """The width in bits of every global (or generic) load and store instruction, in order."""
    loads: list[int] = []
    stores: list[int] = []
    for line in sass.splitlines():
        m = _INSN.match(line)
        if m is None or m.group(1) not in _LOADS | _STORES or _SHARED_WINDOW.search(line):
            continue
        mods = m.group(2).split(".")[1:]
        bits = next((_SIZE[x] for x in mods if x in _SIZE), 32)
        (loads if m.group(1) in _LOADS else stores).append(bits)
    return loads, stores


def global_widths(sass: str) -> tuple[list[int], list[int]]:
    """The distinct widths (bits, widest first) of the global loads and of the stores."""
    loads, stores = global_accesses(sass)
    return sorted(set(loads), reverse=True), sorted(set(stores), reverse=True)
