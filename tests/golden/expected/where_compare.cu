extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_6d0ab731a153(const float* __restrict__ in0, const float* __restrict__ in1, float* __restrict__ out0, int numel) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 4);
  if ((base < numel)) {
    if (((base + 4) <= numel)) {
      int off_in0 = base;
      int off_in1 = base;
      int off_out0 = base;
      float r_in0[4];
      nvf_load_vector<float, 4>(r_in0, in0 + off_in0);
      float r_in1[4];
      nvf_load_vector<float, 4>(r_in1, in1 + off_in1);
      float r_out0[4];
      #pragma unroll
      for (int lane = 0; lane < 4; lane += 1) {
        bool v2 = ((r_in0[lane]) > (r_in1[lane]));
        float v4 = ((r_in1[lane]) * (2.0f));
        float v5 = ((v2) ? (r_in0[lane]) : (v4));
        r_out0[lane] = v5;
      }
      nvf_store_vector<float, 4>(out0 + off_out0, r_out0);
    }
    if ((numel < (base + 4))) {
      #pragma unroll 1
      for (int tail = 0; tail < 4; tail += 1) {
        int e = (base + tail);
        if ((e < numel)) {
          int off_in0 = e;
          int off_in1 = e;
          int off_out0 = e;
          float r_in0[1];
          nvf_load<float, 1>(r_in0, in0 + off_in0);
          float r_in1[1];
          nvf_load<float, 1>(r_in1, in1 + off_in1);
          float r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            bool v2 = ((r_in0[0]) > (r_in1[0]));
            float v4 = ((r_in1[0]) * (2.0f));
            float v5 = ((v2) ? (r_in0[0]) : (v4));
            r_out0[lane] = v5;
          }
          nvf_store<float, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
