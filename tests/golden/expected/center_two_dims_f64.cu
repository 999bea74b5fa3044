extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_f670b6811c58(const double* __restrict__ in0, double* __restrict__ out0, int rows, int row_numel, int stride_in0_o0, int stride_out0_o0) {
  int wl = (((int)threadIdx.x) % 32);
  int wq = (((int)threadIdx.x) / 32);
  int row = ((((int)blockIdx.x) * 4) + wq);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = (row * stride_out0_o0);
  double acc1 = 0.0;
  if ((row < rows)) {
    for (int col = wl; col < row_numel; col += 32) {
      double r_in0[1];
      nvf_load<double, 1>(r_in0, in0 + (ro_in0 + col));
      acc1 = ((acc1) + (r_in0[0]));
    }
  }
  double v1;
  v1 = nvf_warp_allreduce<nvf_op_sum, double>(acc1);
  double v4 = ((v1) / (nvf_cast<double, long long>(nvf_cast<long long, int>(row_numel))));
  if ((row < rows)) {
    for (int col = wl; col < row_numel; col += 32) {
      double r_in0[1];
      nvf_load<double, 1>(r_in0, in0 + (ro_in0 + col));
      double v5 = ((r_in0[0]) - (v4));
      double r_out0[1];
      r_out0[0] = v5;
      nvf_store<double, 1>(out0 + (ro_out0 + col), r_out0);
    }
  }
}
