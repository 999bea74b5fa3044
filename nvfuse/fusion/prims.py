"""The primitive operations of the fusion IR: the one vocabulary shared by the op table
(which decomposes aten ops into prims), the CUDA emitter and the CPU interpreter.

Typing rules (checked by the fusion IR verifier):
- UNARY_SAME / BINARY_SAME: operands share one dtype T, result is T.
  Float-only prims (marked in FLOAT_ONLY) take float32 or float64 (never float16/bfloat16:
  those are computed in float32).  Integer-only prims (INT_ONLY) take bool or integer dtypes.
- UNARY_PRED / BINARY_PRED: operands share a dtype T, result is bool.
- WHERE(cond: bool, a: T, b: T) -> T.
- CAST(x: S) -> T for any S, T (float -> int truncates toward zero as C and torch do; any -> bool
  is x != 0).
- LOAD / CONST / RAND are leaves: LOAD reads input `attr` (an int), CONST is the literal `attr`,
  RAND is a float32 uniform in [0, 1) drawn for this element from random stream `attr` (an int;
  streams of one kernel are independent) with the launch's seed (Philox4x32-10).
- ROW_NUMEL is a leaf of dtype int64: the number of elements a row reduction combines (the
  product of the reduced sizes).  It is a size, so kernels take it as an argument.
- PIECE_LOAD / IN_PIECE are the leaves of concatenations (`FusionIR.concats`: cat, stack,
  constant pad, each along one dim d of the iteration space, split into segments).  PIECE_LOAD
  reads input `attr[0]` placed as segment `attr[2]` of concatenation `attr[1]`: at coordinate j
  of its dim d inside that segment it is the input's element at j shifted into the piece;
  outside the segment it is 0 (no memory is read).  IN_PIECE (bool) is whether j lies before
  the end of segment `attr[1]` of concatenation `attr[0]` (segments are in order, so a chain of
  WHEREs over IN_PIECE picks each element's segment).
- REDUCE_SUM / REDUCE_PROD / REDUCE_MAX / REDUCE_MIN (REDUCTIONS): unary, operand dtype T =
  result dtype T (float32, float64 or int64: halves accumulate in float32, narrow integers in
  int64).  They combine their operand over the reduced dims of the iteration space (the
  trailing `FusionIR.reduce_ndim` dims, or `FusionIR.reduce_dims`); the result is a row value
  (broadcast back along those dims, like a keepdim=True result).  MAX / MIN propagate NaN
  (torch.amax / amin); SUM / PROD of integers wrap around.
- REDUCE_M2 (also in REDUCTIONS): unary, float32 or float64 only; the sum of squared deviations
  from the row's mean, sum((x - mean(x))^2), computed in one pass with Welford's update (per
  thread, on values shifted by the row's first element so a large mean does not cancel) and
  Chan's combine across the block.  var = m2 / max(0, n - correction).
- REDUCE_ARGMAX / REDUCE_ARGMIN (ARG_REDUCTIONS, also in REDUCTIONS): unary, operand float32,
  float64 or int64, result int64: the row-major flat index, within the reduced dims, of the
  row's largest / smallest element, as torch.argmax / argmin: a NaN beats every number (the
  first NaN's index), ties give the lowest index.  Lowered as a (value, index) pair reduction
  whose combine (compare values; NaN first; equal values -> the smaller index) is associative
  and commutative, so every thread / warp / block order gives the same index.  A REDUCE_MAX /
  REDUCE_MIN of the same operand rides the same pair (max.dim's values).

Semantics are eager PyTorch's (CUDA kernels), including NaN and signed-zero behaviour:
- MAXIMUM/MINIMUM propagate NaN; FMAX/FMIN ignore NaN when the other operand is a number.
- DIV is true division (floats) ; DIV_TRUNC and DIV_FLOOR are torch.div's rounding modes
  (for floats as torch's div_floor_floating; for ints with C / Python semantics).
- REMAINDER has the sign of the divisor (torch.remainder), FMOD the sign of the dividend.
- RINT rounds half to even (torch.round).
- POW on integers is exact repeated squaring (negative exponents: torch's CUDA rule,
  1 for base 1, +-1 for base -1, else 0).
- SHL/SHR on signed ints: shifting by >= bit width gives 0 (SHL) or the sign fill (SHR),
  as torch does.
- Signed integer ADD/SUB/MUL/NEG wrap around (two's complement), as torch does.
"""

from __future__ import annotations

import enum


