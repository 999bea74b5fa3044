extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_89f07e895e57(const nvf_half* __restrict__ in0, const nvf_half* __restrict__ in1, nvf_half* __restrict__ out0, int numel, long long seed) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 8);
  if ((base < numel)) {
    if (((base + 8) <= numel)) {
      int off_in0 = 0;
      int off_in1 = base;
      int off_out0 = base;
      nvf_half r_in0[1];
      nvf_load<nvf_half, 1>(r_in0, in0 + off_in0);
      nvf_half r_in1[8];
      nvf_load_vector<nvf_half, 8>(r_in1, in1 + off_in1);
      nvf_half r_out0[8];
      #pragma unroll
      for (int lane = 0; lane < 8; lane += 1) {
        float v1 = nvf_rand_uniform(nvf_cast<long long, int>((base + lane)), seed, 0LL);
        bool v2 = ((v1) < (0.8f));
        nvf_half v3 = nvf_cast<nvf_half, bool>(v2);
        float v4 = nvf_cast<float, nvf_half>(v3);
        float v6 = ((v4) * (1.25f));
        nvf_half v7 = nvf_cast<nvf_half, float>(v6);
        float v8 = nvf_cast<float, nvf_half>(v7);
        float v10 = nvf_cast<float, nvf_half>(r_in1[lane]);
        float v11 = ((v10) * (v8));
        r_out0[lane] = nvf_cast<nvf_half, float>(v11);
      }
      nvf_store_vector<nvf_half, 8>(out0 + off_out0, r_out0);
    }
    if ((numel < (base + 8))) {
      #pragma unroll 1
      for (int tail = 0; tail < 8; tail += 1) {
        int e = (base + tail);
        if ((e < numel)) {
          int off_in0 = 0;
          int off_in1 = e;
          int off_out0 = e;
          nvf_half r_in0[1];
          nvf_load<nvf_half, 1>(r_in0, in0 + off_in0);
          nvf_half r_in1[1];
          nvf_load<nvf_half, 1>(r_in1, in1 + off_in1);
          nvf_half r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            float v1 = nvf_rand_uniform(nvf_cast<long long, int>((e + lane)), seed, 0LL);
            bool v2 = ((v1) < (0.8f));
            nvf_half v3 = nvf_cast<nvf_half, bool>(v2);
            float v4 = nvf_cast<float, nvf_half>(v3);
            float v6 = ((v4) * (1.25f));
            nvf_half v7 = nvf_cast<nvf_half, float>(v6);
            float v8 = nvf_cast<float, nvf_half>(v7);
            float v10 = nvf_cast<float, nvf_half>(r_in1[0]);
            float v11 = ((v10) * (v8));
            r_out0[lane] = nvf_cast<nvf_half, float>(v11);
          }
          nvf_store<nvf_half, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
