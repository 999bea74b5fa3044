// nvf_math.cuh -- element math where a plain C expression would not match eager PyTorch.
//
// Contract:
// - Needs nvf_types.cuh before it and no CUDA toolkit header.  Everything is
//   __host__ __device__ so the host build of a test driver can check the numerics on a machine
//   without a GPU; device-only intrinsics sit behind #ifdef __CUDA_ARCH__.
// - Each helper is a function template called with an explicit type, e.g.
//   nvf_remainder<int>(a, b), so literal arguments convert instead of changing the overload.
//   Integer versions serve unsigned char, signed char, short, int and long long; float and
//   double are explicit specialisations that call the CUDA builtin torch's kernel calls.
// - Semantics are those of nvfuse/fusion/prims.py (eager PyTorch's CUDA kernels):
//   * signed add / sub / mul / neg / abs wrap around (computed in unsigned: no UB);
//   * maximum / minimum propagate NaN (else fmaxf / fminf, as torch's ::max does);
//   * div_trunc: floats trunc(a / b), integers C '/'; div_floor: floats as torch's
//     div_floor_floating, integers Python-style floor; remainder has the divisor's sign,
//     fmod the dividend's (floats fmodf / fmod, integers C '%');
//   * integer division by -1 is computed as a wrapping negation so INT_MIN / -1 is INT_MIN
//     and INT_MIN % -1 is 0 instead of undefined behaviour; division by zero is as undefined
//     as it is in torch's CUDA kernels;
//   * integer pow by repeated squaring; a negative exponent gives 1 for base 1, +-1 for
//     base -1 and 0 otherwise;
//   * shl by a count < 0 or >= the bit width gives 0; shr by such a count gives the sign fill
//     (0 for unsigned), as torch's lshift / rshift kernels.
#pragma once

// -- integer traits (no <type_traits>) -------------------------------------------------------

// wide: the unsigned type the arithmetic is done in (at least unsigned int, so 16-bit
// products cannot overflow a promoted int); sgn: the signed type of the same size.
template <typename T>
struct nvf_int_traits;

template <>
struct nvf_int_traits<unsigned char> {
  typedef unsigned int wide;
  typedef signed char sgn;
  static const bool is_signed = false;
};

template <>
struct nvf_int_traits<signed char> {
  typedef unsigned int wide;
  typedef signed char sgn;
  static const bool is_signed = true;
};

template <>
struct nvf_int_traits<short> {
  typedef unsigned int wide;
  typedef short sgn;
  static const bool is_signed = true;
};

template <>
struct nvf_int_traits<int> {
  typedef unsigned int wide;
  typedef int sgn;
  static const bool is_signed = true;
};

template <>
struct nvf_int_traits<long long> {
  typedef unsigned long long wide;
  typedef long long sgn;
  static const bool is_signed = true;
};

// Written as a guarded test so unsigned types need no (pointless, warned-about) comparison.
template <typename T>
NVF_HD bool nvf_is_negative(T x) {
  return nvf_int_traits<T>::is_signed && x < static_cast<T>(0);
}

// -- wrapping integer arithmetic; plain IEEE for floats --------------------------------------

template <typename T>
NVF_HD T nvf_add(T a, T b) {
  typedef typename nvf_int_traits<T>::wide U;
  return static_cast<T>(static_cast<U>(a) + static_cast<U>(b));
}
template <> NVF_HD float nvf_add<float>(float a, float b) { return a + b; }
template <> NVF_HD double nvf_add<double>(double a, double b) { return a + b; }

template <typename T>
NVF_HD T nvf_sub(T a, T b) {
  typedef typename nvf_int_traits<T>::wide U;
  return static_cast<T>(static_cast<U>(a) - static_cast<U>(b));
}
template <> NVF_HD float nvf_sub<float>(float a, float b) { return a - b; }
template <> NVF_HD double nvf_sub<double>(double a, double b) { return a - b; }

template <typename T>
NVF_HD T nvf_mul(T a, T b) {
  typedef typename nvf_int_traits<T>::wide U;
  return static_cast<T>(static_cast<U>(a) * static_cast<U>(b));
}
template <> NVF_HD float nvf_mul<float>(float a, float b) { return a * b; }
template <> NVF_HD double nvf_mul<double>(double a, double b) { return a * b; }

template <typename T>
NVF_HD T nvf_neg(T a) {
  typedef typename nvf_int_traits<T>::wide U;
  return static_cast<T>(static_cast<U>(0) - static_cast<U>(a));
}
template <> NVF_HD float nvf_neg<float>(float a) { return -a; }
template <> NVF_HD double nvf_neg<double>(double a) { return -a; }

