"""Philox4x32-10 on numpy: the CPU twin of codegen_templates/nvf_random.cuh, bit for bit.

Input: element indices (int64 array), the launch seed and the stream number.  Output: float32
uniforms in [0, 1), equal to what `nvf_rand_uniform(idx, seed, stream)` computes on the GPU.
`philox4x32` exposes the raw generator (checked against the published known-answer vectors).
"""

from __future__ import annotations

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = 0x9E3779B9, 0xBB67AE85
_MASK = np.uint64(0xFFFFFFFF)
Words = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def philox4x32(counter: Words, key: tuple[int, int], rounds: int = 10) -> Words:
    """The Philox4x32 block function on arrays of 32-bit words (held in uint64)."""
    c0, c1, c2, c3 = (np.asarray(c, dtype=np.uint64) for c in counter)
    k0, k1 = key
    for _ in range(rounds):
        p0 = _M0 * c0  # < 2^64: exact in uint64
        p1 = _M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK
        c0, c1, c2, c3 = hi1 ^ c1 ^ np.uint64(k0), lo1, hi0 ^ c3 ^ np.uint64(k1), lo0
        k0 = (k0 + _W0) & 0xFFFFFFFF
        k1 = (k1 + _W1) & 0xFFFFFFFF
    return c0, c1, c2, c3


def rand_uniform(idx: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """nvf_rand_uniform over an array of element indices."""
    bits = np.asarray(idx).astype(np.int64).view(np.uint64)
    seed_bits = seed & 0xFFFFFFFFFFFFFFFF
    counter = (bits & _MASK, bits >> np.uint64(32),
               np.full_like(bits, stream & 0xFFFFFFFF), np.zeros_like(bits))
    c0, _, _, _ = philox4x32(counter, (seed_bits & 0xFFFFFFFF, seed_bits >> 32))
    return ((c0 >> np.uint64(8)).astype(np.float32) * np.float32(2.0**-24)).astype(np.float32)
