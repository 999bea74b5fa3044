extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_c11a40f2e0e9(const nvf_half* __restrict__ in0, const float* __restrict__ in1, nvf_half* __restrict__ out0, int numel) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 8);
  if ((base < numel)) {
    if (((base + 8) <= numel)) {
      int off_in0 = base;
      int off_in1 = 0;
      int off_out0 = base;
      nvf_half r_in0[8];
      nvf_load_vector<nvf_half, 8>(r_in0, in0 + off_in0);
      float r_in1[1];
      nvf_load<float, 1>(r_in1, in1 + off_in1);
      nvf_half r_out0[8];
      nvf_half v3 = nvf_cast<nvf_half, float>(r_in1[0]);
      float v4 = nvf_cast<float, nvf_half>(v3);
      #pragma unroll
      for (int lane = 0; lane < 8; lane += 1) {
        float v2 = nvf_cast<float, nvf_half>(r_in0[lane]);
        float v5 = ((v2) * (v4));
        r_out0[lane] = nvf_cast<nvf_half, float>(v5);
      }
      nvf_store_vector<nvf_half, 8>(out0 + off_out0, r_out0);
    }
    if ((numel < (base + 8))) {
      #pragma unroll 1
      for (int tail = 0; tail < 8; tail += 1) {
        int e = (base + tail);
        if ((e < numel)) {
          int off_in0 = e;
          int off_in1 = 0;
          int off_out0 = e;
          nvf_half r_in0[1];
          nvf_load<nvf_half, 1>(r_in0, in0 + off_in0);
          float r_in1[1];
          nvf_load<float, 1>(r_in1, in1 + off_in1);
          nvf_half r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            float v2 = nvf_cast<float, nvf_half>(r_in0[0]);
            nvf_half v3 = nvf_cast<nvf_half, float>(r_in1[0]);
            float v4 = nvf_cast<float, nvf_half>(v3);
            float v5 = ((v2) * (v4));
            r_out0[lane] = nvf_cast<nvf_half, float>(v5);
          }
          nvf_store<nvf_half, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
