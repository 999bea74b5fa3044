// nvf_reduce.cuh -- warp and block allreductions, and Welford (mean, m2, n) states.
//
// Contract:
// - Needs nvf_types.cuh and nvf_math.cuh before it and no CUDA toolkit header.  Inlined only
//   into kernels that use a reduction (kernel IR WarpReduce / BlockReduce / WelfordReduce).
// - Ops are types: nvf_op_sum, nvf_op_prod, nvf_op_max, nvf_op_min.  Each has
//   combine<T>(a, b) and identity<T>() for T in {float, double, int, long long}:
//     sum / prod: nvf_add / nvf_mul (integers wrap around, no UB);
//     max / min:  nvf_maximum / nvf_minimum (NaN propagates, as torch.amax / amin);
//     identities 0, 1, lowest (-inf for floats), highest (+inf for floats).
// - nvf_warp_allreduce<Op, T>(v): every lane of the calling warp gets the reduction of v over
//   the warp's 32 lanes.  All 32 lanes must call it (mask 0xffffffff).  Order: an xor butterfly
//   with offsets 16, 8, 4, 2, 1; at each step both lanes of a pair compute
//   combine(value of the lower lane, value of the upper lane), so all lanes end bit-identical
//   even for combines that are not commutative in rounding (Welford).  The kernel-IR
//   interpreter reproduces exactly this order.
// - nvf_block_allreduce<Op, T>(v, scratch): every thread of the block gets the reduction of v
//   over the block.  All threads of the block must call it (it has barriers); blockDim.x is a
//   multiple of 32, at most 1024; scratch is a __shared__ T array of >= blockDim.x / 32
//   elements whose contents it leaves unspecified, and which no thread may be using when it
//   is called (a previous use must be separated by a barrier, which a previous
//   nvf_block_allreduce provides).  Order: warp allreduce; lane 0 of warp w writes
//   scratch[w]; barrier; then EVERY warp reduces scratch[0..warps) padded with the identity to
//   32 lanes (same operations, same order: the same result in every thread, without warp 0
//   having to broadcast through shared memory and a third barrier); barrier, after which the
//   scratch may be reused.
// - nvf_welford<T> {mean, m2, n} (T float or double; m2 = sum of squared deviations from the
//   mean, n = count held as T): nvf_welford_combine(a, b) is Chan et al.'s parallel update,
//   stable for large means (no sum-of-squares cancellation); the empty state {0, 0, 0} is its
//   identity.  nvf_warp_allreduce_welford / nvf_block_allreduce_welford reduce states with the
//   orders above; the block version's scratch is a __shared__ T array of >= 3 * blockDim.x / 32
//   elements (means, then m2s, then counts).
// - (value, index) pairs, torch.argmax / argmin: nvf_arg_prefer<Max, T>(a, ia, b, ib) says
//   whether pair a beats pair b: a NaN value beats any number, equal values (or two NaNs) go
//   to the smaller index, else the larger (Max) or smaller value.  The rule is a strict order
//   on pairs with distinct indices, so the reduction is associative and commutative: any
//   order gives the same pair.  A thread with no data passes (identity of nvf_op_max / min,
//   NVF_ARG_NO_INDEX).  nvf_warp_argreduce / nvf_block_argreduce<Max, T>(v, i, in_v, in_i[,
//   scratch, index_scratch]) reduce with the orders above (each lane keeps its pair unless the
//   other lane's beats it); the block version's scratch arrays are __shared__ T and long long
//   arrays of >= blockDim.x / 32 elements.  Indices are long long.
#pragma once

// -- identities --------------------------------------------------------------------------------

template <typename T>
struct nvf_reduce_limits;

template <>
struct nvf_reduce_limits<float> {
  static NVF_HD float lowest() { return nvf_bits_as_float(0xff800000u); }
  static NVF_HD float highest() { return nvf_bits_as_float(0x7f800000u); }
};
template <>
struct nvf_reduce_limits<double> {
  static NVF_HD double lowest() { return nvf_bits_as_double(0xfff0000000000000ull); }
  static NVF_HD double highest() { return nvf_bits_as_double(0x7ff0000000000000ull); }
};
template <>
struct nvf_reduce_limits<int> {
  static NVF_HD int lowest() { return -2147483647 - 1; }
  static NVF_HD int highest() { return 2147483647; }
};
template <>
struct nvf_reduce_limits<long long> {
  static NVF_HD long long lowest() { return -9223372036854775807LL - 1LL; }
  static NVF_HD long long highest() { return 9223372036854775807LL; }
};

// -- ops ---------------------------------------------------------------------------------------

