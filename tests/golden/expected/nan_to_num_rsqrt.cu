extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_2852689ac41b(const float* __restrict__ in0, float* __restrict__ out0, int numel) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 4);
  if ((base < numel)) {
    if (((base + 4) <= numel)) {
      int off_in0 = base;
      int off_out0 = base;
      float r_in0[4];
      nvf_load_vector<float, 4>(r_in0, in0 + off_in0);
      float r_out0[4];
      #pragma unroll
      for (int lane = 0; lane < 4; lane += 1) {
        float v1 = nvf_rsqrt<float>(r_in0[lane]);
        bool v3 = ((v1) == (nvf_bits_as_float(0x7f800000u)));
        bool v6 = ((v1) == (nvf_bits_as_float(0xff800000u)));
        bool v8 = nvf_isnan<float>(v1);
        float v10 = ((v8) ? (0.0f) : (v1));
        float v11 = ((v6) ? ((-3.4028235e+38f)) : (v10));
        float v12 = ((v3) ? (3.4028235e+38f) : (v11));
        r_out0[lane] = v12;
      }
      nvf_store_vector<float, 4>(out0 + off_out0, r_out0);
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
          float r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            float v1 = nvf_rsqrt<float>(r_in0[0]);
            bool v3 = ((v1) == (nvf_bits_as_float(0x7f800000u)));
            bool v6 = ((v1) == (nvf_bits_as_float(0xff800000u)));
            bool v8 = nvf_isnan<float>(v1);
            float v10 = ((v8) ? (0.0f) : (v1));
            float v11 = ((v6) ? ((-3.4028235e+38f)) : (v10));
            float v12 = ((v3) ? (3.4028235e+38f) : (v11));
            r_out0[lane] = v12;
          }
          nvf_store<float, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
