extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_9776d79d6780(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_o0) {
  int wl = (((int)threadIdx.x) % 32);
  int wq = (((int)threadIdx.x) / 32);
  int row = ((((int)blockIdx.x) * 4) + wq);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = row;
  float acc1 = 0.0f;
  if ((row < rows)) {
    for (int col = wl; col < row_numel; col += 32) {
      float r_in0[1];
      nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
      acc1 = ((acc1) + (r_in0[0]));
    }
  }
  float v1;
  v1 = nvf_warp_allreduce<nvf_op_sum, float>(acc1);
  if (((wl == 0) && (row < rows))) {
    float r_out0[1];
    r_out0[0] = v1;
    nvf_store<float, 1>(out0 + ro_out0, r_out0);
  }
}
