extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_428781f94535(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_i0) {
  int tx = (((int)threadIdx.x) % 32);
  int ty = (((int)threadIdx.x) / 32);
  int row = ((((int)blockIdx.x) * 32) + tx);
  int ro_in0 = row;
  int ro_out0 = row;
  float acc1 = 0.0f;
  if ((row < rows)) {
    for (int col = ty; col < row_numel; col += 4) {
      float r_in0[1];
      nvf_load<float, 1>(r_in0, in0 + (ro_in0 + (col * stride_in0_i0)));
      acc1 = ((acc1) + (r_in0[0]));
    }
  }
  float v1;
  __shared__ float col0_float32[128];
  col0_float32[((int)threadIdx.x)] = acc1;
  __syncthreads();
  v1 = 0.0f;
  for (int j_v1 = 0; j_v1 < 4; j_v1 += 1) {
    v1 = ((v1) + (col0_float32[((j_v1 * 32) + tx)]));
  }
  __syncthreads();
  if (((ty == 0) && (row < rows))) {
    float r_out0[1];
    r_out0[0] = v1;
    nvf_store<float, 1>(out0 + ro_out0, r_out0);
  }
}
