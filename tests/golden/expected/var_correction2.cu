extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_db0e163ff5f4(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_o0) {
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
  float wpivot1 = 0.0f;
  for (int col = 0; col < row_numel; col += row_numel) {
    float r_in0[1];
    nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
    wpivot1 = r_in0[0];
  }
  float wn1 = 0.0f;
  float wmean1 = 0.0f;
  float wm21 = 0.0f;
  #pragma unroll
  for (int pk = 0; pk < 4; pk += 1) {
    int col = (((((int)threadIdx.x) + ((pk / 4) * ((int)blockDim.x))) * 4) + (pk % 4));
    if ((col < row_numel)) {
      float wd1 = ((p_in0[pk]) - (wpivot1));
      wn1 = ((wn1) + (1.0f));
      float wdelta1 = ((wd1) - (wmean1));
      wmean1 = ((wmean1) + (((wdelta1) / (wn1))));
      wm21 = ((wm21) + (((wdelta1) * (((wd1) - (wmean1))))));
    }
  }
  __shared__ float wel_float1[12];
  float wmean_row1;
  float wm2_row1;
  float wn_row1;
  nvf_block_welford<float>(wmean_row1, wm2_row1, wn_row1, wmean1, wm21, wn1, wel_float1);
  float v1 = wm2_row1;
  float v8 = ((v1) / (nvf_maximum<float>(((nvf_cast<float, long long>(nvf_cast<long long, int>(row_numel))) - (2.0f)), 0.0f)));
  if ((((int)threadIdx.x) == 0)) {
    float r_out0[1];
    r_out0[0] = v8;
    nvf_store<float, 1>(out0 + ro_out0, r_out0);
  }
}
