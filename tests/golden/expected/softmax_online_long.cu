extern "C" __global__ void __launch_bounds__(1024, 1)
nvfuse_red_ed2aa31b12a4(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_o0, int stride_out0_o0) {
  int row = ((int)blockIdx.x);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = (row * stride_out0_o0);
  __shared__ float red_f32[32];
  float om1 = nvf_bits_as_float(0xff800000u);
  float os1 = 0.0f;
  for (int col = ((int)threadIdx.x); col < row_numel; col += ((int)blockDim.x)) {
    float r_in0[1];
    nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
    float omn1 = nvf_maximum<float>(om1, r_in0[0]);
    os1 = ((((os1) * (((((om1) == (omn1))) ? (1.0f) : (expf(((om1) - (omn1)))))))) + (((((r_in0[0]) == (nvf_bits_as_float(0xff800000u)))) ? (0.0f) : (expf(((r_in0[0]) - (omn1)))))));
    om1 = omn1;
  }
  float v1;
  v1 = nvf_block_allreduce<nvf_op_max, float>(om1, red_f32);
  float osp1 = ((os1) * (((((om1) == (v1))) ? (1.0f) : (expf(((om1) - (v1)))))));
  float osum1;
  osum1 = nvf_block_allreduce<nvf_op_sum, float>(osp1, red_f32);
  float v4 = ((((v1) == (nvf_bits_as_float(0xff800000u)))) ? (nvf_bits_as_float(0x7fc00000u)) : (osum1));
  for (int col = ((int)threadIdx.x); col < row_numel; col += ((int)blockDim.x)) {
    float r_in0[1];
    nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
    float v2 = ((r_in0[0]) - (v1));
    float v3 = expf(v2);
    float v5 = ((v3) / (v4));
    float r_out0[1];
    r_out0[0] = v5;
    nvf_store<float, 1>(out0 + (ro_out0 + col), r_out0);
  }
}
