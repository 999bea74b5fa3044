"""The names of kernel scalar parameters, shared by the schedules and the lowerings.

A schedule returns its launch scalars as a name -> value mapping; a lowering declares its
`kir.Param`s under the same names; the launcher orders the values by the kernel's declared
parameters (`nvfuse.lower.kir.bind_scalars`).  Every derived name is spelled here, once, so
that the two sides can never disagree on a spelling.

    numel, size{d}                     pointwise: element count, merged sizes (d >= 1)
    rows, row_numel, osize{d}, isize{d}  reductions: row count, row length, outer / inner sizes
    stride_{operand}_{part}{d}         an operand's "s" stride along dim d ('o' / 'i': the
                                       outer / inner dims of a reduction; '' for pointwise)
    {input}_c{c}p{k}                   the operand of input placed as segment k of concat c
    cat{c}_end{k}, cat{c}_shift{k}     a concatenation's segment ends and shifts
    splits, chunk_len                  a split reduction's chunk count and length
    smem_cols                          a looped row's columns staged in shared memory
    seed                               a random kernel's seed: the launcher draws it per launch
"""

from __future__ import annotations

from collections.abc import Sequence

NUMEL = "numel"
ROWS = "rows"
ROW_NUMEL = "row_numel"
SPLITS = "splits"
CHUNK_LEN = "chunk_len"
SMEM_COLS = "smem_cols"  # a shared-memory row's staged columns (nvfuse/schedule/reduction.py)
SEED = "seed"  # not a schedule's: drawn fresh for every launch (nvfuse/runtime/executor.py)


def size(d: int) -> str:
    return f"size{d}"


def outer_size(d: int) -> str:
    return f"osize{d}"


def inner_size(d: int) -> str:
    return f"isize{d}"


def stride(operand: str, d: int, part: str = "") -> str:
    return f"stride_{operand}_{part}{d}"


def piece(input_name: str, c: int, k: int) -> str:
    """The operand name of `input_name` placed as segment k of concatenation c."""
    return f"{input_name}_c{c}p{k}"


def cat_end(c: int, k: int) -> str:
    return f"cat{c}_end{k}"


def cat_shift(c: int, k: int) -> str:
    return f"cat{c}_shift{k}"


def general_strides(operand: str, classes: str, strides: Sequence[int],
                    part: str = "") -> dict[str, int]:
    """The named strides of one operand that are kernel arguments: those classified "s"."""
    return {stride(operand, d, part): s for d, (c, s) in enumerate(zip(classes, strides))
            if c == "s"}