class Prim(enum.Enum):
    # leaves
    LOAD = "load"
    CONST = "const"
    RAND = "rand"
    # unary, same dtype
    NEG = "neg"
    ABS = "abs"
    RECIPROCAL = "reciprocal"
    SQRT = "sqrt"
    RSQRT = "rsqrt"
    EXP = "exp"
    EXP2 = "exp2"
    EXPM1 = "expm1"
    LOG = "log"
    LOG2 = "log2"
    LOG10 = "log10"
    LOG1P = "log1p"
    SIN = "sin"
    COS = "cos"
    TAN = "tan"
    ASIN = "asin"
    ACOS = "acos"
    ATAN = "atan"
    SINH = "sinh"
    COSH = "cosh"
    TANH = "tanh"
    ASINH = "asinh"
    ACOSH = "acosh"
    ATANH = "atanh"
    ERF = "erf"
    ERFC = "erfc"
    FLOOR = "floor"
    CEIL = "ceil"
    TRUNC = "trunc"
    RINT = "rint"
    BITWISE_NOT = "bitwise_not"
    # unary predicates
    ISNAN = "isnan"
    ISINF = "isinf"
    ISFINITE = "isfinite"
    SIGNBIT = "signbit"
    # binary, same dtype
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    DIV_TRUNC = "div_trunc"
    DIV_FLOOR = "div_floor"
    REMAINDER = "remainder"
    FMOD = "fmod"
    POW = "pow"
    ATAN2 = "atan2"
    HYPOT = "hypot"
    MAXIMUM = "maximum"
    MINIMUM = "minimum"
    FMAX = "fmax"
    FMIN = "fmin"
    COPYSIGN = "copysign"
    BITWISE_AND = "bitwise_and"
    BITWISE_OR = "bitwise_or"
    BITWISE_XOR = "bitwise_xor"
    SHL = "shl"
    SHR = "shr"
    # binary predicates
    EQ = "eq"
    NE = "ne"
    LT = "lt"
    LE = "le"
    GT = "gt"
    GE = "ge"
    # others
    WHERE = "where"
    CAST = "cast"
    # concatenation leaves (see the module docstring)
    PIECE_LOAD = "piece_load"
    IN_PIECE = "in_piece"
    # row reductions (see the module docstring) and their leaf
    ROW_NUMEL = "row_numel"
    REDUCE_SUM = "reduce_sum"
    REDUCE_PROD = "reduce_prod"
    REDUCE_MAX = "reduce_max"
    REDUCE_MIN = "reduce_min"
    REDUCE_M2 = "reduce_m2"
    REDUCE_ARGMAX = "reduce_argmax"
    REDUCE_ARGMIN = "reduce_argmin"

    def __repr__(self) -> str:
        return self.value


P = Prim

UNARY_SAME = frozenset({
    P.NEG, P.ABS, P.RECIPROCAL, P.SQRT, P.RSQRT, P.EXP, P.EXP2, P.EXPM1, P.LOG, P.LOG2,
    P.LOG10, P.LOG1P, P.SIN, P.COS, P.TAN, P.ASIN, P.ACOS, P.ATAN, P.SINH, P.COSH, P.TANH,
    P.ASINH, P.ACOSH, P.ATANH, P.ERF, P.ERFC, P.FLOOR, P.CEIL, P.TRUNC, P.RINT, P.BITWISE_NOT,
})
UNARY_PRED = frozenset({P.ISNAN, P.ISINF, P.ISFINITE, P.SIGNBIT})
BINARY_SAME = frozenset({
    P.ADD, P.SUB, P.MUL, P.DIV, P.DIV_TRUNC, P.DIV_FLOOR, P.REMAINDER, P.FMOD, P.POW, P.ATAN2,
    P.HYPOT, P.MAXIMUM, P.MINIMUM, P.FMAX, P.FMIN, P.COPYSIGN, P.BITWISE_AND, P.BITWISE_OR,
    P.BITWISE_XOR, P.SHL, P.SHR,
})
BINARY_PRED = frozenset({P.EQ, P.NE, P.LT, P.LE, P.GT, P.GE})

FLOAT_ONLY = frozenset({
    P.RECIPROCAL, P.SQRT, P.RSQRT, P.EXP, P.EXP2, P.EXPM1, P.LOG, P.LOG2, P.LOG10, P.LOG1P,
    P.SIN, P.COS, P.TAN, P.ASIN, P.ACOS, P.ATAN, P.SINH, P.COSH, P.TANH, P.ASINH, P.ACOSH,
    P.ATANH, P.ERF, P.ERFC, P.DIV, P.ATAN2, P.HYPOT, P.COPYSIGN, P.FMAX, P.FMIN,
    P.ISINF, P.ISFINITE, P.ISNAN,
})
INT_ONLY = frozenset({P.BITWISE_NOT, P.BITWISE_AND, P.BITWISE_OR, P.BITWISE_XOR, P.SHL, P.SHR})
ARG_REDUCTIONS = frozenset({P.REDUCE_ARGMAX, P.REDUCE_ARGMIN})
REDUCTIONS = frozenset({P.REDUCE_SUM, P.REDUCE_PROD, P.REDUCE_MAX, P.REDUCE_MIN, P.REDUCE_M2,
                        *ARG_REDUCTIONS})
LEAVES = frozenset({P.LOAD, P.CONST, P.RAND, P.ROW_NUMEL, P.PIECE_LOAD, P.IN_PIECE})


def arity(prim: Prim) -> int:
    if prim in LEAVES:
        return 0
    if prim in UNARY_SAME or prim in UNARY_PRED or prim is P.CAST or prim in REDUCTIONS:
        return 1
    if prim is P.WHERE:
        return 3
    return 2