struct nvf_op_sum {
  template <typename T> static NVF_HD T combine(T a, T b) { return nvf_add<T>(a, b); }
  template <typename T> static NVF_HD T identity() { return static_cast<T>(0); }
};

struct nvf_op_prod {
  template <typename T> static NVF_HD T combine(T a, T b) { return nvf_mul<T>(a, b); }
  template <typename T> static NVF_HD T identity() { return static_cast<T>(1); }
};

struct nvf_op_max {
  template <typename T> static NVF_HD T combine(T a, T b) { return nvf_maximum<T>(a, b); }
  template <typename T> static NVF_HD T identity() { return nvf_reduce_limits<T>::lowest(); }
};

struct nvf_op_min {
  template <typename T> static NVF_HD T combine(T a, T b) { return nvf_minimum<T>(a, b); }
  template <typename T> static NVF_HD T identity() { return nvf_reduce_limits<T>::highest(); }
};

// -- Welford states ----------------------------------------------------------------------------

template <typename T>
struct nvf_welford {
  T mean;
  T m2;
  T n;
};

// Chan et al.: with delta = b.mean - a.mean and n = a.n + b.n,
//   mean = a.mean + delta * (b.n / n),  m2 = a.m2 + b.m2 + delta^2 * a.n * (b.n / n).
// Only differences of means enter m2, so a large common mean does not cancel.  An empty side
// (n == 0) contributes nothing: the other side is the result as it is (the update's
// delta^2 * 0 would be inf * 0 = NaN for an overflowing delta), two empty sides the empty state.
template <typename T>
NVF_HD nvf_welford<T> nvf_welford_combine(nvf_welford<T> a, nvf_welford<T> b) {
  if (a.n == static_cast<T>(0)) return b;
  if (b.n == static_cast<T>(0)) return a;
  const T n = a.n + b.n;
  const T b_share = b.n / n;
  const T delta = b.mean - a.mean;
  nvf_welford<T> r;
  r.mean = a.mean + delta * b_share;
  r.m2 = a.m2 + b.m2 + delta * delta * a.n * b_share;
  r.n = n;
  return r;
}

struct nvf_op_welford {  // the empty state, for lanes past the block's warps
  template <typename T> static NVF_HD T identity() {
    T r;
    r.mean = 0;
    r.m2 = 0;
    r.n = 0;
    return r;
  }
};

// -- shuffles ----------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ T nvf_shfl_xor(T v, int offset) {
  return __shfl_xor_sync(0xffffffffu, v, offset);
}

template <typename T>
__device__ __forceinline__ nvf_welford<T> nvf_shfl_xor(nvf_welford<T> v, int offset) {
  nvf_welford<T> r;
  r.mean = __shfl_xor_sync(0xffffffffu, v.mean, offset);
  r.m2 = __shfl_xor_sync(0xffffffffu, v.m2, offset);
  r.n = __shfl_xor_sync(0xffffffffu, v.n, offset);
  return r;
}

// -- warp and block allreduce ------------------------------------------------------------------

template <typename Op, typename T>
__device__ __forceinline__ T nvf_warp_allreduce(T v) {
  const unsigned lane = threadIdx.x & 31u;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const T other = nvf_shfl_xor(v, offset);
    // Both lanes of a pair combine (lower lane's value, upper lane's value): identical results.
    v = (lane & offset) ? Op::template combine<T>(other, v) : Op::template combine<T>(v, other);
  }
  return v;
}

template <typename Op, typename T>
__device__ __forceinline__ T nvf_block_allreduce(T v, T* scratch) {
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = threadIdx.x >> 5;
  const unsigned warps = blockDim.x >> 5;
  v = nvf_warp_allreduce<Op, T>(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T partial = lane < warps ? scratch[lane] : Op::template identity<T>();
  partial = nvf_warp_allreduce<Op, T>(partial);
  __syncthreads();  // every thread has read scratch: the next use may overwrite it
  return partial;
}

// The order of nvf_warp_allreduce, with the pair's operands chosen before the one combine: a
// Welford combine (a division and a dozen operations) is not commutative in rounding, so the
// compiler cannot merge the two combines of the generic form, and emitted both per step.
template <typename T>
__device__ __forceinline__ nvf_welford<T> nvf_warp_allreduce_welford(nvf_welford<T> v) {
  const unsigned lane = threadIdx.x & 31u;
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const nvf_welford<T> other = nvf_shfl_xor(v, offset);
    const bool upper = (lane & offset) != 0u;
    v = nvf_welford_combine<T>(upper ? other : v, upper ? v : other);
  }
  return v;
}

