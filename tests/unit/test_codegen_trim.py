"""Inlining only the helper sections a kernel uses (nvfuse/codegen/templates.py): the rule that
a name's first occurrence is its defining section must hold for every definition, and trimmed
units must keep everything their code calls."""

from __future__ import annotations

import re

import pytest

from nvfuse.codegen.templates import code_names, inline_helpers, sections

ALL = ("nvf_types.cuh", "nvf_math.cuh", "nvf_memory.cuh", "nvf_reduce.cuh", "nvf_random.cuh")
# a function definition or specialisation: the name right before its parameter list
_FUNCTION = re.compile(r"(?m)^(?:template\s*<[^\n]*>\s*)?(?:NVF_HD|__device__|static|inline)"
                       r"[^\n;{}]*?\b((?:nvf|NVF)_\w+)\s*(?:<[^\n;{}()]*>)?\s*\(")
_STRUCT = re.compile(r"\bstruct\s+(nvf_\w+)")


def test_every_definition_sits_in_the_section_of_its_first_occurrence() -> None:
    parts, defined = sections(ALL)
    checked = 0
    for index, part in enumerate(parts):
        code = re.sub(r"/\*.*?\*/|//[^\n]*", "", part.text, flags=re.S)
        for name in _FUNCTION.findall(code) + _STRUCT.findall(code):
            assert defined[name] == index, (
                f"{name} is defined (or specialised) in section {index} of {part.header} but "
                f"first occurs in section {defined[name]}: trimming could drop this definition")
            checked += 1
    assert checked > 50


def test_trimmed_helpers_keep_what_the_code_calls_and_drop_the_rest() -> None:
    code = "x = nvf_remainder<int>(a, b); y = nvf_float_to_half(z);"
    text = inline_helpers(("nvf_types.cuh", "nvf_math.cuh"), code)
    parts, defined = sections(("nvf_types.cuh", "nvf_math.cuh"))
    for name in code_names(code):
        assert parts[defined[name]].text.rstrip("\n") in text
    assert "nvf_pow" not in text  # the pow section is not needed
    assert "// ---- nvf_math.cuh ----" in text and "#pragma once" in text
    full = "".join(p.text for p in parts)
    assert len(text) < len(full)


@pytest.mark.parametrize("header", ALL)
def test_a_kernel_naming_nothing_still_gets_each_preamble(header: str) -> None:
    text = inline_helpers((header,), "")
    assert text.startswith(f"// ---- {header} ----")


def test_every_helper_section_compiles_trimmed() -> None:
    """Per section, a unit naming one name it defines and inlining only what that pulls in
    compiles through nvfuse's NVRTC path (its options, --minimal included where NVRTC has it):
    no section depends on a helper or NVRTC declaration that trimming leaves out."""
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="NVRTC (CuPy) is not installed")
    from nvfuse.runtime.nvrtc import compile_to_cubin

    parts, defined = sections(ALL)
    first_name: dict[int, str] = {}
    for name, index in sorted(defined.items()):
        first_name.setdefault(index, name)
    assert len(first_name) > 20
    for index, name in sorted(first_name.items()):
        # the name sits in a comment: it selects the section without instantiating anything
        code = f'// uses {name}\nextern "C" __global__ void nvf_trim_probe(int* y) {{ }}\n'
        unit = inline_helpers(ALL, name) + code
        assert parts[index].text.rstrip("\n") in unit
        assert compile_to_cubin(unit, "sm_90", f"trim_{name}.cu")[:4] == b"\x7fELF", name
