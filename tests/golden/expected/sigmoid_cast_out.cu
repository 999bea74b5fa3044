extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_90273882423f(const float* __restrict__ in0, nvf_half* __restrict__ out0, int numel) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 4);
  if ((base < numel)) {
    if (((base + 4) <= numel)) {
      int off_in0 = base;
      int off_out0 = base;
      float r_in0[4];
      nvf_load_vector<float, 4>(r_in0, in0 + off_in0);
      nvf_half r_out0[4];
      #pragma unroll
      for (int lane = 0; lane < 4; lane += 1) {
        float v2 = (-(r_in0[lane]));
        float v3 = expf(v2);
        float v4 = ((1.0f) + (v3));
        float v5 = ((1.0f) / (v4));
        r_out0[lane] = nvf_cast<nvf_half, float>(v5);
      }
      nvf_store_vector<nvf_half, 4>(out0 + off_out0, r_out0);
    }
    if ((numel < (base + 4))) {
      #pragma unroll 1
      for (int tail = 0; tail < 4; tail += 1) {
        int e = (base + tail);
        if ((e < numel)) {
          int off_in0 = e;
          int off_out0 = e;
          float r_in0[1];
          nvf_load<float, 1>(r_in0, in0 + off_in0);
          nvf_half r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            float v2 = (-(r_in0[0]));
            float v3 = expf(v2);
            float v4 = ((1.0f) + (v3));
            float v5 = ((1.0f) / (v4));
            r_out0[lane] = nvf_cast<nvf_half, float>(v5);
          }
          nvf_store<nvf_half, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
