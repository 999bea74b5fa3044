"""Bit-exact bfloat16 emulation on numpy.

Input: uint16 bit patterns (bfloat16 storage) or float32 values.  Output: the other.
`f32_to_bf16` rounds to nearest, ties to even, keeps denormals, and turns every NaN into the
canonical quiet NaN 0x7FC0 -- c10's scalar `round_to_nearest_even`, which is what
`torch.tensor(x).bfloat16()` gives.  (torch's vectorized CPU path writes 0xFFFF and CUDA's
`cvt.rn.bf16.f32` writes 0x7FFF; all three are quiet NaNs, so NaN-aware comparisons agree.)
"""

from __future__ import annotations

import numpy as np

CANONICAL_NAN = np.uint16(0x7FC0)


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """Widen bfloat16 bit patterns to float32 (exact: bfloat16 is float32's top half)."""
    wide = np.asarray(bits).astype(np.uint16, copy=False).astype(np.uint32) << np.uint32(16)
    return np.asarray(wide).view(np.float32)


def f32_to_bf16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to bfloat16 bit patterns (round-to-nearest-even, NaN -> 0x7FC0)."""
    with np.errstate(over="ignore"):  # a float64 argument beyond float32's range is inf
        values = np.asarray(x, dtype=np.float32)
    bits = values.view(np.uint32)
    # Adding 0x7FFF plus the kept LSB rounds ties to even; the carry may ripple into the
    # exponent, which is exactly right (largest finite rounds up to inf).  Only NaN patterns
    # could wrap around 2**32, and those are replaced below.
    lsb = (bits >> np.uint32(16)) & np.uint32(1)
    with np.errstate(over="ignore"):
        rounded = ((bits + np.uint32(0x7FFF) + lsb) >> np.uint32(16)).astype(np.uint16)
    return np.asarray(np.where(np.isnan(values), CANONICAL_NAN, rounded), dtype=np.uint16)
