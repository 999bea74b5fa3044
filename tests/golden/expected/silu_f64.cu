extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_2536777eed50(const double* __restrict__ in0, double* __restrict__ out0, int numel) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 2);
  if ((base < numel)) {
    if (((base + 2) <= numel)) {
      int off_in0 = base;
      int off_out0 = base;
      double r_in0[2];
      nvf_load_vector<double, 2>(r_in0, in0 + off_in0);
      double r_out0[2];
      #pragma unroll
      for (int lane = 0; lane < 2; lane += 1) {
        double v2 = (-(r_in0[lane]));
        double v3 = exp(v2);
        double v4 = ((1.0) + (v3));
        double v5 = ((1.0) / (v4));
        double v6 = ((r_in0[lane]) * (v5));
        r_out0[lane] = v6;
      }
      nvf_store_vector<double, 2>(out0 + off_out0, r_out0);
    }
    if ((numel < (base + 2))) {
      #pragma unroll 1
      for (int tail = 0; tail < 2; tail += 1) {
        int e = (base + tail);
        if ((e < numel)) {
          int off_in0 = e;
          int off_out0 = e;
          double r_in0[1];
          nvf_load<double, 1>(r_in0, in0 + off_in0);
          double r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            double v2 = (-(r_in0[0]));
            double v3 = exp(v2);
            double v4 = ((1.0) + (v3));
            double v5 = ((1.0) / (v4));
            double v6 = ((r_in0[0]) * (v5));
            r_out0[lane] = v6;
          }
          nvf_store<double, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
