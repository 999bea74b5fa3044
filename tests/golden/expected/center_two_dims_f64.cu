extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_2c3653d18aa5(const double* __restrict__ in0, double* __restrict__ out0, int rows, int row_numel, int stride_in0_o0, int stride_out0_o0) {
  int row = ((int)blockIdx.x);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = (row * stride_out0_o0);
  __shared__ double red_f64[4];
  double acc1 = 0.0;
  for (int col = ((int)threadIdx.x); col < row_numel; col += ((int)blockDim.x)) {
    double r_in0[1];
    nvf_load<double, 1>(r_in0, in0 + (ro_in0 + col));
    acc1 = ((acc1) + (r_in0[0]));
  }
  double v1;
  v1 = nvf_block_allreduce<nvf_op_sum, double>(acc1, red_f64);
  double v4 = ((v1) / (nvf_cast<double, long long>(nvf_cast<long long, int>(row_numel))));
  for (int col = ((int)threadIdx.x); col < row_numel; col += ((int)blockDim.x)) {
    double r_in0[1];
    nvf_load<double, 1>(r_in0, in0 + (ro_in0 + col));
    double v5 = ((r_in0[0]) - (v4));
    double r_out0[1];
    r_out0[0] = v5;
    nvf_store<double, 1>(out0 + (ro_out0 + col), r_out0);
  }
}
