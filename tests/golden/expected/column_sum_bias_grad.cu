extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_621d68d12406(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_i0) {
  int tx = (((int)threadIdx.x) % 32);
  int ty = (((int)threadIdx.x) / 32);
  int row = ((((int)blockIdx.x) * 128) + (tx * 4));
  int ro_in0 = row;
  int ro_out0 = row;
  float acc1[4];
  #pragma unroll
  for (int pl = 0; pl < 4; pl += 1) {
    acc1[pl] = 0.0f;
  }
  if ((row < rows)) {
    for (int col = ty; col < row_numel; col += 4) {
      float q_in0[4];
      nvf_load_vector<float, 4>(q_in0, in0 + (ro_in0 + (col * stride_in0_i0)));
      #pragma unroll
      for (int pl = 0; pl < 4; pl += 1) {
        acc1[pl] = ((acc1[pl]) + (q_in0[pl]));
      }
    }
  }
  float v1[4];
  __shared__ float col0_float32[128];
  #pragma unroll
  for (int pl = 0; pl < 4; pl += 1) {
    col0_float32[((int)threadIdx.x)] = acc1[pl];
    __syncthreads();
    v1[pl] = 0.0f;
    for (int j_v1 = 0; j_v1 < 4; j_v1 += 1) {
      v1[pl] = ((v1[pl]) + (col0_float32[((j_v1 * 32) + tx)]));
    }
    __syncthreads();
  }
  if (((ty == 0) && (row < rows))) {
    float w_out0[4];
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      w_out0[pl] = v1[pl];
    }
    nvf_store_vector<float, 4>(out0 + ro_out0, w_out0);
  }
}
