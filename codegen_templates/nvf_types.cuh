// nvf_types.cuh -- nvfuse's element types and conversions.
//
// Contract:
// - Needs no CUDA toolkit header: NVRTC alone (its builtin declarations) compiles it, and so
//   does `nvcc -x cu` for the host (the host paths are plain C++ bit manipulation).
// - nvf_half / nvf_bfloat16 are plain 2-byte structs holding the IEEE binary16 / bfloat16 bits;
//   arithmetic never happens on them: values are widened to float, computed, and rounded once
//   (round to nearest even) when converted back.
// - nvf_cast<To, From>(x) converts between bool, unsigned char, signed char, short, int,
//   long long, nvf_half, nvf_bfloat16, float and double with eager PyTorch's CUDA semantics
//   (c10::static_cast_with_inter_type):
//     float -> integer truncates toward zero (out of range is undefined, as in torch);
//     float -> unsigned char goes through long long (torch does this so that negative values
//       wrap instead of hitting undefined behaviour);
//     anything -> bool is x != 0 (NaN -> true); bool -> anything is 0 / 1;
//     half / bf16 -> X widens to float first; X -> half / bf16 converts X to float first.
//       That includes double and long long: c10::Half and c10::BFloat16 only have a
//       constructor from float, so torch rounds double -> float -> half (double rounding)
//       and we do exactly the same.
// - nvf_vec<T, N> is an aligned array for one 2/4/8/16-byte vector load or store (N * sizeof(T)
//   must be a power of two, as alignas requires).
// - nvf_float_as_bits / nvf_bits_as_float (and the double pair) reinterpret bits on host and
//   device; nvfuse literals for inf / nan use them so they are exact everywhere.
#pragma once

#define NVF_HD __host__ __device__ __forceinline__

struct nvf_half {
  unsigned short bits;
};

struct nvf_bfloat16 {
  unsigned short bits;
};

template <typename T, int N>
struct alignas(sizeof(T) * N) nvf_vec {
  T v[N];
};

// -- bit reinterpretation ------------------------------------------------------------------

NVF_HD unsigned int nvf_float_as_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  unsigned int u;
  __builtin_memcpy(&u, &x, sizeof(u));
  return u;
#endif
}

NVF_HD float nvf_bits_as_float(unsigned int u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  __builtin_memcpy(&x, &u, sizeof(x));
  return x;
#endif
}

NVF_HD unsigned long long nvf_double_as_bits(double x) {
#ifdef __CUDA_ARCH__
  return (unsigned long long)__double_as_longlong(x);
#else
  unsigned long long u;
  __builtin_memcpy(&u, &x, sizeof(u));
  return u;
#endif
}

NVF_HD double nvf_bits_as_double(unsigned long long u) {
#ifdef __CUDA_ARCH__
  return __longlong_as_double((long long)u);
#else
  double x;
  __builtin_memcpy(&x, &u, sizeof(x));
  return x;
#endif
}

// -- float <-> half ------------------------------------------------------------------------

// Round-to-nearest-even on the bits; used on the host only (the device has cvt.rn.f16.f32).
NVF_HD unsigned short nvf_float_to_half_bits_soft(float f) {
  const unsigned int x = nvf_float_as_bits(f);
  const unsigned int sign = (x >> 16) & 0x8000u;
  const unsigned int ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) {  // NaN: stay quiet, keep the top payload bits
    return (unsigned short)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
  }
  if (ax >= 0x477ff000u) {  // >= 65520 rounds to infinity (inf stays inf)
    return (unsigned short)(sign | 0x7c00u);
  }
  if (ax <= 0x33000000u) {  // <= 2^-25: rounds to zero (2^-25 is a tie, even is 0)
    return (unsigned short)sign;
  }
  const unsigned int exp = ax >> 23;
  if (exp < 113u) {  // below 2^-14: a half subnormal, value / 2^-24 rounded
    const unsigned int mant = (ax & 0x7fffffu) | 0x800000u;
    const unsigned int shift = 126u - exp;  // 14..24
    unsigned int r = mant >> shift;
    const unsigned int rem = mant & ((1u << shift) - 1u);
    const unsigned int half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (r & 1u))) r += 1u;
    return (unsigned short)(sign | r);
  }
  unsigned int h = ((exp - 112u) << 10) | ((ax >> 13) & 0x3ffu);
  const unsigned int rem = ax & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h += 1u;  // a carry bumps the exponent
  return (unsigned short)(sign | h);
}

