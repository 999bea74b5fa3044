"""Exceptions nvfuse raises.  Each names the stage, and where it applies the op and shape."""

from __future__ import annotations


class NvfuseError(RuntimeError):
    """Base class of nvfuse's own errors."""


class CompileError(NvfuseError):
    """NVRTC rejected a kernel.  Carries the numbered source and the compiler log."""

    def __init__(self, message: str, source: str = "", log: str = "", arch: str = "") -> None:
        self.source = source
        self.log = log
        self.arch = arch
        numbered = "\n".join(f"{i:4d} | {line}" for i, line in enumerate(source.splitlines(), 1))
        super().__init__(
            f"{message}\n--- NVRTC log ({arch}) ---\n{log}\n--- source ---\n{numbered}")


class LoweringError(NvfuseError):
    """A fusion group could not be turned into a kernel (names the stage, op and shapes)."""


class LaunchError(NvfuseError):
    """A compiled kernel could not be loaded or launched."""
