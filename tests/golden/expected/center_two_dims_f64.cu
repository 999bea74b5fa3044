extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_dbfc80ad0833(const double* __restrict__ in0, double* __restrict__ out0, int rows, int row_numel, int stride_in0_o0, int stride_out0_o0) {
  int row = ((int)blockIdx.x);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = (row * stride_out0_o0);
  double p_in0[4];
  #pragma unroll
  for (int pk = 0; pk < 2; pk += 1) {
    int col = ((((int)threadIdx.x) + (pk * ((int)blockDim.x))) * 2);
    if ((col < row_numel)) {
      double r_in0[2];
      nvf_load_vector<double, 2>(r_in0, in0 + (ro_in0 + col));
      p_in0[((pk * 2) + 0)] = r_in0[0];
      p_in0[((pk * 2) + 1)] = r_in0[1];
    }
  }
  __shared__ double red_f64[4];
  double acc1 = 0.0;
  #pragma unroll
  for (int pk = 0; pk < 4; pk += 1) {
    int col = (((((int)threadIdx.x) + ((pk / 2) * ((int)blockDim.x))) * 2) + (pk % 2));
    if ((col < row_numel)) {
      acc1 = ((acc1) + (p_in0[pk]));
    }
  }
  double v1;
  v1 = nvf_block_allreduce<nvf_op_sum, double>(acc1, red_f64);
  double v4 = ((v1) / (nvf_cast<double, long long>(nvf_cast<long long, int>(row_numel))));
  #pragma unroll
  for (int pk = 0; pk < 4; pk += 1) {
    int col = (((((int)threadIdx.x) + ((pk / 2) * ((int)blockDim.x))) * 2) + (pk % 2));
    if ((col < row_numel)) {
      double v5 = ((p_in0[pk]) - (v4));
      double r_out0[1];
      r_out0[0] = v5;
      nvf_store<double, 1>(out0 + (ro_out0 + col), r_out0);
    }
  }
}
