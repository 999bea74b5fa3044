"""Read the device helper files (codegen_templates/*.cuh) that generated kernels inline.

Input: a file name such as "nvf_math.cuh".  Output: the file's text, cached for the life of
the process.  The files live in the package `nvfuse._templates` in an installed nvfuse (setup.py
maps codegen_templates/ there) and in `<repo root>/codegen_templates` in a source checkout.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import re
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


# -- inlining only the sections a kernel uses ---------------------------------------------------
#
# Every helper file is a preamble (its contract comment, #pragma once, macros) followed by
# sections, each opened by a line "// -- title ---".  Every helper name starts with nvf_ or NVF_,
# and C++ declares before use, so the section holding a name's first occurrence in the files'
# inlining order (comments aside) is the section that defines it; `tests/unit/test_codegen_trim.py`
# checks that every specialisation and overload of a name sits in that same section.  A kernel
# inlines the preambles of its files plus the sections that define the names its body uses and,
# transitively, the names those sections use.  NVRTC parses far less text that way: a kernel's
# compile time is dominated by its own code, not by helpers it never calls.

_SECTION = re.compile(r"(?m)^(?=// -- )")
_NAME = re.compile(r"\b(?:nvf|NVF)_\w+")
_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


@dataclasses.dataclass(frozen=True)
class Section:
    header: str  # the file it comes from
    text: str
    preamble: bool  # the file's text before its first section: always inlined with the file
    uses: frozenset[str]  # helper names in its code (comments aside)


def code_names(text: str) -> set[str]:
    """The helper names (nvf_*, NVF_*) that `text` mentions outside comments."""
    return set(_NAME.findall(_COMMENT.sub("", text)))


@functools.cache
def sections(headers: tuple[str, ...]) -> tuple[tuple[Section, ...], dict[str, int]]:
    """The sections of `headers` in inlining order, and per helper name the index of the
    section that defines it (its first occurrence)."""
    out: list[Section] = []
    defined: dict[str, int] = {}
    for header in headers:
        for i, text in enumerate(_SECTION.split(read_template(header).rstrip("\n") + "\n")):
            if not text.strip() and i:
                continue
            uses = code_names(text)
            for name in sorted(uses):
                defined.setdefault(name, len(out))
            out.append(Section(header, text, i == 0, frozenset(uses)))
    return tuple(out), defined


def inline_helpers(headers: tuple[str, ...], code: str) -> str:
    """The helper text to put before `code`: of `headers`, each file's preamble and the sections
    `code` needs (module comment above), in the files' order, each file under a banner line."""
    parts, defined = sections(headers)
    keep = {i for i, s in enumerate(parts) if s.preamble}
    todo = list(code_names(code).union(*(parts[i].uses for i in keep)))
    while todo:
        index = defined.get(todo.pop())
        if index is not None and index not in keep:
            keep.add(index)
            todo.extend(parts[index].uses)
    lines: list[str] = []
    for i, s in enumerate(parts):
        if i not in keep:
            continue
        if s.preamble:
            lines.append(f"// ---- {s.header} ----")
        lines.append(s.text.rstrip("\n"))
    return "\n".join(lines) + "\n"