template <typename T>
NVF_HD T nvf_abs(T a) {
  return nvf_is_negative<T>(a) ? nvf_neg<T>(a) : a;
}
template <> NVF_HD float nvf_abs<float>(float a) { return fabsf(a); }
template <> NVF_HD double nvf_abs<double>(double a) { return fabs(a); }

// -- maximum / minimum -------------------------------------------------------------------------

template <typename T>
NVF_HD T nvf_maximum(T a, T b) { return a > b ? a : b; }
template <> NVF_HD bool nvf_maximum<bool>(bool a, bool b) { return a || b; }
template <> NVF_HD float nvf_maximum<float>(float a, float b) {
  const float m = fmaxf(a, b);  // every operand evaluated, then selects: no branches
  return (a != a) ? a : ((b != b) ? b : m);
}
template <> NVF_HD double nvf_maximum<double>(double a, double b) {
  const double m = fmax(a, b);
  return (a != a) ? a : ((b != b) ? b : m);
}

template <typename T>
NVF_HD T nvf_minimum(T a, T b) { return a < b ? a : b; }
template <> NVF_HD bool nvf_minimum<bool>(bool a, bool b) { return a && b; }
template <> NVF_HD float nvf_minimum<float>(float a, float b) {
  const float m = fminf(a, b);  // every operand evaluated, then selects: no branches
  return (a != a) ? a : ((b != b) ? b : m);
}
template <> NVF_HD double nvf_minimum<double>(double a, double b) {
  const double m = fmin(a, b);
  return (a != a) ? a : ((b != b) ? b : m);
}

// -- division family -----------------------------------------------------------------------

template <typename T>
NVF_HD bool nvf_is_minus_one(T b) {
  return nvf_int_traits<T>::is_signed && b == static_cast<T>(-1);
}

template <typename T>
NVF_HD T nvf_div_trunc(T a, T b) {
  return nvf_is_minus_one<T>(b) ? nvf_neg<T>(a) : static_cast<T>(a / b);
}
template <> NVF_HD float nvf_div_trunc<float>(float a, float b) { return truncf(a / b); }
template <> NVF_HD double nvf_div_trunc<double>(double a, double b) { return trunc(a / b); }

template <typename T>
NVF_HD T nvf_div_floor(T a, T b) {
  if (nvf_is_minus_one<T>(b)) return nvf_neg<T>(a);
  const T q = static_cast<T>(a / b);
  const T r = static_cast<T>(a % b);
  // C truncates; step down when the exact quotient was negative and not whole.
  const bool step = r != static_cast<T>(0) && (nvf_is_negative<T>(r) != nvf_is_negative<T>(b));
  return step ? static_cast<T>(q - 1) : q;
}

// torch's div_floor_floating: the floor of the exact quotient, derived from fmod so that it
// agrees with remainder(); the 0.5 test repairs (a - mod) / b having rounded down.
template <> NVF_HD float nvf_div_floor<float>(float a, float b) {
  if (b == 0.0f) return a / b;  // IEEE: +-inf or nan
  const float mod = fmodf(a, b);
  float div = (a - mod) / b;
  if (mod != 0.0f && ((b < 0.0f) != (mod < 0.0f))) div -= 1.0f;
  if (div == 0.0f) return copysignf(0.0f, a / b);
  float fl = floorf(div);
  if (div - fl > 0.5f) fl += 1.0f;
  return fl;
}
template <> NVF_HD double nvf_div_floor<double>(double a, double b) {
  if (b == 0.0) return a / b;
  const double mod = fmod(a, b);
  double div = (a - mod) / b;
  if (mod != 0.0 && ((b < 0.0) != (mod < 0.0))) div -= 1.0;
  if (div == 0.0) return copysign(0.0, a / b);
  double fl = floor(div);
  if (div - fl > 0.5) fl += 1.0;
  return fl;
}

template <typename T>
NVF_HD T nvf_remainder(T a, T b) {
  if (nvf_is_minus_one<T>(b)) return static_cast<T>(0);
  T r = static_cast<T>(a % b);
  if (r != static_cast<T>(0) && (nvf_is_negative<T>(r) != nvf_is_negative<T>(b))) {
    r = static_cast<T>(r + b);  // signs differ: cannot overflow
  }
  return r;
}
template <> NVF_HD float nvf_remainder<float>(float a, float b) {
  float mod = fmodf(a, b);
  if (mod != 0.0f && ((b < 0.0f) != (mod < 0.0f))) mod += b;
  return mod;
}
template <> NVF_HD double nvf_remainder<double>(double a, double b) {
  double mod = fmod(a, b);
  if (mod != 0.0 && ((b < 0.0) != (mod < 0.0))) mod += b;
  return mod;
}

