extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_a4640bfae702(const nvf_half* __restrict__ in0, nvf_half* __restrict__ out0, int numel) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 8);
  if ((base < numel)) {
    if (((base + 8) <= numel)) {
      int off_in0 = base;
      int off_out0 = base;
      nvf_half r_in0[8];
      nvf_load_vector<nvf_half, 8>(r_in0, in0 + off_in0);
      nvf_half r_out0[8];
      #pragma unroll
      for (int lane = 0; lane < 8; lane += 1) {
        float v1 = nvf_cast<float, nvf_half>(r_in0[lane]);
        float v3 = ((v1) * (0.5f));
        r_out0[lane] = nvf_cast<nvf_half, float>(v3);
      }
      nvf_store_vector<nvf_half, 8>(out0 + off_out0, r_out0);
    }
    if ((numel < (base + 8))) {
      #pragma unroll 1
      for (int tail = 0; tail < 8; tail += 1) {
        int e = (base + tail);
        if ((e < numel)) {
          int off_in0 = e;
          int off_out0 = e;
          nvf_half r_in0[1];
          nvf_load<nvf_half, 1>(r_in0, in0 + off_in0);
          nvf_half r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            float v1 = nvf_cast<float, nvf_half>(r_in0[0]);
            float v3 = ((v1) * (0.5f));
            r_out0[lane] = nvf_cast<nvf_half, float>(v3);
          }
          nvf_store<nvf_half, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
