extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_ca0a7c5bdbd6(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_o0) {
  int row = ((int)blockIdx.x);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = row;
  float p_in0[4];
  #pragma unroll
  for (int pk = 0; pk < 1; pk += 1) {
    int col = ((((int)threadIdx.x) + (pk * ((int)blockDim.x))) * 4);
    if ((col < row_numel)) {
      float r_in0[4];
      nvf_load_vector<float, 4>(r_in0, in0 + (ro_in0 + col));
      p_in0[((pk * 4) + 0)] = r_in0[0];
      p_in0[((pk * 4) + 1)] = r_in0[1];
      p_in0[((pk * 4) + 2)] = r_in0[2];
      p_in0[((pk * 4) + 3)] = r_in0[3];
    }
  }
  __shared__ float red_f32[4];
  float acc1 = 0.0f;
  #pragma unroll
  for (int pk = 0; pk < 4; pk += 1) {
    int col = (((((int)threadIdx.x) + ((pk / 4) * ((int)blockDim.x))) * 4) + (pk % 4));
    if ((col < row_numel)) {
      acc1 = ((acc1) + (p_in0[pk]));
    }
  }
  float v1;
  v1 = nvf_block_allreduce<nvf_op_sum, float>(acc1, red_f32);
  if ((((int)threadIdx.x) == 0)) {
    float r_out0[1];
    r_out0[0] = v1;
    nvf_store<float, 1>(out0 + ro_out0, r_out0);
  }
}
