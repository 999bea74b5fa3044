"""Read the device helper files (codegen_templates/*.cuh) that generated kernels inline.

Input: a file name such as "nvf_math.cuh".  Output: the file's text, cached for the life of
the process.  The files live in the package `nvfuse._templates` in an installed nvfuse (setup.py
maps codegen_templates/ there) and in `<repo root>/codegen_templates` in a source checkout.
"""

from __future__ import annotations

import functools
import importlib.resources
from pathlib import Path

_PACKAGE = "nvfuse._templates"
_SOURCE_DIR = Path(__file__).resolve().parents[2] / "codegen_templates"


def _installed_text(name: str) -> str | None:
    """The file's text from the installed package, or None when there is no such package."""
    try:
        root = importlib.resources.files(_PACKAGE)
    except ModuleNotFoundError:
        return None
    resource = root.joinpath(name)
    if not resource.is_file():
        return None
    return resource.read_text(encoding="utf-8")


@functools.cache
def read_template(name: str) -> str:
    """The text of helper file `name`; raises FileNotFoundError naming both places looked in."""
    if "/" in name or "\\" in name or not name.endswith(".cuh"):
        raise ValueError(f"nvfuse: template name must be a bare *.cuh file name, got {name!r}")
    text = _installed_text(name)
    if text is not None:
        return text
    path = _SOURCE_DIR / name
    if not path.is_file():
        raise FileNotFoundError(f"nvfuse: template {name!r} not in {_PACKAGE} nor {_SOURCE_DIR}")
    return path.read_text(encoding="utf-8")
