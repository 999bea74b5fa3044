"""The dtypes nvfuse can put in a kernel, and what each one means in C, numpy and torch.

Input: a torch.dtype.  Output: a `DType` with its C type name, byte size, numpy storage type
and *compute* dtype (float16 and bfloat16 are computed in float32 and rounded once on store;
every other dtype is computed in itself).  This module is the one place that knows these facts.
"""

from __future__ import annotations

import enum

import numpy as np
import torch


class DType(enum.Enum):
    """A dtype a fused kernel can load, compute in or store."""

    BOOL = "bool"
    UINT8 = "uint8"
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    FLOAT16 = "float16"
    BFLOAT16 = "bfloat16"
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    # -- facts -------------------------------------------------------------------------------
    @property
    def itemsize(self) -> int:
        return _ITEMSIZE[self]

    @property
    def c_type(self) -> str:
        """The C type that holds one element in memory and in registers."""
        return _C_TYPE[self]

    @property
    def np_storage(self) -> type:
        """The numpy type whose bits equal the element's bits (bfloat16 is stored as uint16)."""
        return _NP_STORAGE[self]

    @property
    def torch(self) -> torch.dtype:
        return _TORCH[self]

    @property
    def is_float(self) -> bool:
        return self in (DType.FLOAT16, DType.BFLOAT16, DType.FLOAT32, DType.FLOAT64)

    @property
    def is_int(self) -> bool:
        """Integral and not bool."""
        return self in (DType.UINT8, DType.INT8, DType.INT16, DType.INT32, DType.INT64)

    @property
    def is_signed(self) -> bool:
        return self in (DType.INT8, DType.INT16, DType.INT32, DType.INT64) or self.is_float

    @property
    def is_reduced_float(self) -> bool:
        """float16/bfloat16: stored narrow, computed in float32."""
        return self in (DType.FLOAT16, DType.BFLOAT16)

    @property
    def compute(self) -> DType:
        """The dtype arithmetic on values of this dtype is done in."""
        return DType.FLOAT32 if self.is_reduced_float else self

    @property
    def bits(self) -> int:
        return 8 * self.itemsize if self is not DType.BOOL else 1

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


_ITEMSIZE = {
    DType.BOOL: 1, DType.UINT8: 1, DType.INT8: 1, DType.INT16: 2, DType.INT32: 4,
    DType.INT64: 8, DType.FLOAT16: 2, DType.BFLOAT16: 2, DType.FLOAT32: 4, DType.FLOAT64: 8,
}
_C_TYPE = {
    DType.BOOL: "bool", DType.UINT8: "unsigned char", DType.INT8: "signed char",
    DType.INT16: "short", DType.INT32: "int", DType.INT64: "long long",
    DType.FLOAT16: "nvf_half", DType.BFLOAT16: "nvf_bfloat16", DType.FLOAT32: "float",
    DType.FLOAT64: "double",
}
_NP_STORAGE = {
    DType.BOOL: np.bool_, DType.UINT8: np.uint8, DType.INT8: np.int8, DType.INT16: np.int16,
    DType.INT32: np.int32, DType.INT64: np.int64, DType.FLOAT16: np.float16,
    DType.BFLOAT16: np.uint16, DType.FLOAT32: np.float32, DType.FLOAT64: np.float64,
}
_TORCH = {
    DType.BOOL: torch.bool, DType.UINT8: torch.uint8, DType.INT8: torch.int8,
    DType.INT16: torch.int16, DType.INT32: torch.int32, DType.INT64: torch.int64,
    DType.FLOAT16: torch.float16, DType.BFLOAT16: torch.bfloat16, DType.FLOAT32: torch.float32,
    DType.FLOAT64: torch.float64,
}
_FROM_TORCH = {v: k for k, v in _TORCH.items()}


def from_torch(dtype: torch.dtype) -> DType:
    """The DType for a torch dtype; raises TypeError naming the dtype when unsupported."""
    try:
        return _FROM_TORCH[dtype]
    except KeyError:
        raise TypeError(f"nvfuse: unsupported dtype {dtype}") from None


def is_supported(dtype: torch.dtype) -> bool:
    return dtype in _FROM_TORCH