// Structure of arrays in a plain T scratch, so the kernel declares it like any other.
template <typename T>
__device__ __forceinline__ nvf_welford<T> nvf_block_allreduce_welford(nvf_welford<T> v,
                                                                      T* scratch) {
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = threadIdx.x >> 5;
  const unsigned warps = blockDim.x >> 5;
  v = nvf_warp_allreduce_welford<T>(v);
  if (lane == 0) {
    scratch[warp] = v.mean;
    scratch[warps + warp] = v.m2;
    scratch[2 * warps + warp] = v.n;
  }
  __syncthreads();
  nvf_welford<T> partial = nvf_op_welford::identity<nvf_welford<T> >();
  if (lane < warps) {
    partial.mean = scratch[lane];
    partial.m2 = scratch[warps + lane];
    partial.n = scratch[2 * warps + lane];
  }
  partial = nvf_warp_allreduce_welford<T>(partial);
  __syncthreads();
  return partial;
}

// The forms the emitter calls: inputs by value (so a destination may also be a source), results
// through references -- one statement per kernel-IR node.
template <typename T>
__device__ __forceinline__ void nvf_warp_welford(T& mean, T& m2, T& n, T in_mean, T in_m2,
                                                 T in_n) {
  nvf_welford<T> v;
  v.mean = in_mean;
  v.m2 = in_m2;
  v.n = in_n;
  v = nvf_warp_allreduce_welford<T>(v);
  mean = v.mean;
  m2 = v.m2;
  n = v.n;
}

template <typename T>
__device__ __forceinline__ void nvf_block_welford(T& mean, T& m2, T& n, T in_mean, T in_m2,
                                                  T in_n, T* scratch) {
  nvf_welford<T> v;
  v.mean = in_mean;
  v.m2 = in_m2;
  v.n = in_n;
  v = nvf_block_allreduce_welford<T>(v, scratch);
  mean = v.mean;
  m2 = v.m2;
  n = v.n;
}

// -- (value, index) pairs: argmax / argmin ----------------------------------------------------

#define NVF_ARG_NO_INDEX 9223372036854775807LL

template <typename T>
NVF_HD bool nvf_arg_isnan(T x) { return false; }  // integers: never NaN
template <> NVF_HD bool nvf_arg_isnan<float>(float x) { return nvf_isnan<float>(x); }
template <> NVF_HD bool nvf_arg_isnan<double>(double x) { return nvf_isnan<double>(x); }

template <bool Max, typename T>
NVF_HD bool nvf_arg_prefer(T a, long long ia, T b, long long ib) {
  const bool a_nan = nvf_arg_isnan<T>(a);
  const bool b_nan = nvf_arg_isnan<T>(b);
  if (a_nan || b_nan) return a_nan && (!b_nan || ia < ib);
  if (a == b) return ia < ib;
  return Max ? a > b : a < b;
}

template <bool Max, typename T>
__device__ __forceinline__ void nvf_warp_arg_allreduce(T& v, long long& i) {
#pragma unroll
  for (int offset = 16; offset > 0; offset >>= 1) {
    const T other_v = nvf_shfl_xor(v, offset);
    const long long other_i = nvf_shfl_xor(i, offset);
    if (nvf_arg_prefer<Max, T>(other_v, other_i, v, i)) {
      v = other_v;
      i = other_i;
    }
  }
}

template <bool Max, typename T>
__device__ __forceinline__ void nvf_warp_argreduce(T& v, long long& i, T in_v, long long in_i) {
  v = in_v;
  i = in_i;
  nvf_warp_arg_allreduce<Max, T>(v, i);
}

template <bool Max, typename T>
__device__ __forceinline__ void nvf_block_argreduce(T& v, long long& i, T in_v, long long in_i,
                                                    T* scratch, long long* index_scratch) {
  const unsigned lane = threadIdx.x & 31u;
  const unsigned warp = threadIdx.x >> 5;
  const unsigned warps = blockDim.x >> 5;
  T pv = in_v;
  long long pi = in_i;
  nvf_warp_arg_allreduce<Max, T>(pv, pi);
  if (lane == 0) {
    scratch[warp] = pv;
    index_scratch[warp] = pi;
  }
  __syncthreads();
  if (lane < warps) {
    pv = scratch[lane];
    pi = index_scratch[lane];
  } else {
    pv = Max ? nvf_reduce_limits<T>::lowest() : nvf_reduce_limits<T>::highest();
    pi = NVF_ARG_NO_INDEX;
  }
  nvf_warp_arg_allreduce<Max, T>(pv, pi);
  __syncthreads();  // every thread has read the scratch arrays: the next use may overwrite them
  v = pv;
  i = pi;
}