template <typename T>
NVF_HD T nvf_fmod(T a, T b) {
  return nvf_is_minus_one<T>(b) ? static_cast<T>(0) : static_cast<T>(a % b);
}
template <> NVF_HD float nvf_fmod<float>(float a, float b) { return fmodf(a, b); }
template <> NVF_HD double nvf_fmod<double>(double a, double b) { return fmod(a, b); }

// -- pow -------------------------------------------------------------------------------------

template <typename T>
NVF_HD T nvf_pow(T a, T b) {
  typedef typename nvf_int_traits<T>::wide U;
  if (nvf_is_negative<T>(b)) {
    if (a == static_cast<T>(1)) return static_cast<T>(1);
    if (nvf_is_minus_one<T>(a)) return (b & static_cast<T>(1)) ? a : static_cast<T>(1);
    return static_cast<T>(0);
  }
  U base = static_cast<U>(a);
  U e = static_cast<U>(b);
  U result = 1;
  while (e) {
    if (e & 1u) result *= base;
    e >>= 1;
    base *= base;
  }
  return static_cast<T>(result);
}
template <> NVF_HD float nvf_pow<float>(float a, float b) { return powf(a, b); }
template <> NVF_HD double nvf_pow<double>(double a, double b) { return pow(a, b); }

// -- shifts ----------------------------------------------------------------------------------

template <typename T>
NVF_HD T nvf_shl(T a, T b) {
  typedef typename nvf_int_traits<T>::wide U;
  typedef typename nvf_int_traits<T>::sgn S;
  const int bits = static_cast<int>(sizeof(T) * 8);
  if (static_cast<S>(b) < 0 || b >= static_cast<T>(bits)) return static_cast<T>(0);
  return static_cast<T>(static_cast<U>(a) << static_cast<int>(b));
}

template <typename T>
NVF_HD T nvf_shr(T a, T b) {
  typedef typename nvf_int_traits<T>::sgn S;
  const int sign_bit = nvf_int_traits<T>::is_signed ? 1 : 0;
  const int max_shift = static_cast<int>(sizeof(T) * 8) - sign_bit;
  if (static_cast<S>(b) < 0 || b >= static_cast<T>(max_shift)) {
    return static_cast<T>(a >> max_shift);  // sign fill (or 0); T promotes, so no UB
  }
  return static_cast<T>(a >> static_cast<int>(b));
}

// -- classification (bit tests: immune to fast-math assumptions) --------------------------

template <typename T>
NVF_HD bool nvf_signbit(T x) { return nvf_is_negative<T>(x); }
template <> NVF_HD bool nvf_signbit<bool>(bool) { return false; }
template <> NVF_HD bool nvf_signbit<float>(float x) {
  return (nvf_float_as_bits(x) >> 31) != 0u;
}
template <> NVF_HD bool nvf_signbit<double>(double x) {
  return (nvf_double_as_bits(x) >> 63) != 0ull;
}

template <typename T>
NVF_HD bool nvf_isnan(T x);
template <> NVF_HD bool nvf_isnan<float>(float x) {
  return (nvf_float_as_bits(x) & 0x7fffffffu) > 0x7f800000u;
}
template <> NVF_HD bool nvf_isnan<double>(double x) {
  return (nvf_double_as_bits(x) & 0x7fffffffffffffffull) > 0x7ff0000000000000ull;
}

template <typename T>
NVF_HD bool nvf_isinf(T x);
template <> NVF_HD bool nvf_isinf<float>(float x) {
  return (nvf_float_as_bits(x) & 0x7fffffffu) == 0x7f800000u;
}
template <> NVF_HD bool nvf_isinf<double>(double x) {
  return (nvf_double_as_bits(x) & 0x7fffffffffffffffull) == 0x7ff0000000000000ull;
}

template <typename T>
NVF_HD bool nvf_isfinite(T x);
template <> NVF_HD bool nvf_isfinite<float>(float x) {
  return (nvf_float_as_bits(x) & 0x7f800000u) != 0x7f800000u;
}
template <> NVF_HD bool nvf_isfinite<double>(double x) {
  return (nvf_double_as_bits(x) & 0x7ff0000000000000ull) != 0x7ff0000000000000ull;
}

// -- float helpers with no host builtin ----------------------------------------------------

template <typename T>
NVF_HD T nvf_rsqrt(T x);
template <> NVF_HD float nvf_rsqrt<float>(float x) {
#ifdef __CUDA_ARCH__
  return rsqrtf(x);  // what torch's CUDA rsqrt calls
#else
  return 1.0f / sqrtf(x);
#endif
}
template <> NVF_HD double nvf_rsqrt<double>(double x) {
#ifdef __CUDA_ARCH__
  return rsqrt(x);
#else
  return 1.0 / sqrt(x);
#endif
}
