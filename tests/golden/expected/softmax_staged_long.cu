extern "C" __global__ void __launch_bounds__(1024, 1)
nvfuse_red_0bc253c27e0e(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_o0, int stride_out0_o0, int smem_cols) {
  int row = ((int)blockIdx.x);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = (row * stride_out0_o0);
  extern __shared__ __align__(16) unsigned char nvf_dyn_smem[];
  float* s_in0 = reinterpret_cast<float*>(nvf_dyn_smem + 0);
  for (int col0 = (((int)threadIdx.x) * 4); col0 < row_numel; col0 += (((int)blockDim.x) * 4)) {
    float q_in0[4];
    nvf_load_vector<float, 4>(q_in0, in0 + (ro_in0 + col0));
    s_in0[(col0 + 0)] = q_in0[0];
    s_in0[(col0 + 1)] = q_in0[1];
    s_in0[(col0 + 2)] = q_in0[2];
    s_in0[(col0 + 3)] = q_in0[3];
  }
  __shared__ float red_f32[32];
  float acc1 = nvf_bits_as_float(0xff800000u);
  for (int col0 = (((int)threadIdx.x) * 4); col0 < row_numel; col0 += (((int)blockDim.x) * 4)) {
    float q_in0[4];
    q_in0[0] = s_in0[(col0 + 0)];
    q_in0[1] = s_in0[(col0 + 1)];
    q_in0[2] = s_in0[(col0 + 2)];
    q_in0[3] = s_in0[(col0 + 3)];
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      int col = (col0 + pl);
      acc1 = nvf_maximum<float>(acc1, q_in0[pl]);
    }
  }
  float v1;
  v1 = nvf_block_allreduce<nvf_op_max, float>(acc1, red_f32);
  float acc4 = 0.0f;
  for (int col0 = (((int)threadIdx.x) * 4); col0 < row_numel; col0 += (((int)blockDim.x) * 4)) {
    float q_in0[4];
    q_in0[0] = s_in0[(col0 + 0)];
    q_in0[1] = s_in0[(col0 + 1)];
    q_in0[2] = s_in0[(col0 + 2)];
    q_in0[3] = s_in0[(col0 + 3)];
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      int col = (col0 + pl);
      float v2 = ((q_in0[pl]) - (v1));
      float v3 = expf(v2);
      acc4 = ((acc4) + (v3));
    }
  }
  float v4;
  v4 = nvf_block_allreduce<nvf_op_sum, float>(acc4, red_f32);
  for (int col0 = (((int)threadIdx.x) * 4); col0 < row_numel; col0 += (((int)blockDim.x) * 4)) {
    float q_in0[4];
    q_in0[0] = s_in0[(col0 + 0)];
    q_in0[1] = s_in0[(col0 + 1)];
    q_in0[2] = s_in0[(col0 + 2)];
    q_in0[3] = s_in0[(col0 + 3)];
    float w_out0[4];
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      int col = (col0 + pl);
      float v2 = ((q_in0[pl]) - (v1));
      float v3 = expf(v2);
      float v5 = ((v3) / (v4));
      w_out0[pl] = v5;
    }
    nvf_store_vector<float, 4>(out0 + (ro_out0 + col0), w_out0);
  }
}
