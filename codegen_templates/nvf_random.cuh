// nvf_random.cuh -- counter-based random numbers (Philox4x32-10, Salmon et al., SC'11).
//
// Contract: nvf_rand_uniform(idx, seed, stream) is a float in [0, 1) that depends only on its
// arguments: element `idx` (>= 0) of random stream `stream` of the launch seeded with `seed`.
// Counter = (idx low, idx high, stream, 0), key = (seed low, seed high), ten rounds; the result
// is the first output word's top 24 bits times 2^-24 (every float32 of that form is exact).
// nvfuse/interpret/random.py computes the same bits on the CPU.
#pragma once

__host__ __device__ __forceinline__ unsigned nvf_mulhilo32(unsigned a, unsigned b,
                                                          unsigned* hi) {
  const unsigned long long product = (unsigned long long)a * (unsigned long long)b;
  *hi = (unsigned)(product >> 32);
  return (unsigned)product;
}

__host__ __device__ __forceinline__ float nvf_rand_uniform(long long idx, long long seed,
                                                           long long stream) {
  unsigned c0 = (unsigned)idx, c1 = (unsigned)((unsigned long long)idx >> 32);
  unsigned c2 = (unsigned)stream, c3 = 0u;
  unsigned k0 = (unsigned)seed, k1 = (unsigned)((unsigned long long)seed >> 32);
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    unsigned hi0, hi1;
    const unsigned lo0 = nvf_mulhilo32(0xD2511F53u, c0, &hi0);
    const unsigned lo1 = nvf_mulhilo32(0xCD9E8D57u, c2, &hi1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += 0x9E3779B9u;  // the Weyl key schedule (golden ratio, sqrt(3) - 1)
    k1 += 0xBB67AE85u;
  }
  return (float)(c0 >> 8) * 5.9604644775390625e-08f;  // 2^-24
}
