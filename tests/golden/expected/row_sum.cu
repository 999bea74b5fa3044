extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_d6a19c017a2a(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_o0) {
  int row = ((int)blockIdx.x);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = row;
  __shared__ float red_f32[4];
  float acc1 = 0.0f;
  for (int col = ((int)threadIdx.x); col < row_numel; col += ((int)blockDim.x)) {
    float r_in0[1];
    nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
    acc1 = ((acc1) + (r_in0[0]));
  }
  float v1;
  v1 = nvf_block_allreduce<nvf_op_sum, float>(acc1, red_f32);
  if ((((int)threadIdx.x) == 0)) {
    float r_out0[1];
    r_out0[0] = v1;
    nvf_store<float, 1>(out0 + ro_out0, r_out0);
  }
}
