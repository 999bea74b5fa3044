// nvf_memory.cuh -- global memory moves between tensors and register arrays.
//
// Contract: nvf_load<T, N>(dst, src) copies src[0..N) into dst[0..N) element by element;
// nvf_load_vector<T, N> does the same as ONE aligned N*sizeof(T)-byte transaction (the caller
// guarantees src is aligned to N*sizeof(T); N*sizeof(T) <= 16).  Stores mirror them.
// Requires nvf_vec from nvf_types.cuh.
#pragma once

template <typename T, int N>
__device__ __forceinline__ void nvf_load(T (&dst)[N], const T* __restrict__ src) {
#pragma unroll
  for (int i = 0; i < N; ++i) dst[i] = src[i];
}

template <typename T, int N>
__device__ __forceinline__ void nvf_load_vector(T (&dst)[N], const T* __restrict__ src) {
  const nvf_vec<T, N> v = *reinterpret_cast<const nvf_vec<T, N>*>(src);
#pragma unroll
  for (int i = 0; i < N; ++i) dst[i] = v.v[i];
}

template <typename T, int N>
__device__ __forceinline__ void nvf_store(T* __restrict__ dst, const T (&src)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) dst[i] = src[i];
}

template <typename T, int N>
__device__ __forceinline__ void nvf_store_vector(T* __restrict__ dst, const T (&src)[N]) {
  nvf_vec<T, N> v;
#pragma unroll
  for (int i = 0; i < N; ++i) v.v[i] = src[i];
  *reinterpret_cast<nvf_vec<T, N>*>(dst) = v;
}