NVF_HD float nvf_half_bits_to_float_soft(unsigned short h) {
  const unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
  unsigned int exp = ((unsigned int)h >> 10) & 0x1fu;
  unsigned int mant = (unsigned int)h & 0x3ffu;
  if (exp == 0x1fu) return nvf_bits_as_float(sign | 0x7f800000u | (mant << 13));
  if (exp == 0u) {
    if (mant == 0u) return nvf_bits_as_float(sign);
    exp = 113u;  // normalise the subnormal: value = mant * 2^-24
    while ((mant & 0x400u) == 0u) {
      mant <<= 1;
      exp -= 1u;
    }
    return nvf_bits_as_float(sign | (exp << 23) | ((mant & 0x3ffu) << 13));
  }
  return nvf_bits_as_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

NVF_HD nvf_half nvf_float_to_half(float f) {
  nvf_half h;
#ifdef __CUDA_ARCH__
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(f));
#else
  h.bits = nvf_float_to_half_bits_soft(f);
#endif
  return h;
}

NVF_HD float nvf_half_to_float(nvf_half h) {
#ifdef __CUDA_ARCH__
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h.bits));
  return f;
#else
  return nvf_half_bits_to_float_soft(h.bits);
#endif
}

// -- float <-> bfloat16 --------------------------------------------------------------------

// Round-to-nearest-even on the bits (as c10 does where there is no hardware instruction).
NVF_HD unsigned short nvf_float_to_bfloat16_bits_soft(float f) {
  const unsigned int x = nvf_float_as_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) {  // NaN: keep sign, force quiet
    return (unsigned short)((x >> 16) | 0x40u);
  }
  return (unsigned short)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

NVF_HD nvf_bfloat16 nvf_float_to_bfloat16(float f) {
  nvf_bfloat16 b;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(b.bits) : "f"(f));
#else
  b.bits = nvf_float_to_bfloat16_bits_soft(f);
#endif
  return b;
}

NVF_HD float nvf_bfloat16_to_float(nvf_bfloat16 b) {
  // bfloat16 is the top half of a float: widening is exact.
  return nvf_bits_as_float((unsigned int)b.bits << 16);
}

// -- nvf_cast ------------------------------------------------------------------------------

template <typename To, typename From>
struct nvf_cast_impl {
  static NVF_HD To apply(From x) { return static_cast<To>(x); }
};

template <typename From>
struct nvf_cast_impl<bool, From> {
  static NVF_HD bool apply(From x) { return x != static_cast<From>(0); }
};

template <typename From>
struct nvf_cast_impl<nvf_half, From> {
  static NVF_HD nvf_half apply(From x) {
    return nvf_float_to_half(nvf_cast_impl<float, From>::apply(x));
  }
};

template <typename From>
struct nvf_cast_impl<nvf_bfloat16, From> {
  static NVF_HD nvf_bfloat16 apply(From x) {
    return nvf_float_to_bfloat16(nvf_cast_impl<float, From>::apply(x));
  }
};

template <typename To>
struct nvf_cast_impl<To, nvf_half> {
  static NVF_HD To apply(nvf_half x) {
    return nvf_cast_impl<To, float>::apply(nvf_half_to_float(x));
  }
};

template <typename To>
struct nvf_cast_impl<To, nvf_bfloat16> {
  static NVF_HD To apply(nvf_bfloat16 x) {
    return nvf_cast_impl<To, float>::apply(nvf_bfloat16_to_float(x));
  }
};

// The pairs two partial specialisations above both match, spelled out.
template <>
struct nvf_cast_impl<nvf_half, nvf_half> {
  static NVF_HD nvf_half apply(nvf_half x) { return x; }
};

template <>
struct nvf_cast_impl<nvf_bfloat16, nvf_bfloat16> {
  static NVF_HD nvf_bfloat16 apply(nvf_bfloat16 x) { return x; }
};

template <>
struct nvf_cast_impl<nvf_half, nvf_bfloat16> {
  static NVF_HD nvf_half apply(nvf_bfloat16 x) {
    return nvf_float_to_half(nvf_bfloat16_to_float(x));
  }
};

template <>
struct nvf_cast_impl<nvf_bfloat16, nvf_half> {
  static NVF_HD nvf_bfloat16 apply(nvf_half x) {
    return nvf_float_to_bfloat16(nvf_half_to_float(x));
  }
};

template <>
struct nvf_cast_impl<bool, nvf_half> {
  static NVF_HD bool apply(nvf_half x) { return nvf_half_to_float(x) != 0.0f; }
};

template <>
struct nvf_cast_impl<bool, nvf_bfloat16> {
  static NVF_HD bool apply(nvf_bfloat16 x) { return nvf_bfloat16_to_float(x) != 0.0f; }
};

// torch casts floating values to uint8 through int64 so negative values wrap (c10 TypeCast.h).
template <>
struct nvf_cast_impl<unsigned char, float> {
  static NVF_HD unsigned char apply(float x) {
    return static_cast<unsigned char>(static_cast<long long>(x));
  }
};

template <>
struct nvf_cast_impl<unsigned char, double> {
  static NVF_HD unsigned char apply(double x) {
    return static_cast<unsigned char>(static_cast<long long>(x));
  }
};

template <typename To, typename From>
NVF_HD To nvf_cast(From x) {
  return nvf_cast_impl<To, From>::apply(x);
}
