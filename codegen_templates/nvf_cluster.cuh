// nvf_cluster.cuh -- thread-block clusters (sm_90 and later): the cluster barrier, and the
// allreduce of one value (or one Welford state) per block through distributed shared memory.
//
// Contract:
// - Needs nvf_types.cuh, nvf_math.cuh and nvf_reduce.cuh before it (the ops and
//   nvf_welford_combine) and no CUDA toolkit header: the cluster instructions are PTX inline
//   assembly.  Inlined only into kernels with a kernel-IR ClusterReduce / ClusterSync, which
//   are declared with __cluster_dims__(Size, 1, 1) and compiled for sm_90 or later.
// - nvf_cluster_sync(): barrier.cluster arrive (release) then wait (acquire), by every thread
//   of the cluster: every shared-memory write of the cluster's blocks before it is visible to
//   every read after it.  The non-.aligned forms: the threads of a warp need not be converged.
//   On sm_90 the release is a GPU-scope memory barrier (it waits for the thread's outstanding
//   global stores) and the acquire invalidates L1.
// - nvf_cluster_sync_relaxed(): the same barrier without the memory ordering (a relaxed
//   arrive): every thread of the cluster has arrived, nothing more.  Ends a kernel whose
//   blocks read each other's shared memory (each read done before its thread arrived), without
//   waiting for the kernel's last global stores.
// - nvf_cluster_load<T>(p, rank): the element at shared address p (a __shared__ object of the
//   calling block) in the shared memory of the cluster's block `rank` (mapa +
//   ld.shared::cluster), for T in {float, double, int, long long}.  That block must be running:
//   a barrier reached after its start and before its exit orders the access.
// - nvf_cluster_allreduce<Size, Op, T>(v, slot): v is the same in every thread of the block;
//   thread 0 writes it to slot[0], cluster barrier, then every thread folds slot[0] of the
//   ranks from 0 up: r = slot@0; r = Op::combine(r, slot@q) for q = 1 .. Size - 1.  Every block
//   of the cluster gets the same bits; the kernel-IR interpreter reproduces the order.  slot
//   is a __shared__ T[1] that no other call uses (another block may still be reading it after
//   this one returns), and the kernel ends with a cluster barrier so that no block exits
//   while another may read its slots.
// - nvf_cluster_welford<Size, T>(mean, m2, n, in_mean, in_m2, in_n, slot): the same for
//   Welford states with nvf_welford_combine; slot is a __shared__ T[3].
#pragma once

// -- cluster barrier ---------------------------------------------------------------------------

__device__ __forceinline__ void nvf_cluster_sync() {
  asm volatile("barrier.cluster.arrive.release;\n\tbarrier.cluster.wait.acquire;" ::: "memory");
}

__device__ __forceinline__ void nvf_cluster_sync_relaxed() {
  asm volatile("barrier.cluster.arrive.relaxed;\n\tbarrier.cluster.wait;" ::: "memory");
}

// -- distributed shared memory -----------------------------------------------------------------

__device__ __forceinline__ unsigned nvf_cluster_address(const void* p, unsigned rank) {
  const unsigned local = static_cast<unsigned>(__cvta_generic_to_shared(p));
  unsigned remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
  return remote;
}

template <typename T>
__device__ T nvf_cluster_load(const T* p, unsigned rank);

template <>
__device__ __forceinline__ float nvf_cluster_load<float>(const float* p, unsigned rank) {
  float v;
  asm volatile("ld.shared::cluster.f32 %0, [%1];"
               : "=f"(v) : "r"(nvf_cluster_address(p, rank)) : "memory");
  return v;
}

template <>
__device__ __forceinline__ double nvf_cluster_load<double>(const double* p, unsigned rank) {
  double v;
  asm volatile("ld.shared::cluster.f64 %0, [%1];"
               : "=d"(v) : "r"(nvf_cluster_address(p, rank)) : "memory");
  return v;
}

template <>
__device__ __forceinline__ int nvf_cluster_load<int>(const int* p, unsigned rank) {
  int v;
  asm volatile("ld.shared::cluster.s32 %0, [%1];"
               : "=r"(v) : "r"(nvf_cluster_address(p, rank)) : "memory");
  return v;
}

template <>
__device__ __forceinline__ long long nvf_cluster_load<long long>(const long long* p,
                                                                 unsigned rank) {
  long long v;
  asm volatile("ld.shared::cluster.s64 %0, [%1];"
               : "=l"(v) : "r"(nvf_cluster_address(p, rank)) : "memory");
  return v;
}

// -- cluster allreduce -------------------------------------------------------------------------

template <unsigned Size, typename Op, typename T>
__device__ __forceinline__ T nvf_cluster_allreduce(T v, T* slot) {
  if (threadIdx.x == 0) slot[0] = v;
  nvf_cluster_sync();
  T r = nvf_cluster_load<T>(slot, 0u);
#pragma unroll
  for (unsigned q = 1; q < Size; ++q) r = Op::template combine<T>(r, nvf_cluster_load<T>(slot, q));
  return r;
}

template <unsigned Size, typename T>
__device__ __forceinline__ void nvf_cluster_welford(T& mean, T& m2, T& n, T in_mean, T in_m2,
                                                    T in_n, T* slot) {
  if (threadIdx.x == 0) {
    slot[0] = in_mean;
    slot[1] = in_m2;
    slot[2] = in_n;
  }
  nvf_cluster_sync();
  nvf_welford<T> r;
  r.mean = nvf_cluster_load<T>(slot, 0u);
  r.m2 = nvf_cluster_load<T>(slot + 1, 0u);
  r.n = nvf_cluster_load<T>(slot + 2, 0u);
#pragma unroll
  for (unsigned q = 1; q < Size; ++q) {
    nvf_welford<T> b;
    b.mean = nvf_cluster_load<T>(slot, q);
    b.m2 = nvf_cluster_load<T>(slot + 1, q);
    b.n = nvf_cluster_load<T>(slot + 2, q);
    r = nvf_welford_combine(r, b);
  }
  mean = r.mean;
  m2 = r.m2;
  n = r.n;
}
