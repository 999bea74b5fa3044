extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_8f2918d84585(const float* __restrict__ in0, float* __restrict__ out0, int rows, int row_numel, int stride_in0_o0) {
  int wl = (((int)threadIdx.x) % 32);
  int wq = (((int)threadIdx.x) / 32);
  int row = ((((int)blockIdx.x) * 4) + wq);
  int ro_in0 = (row * stride_in0_o0);
  int ro_out0 = row;
  float wpivot1 = 0.0f;
  if ((row < rows)) {
    for (int col = 0; col < row_numel; col += row_numel) {
      float r_in0[1];
      nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
      wpivot1 = r_in0[0];
    }
  }
  float wn1 = 0.0f;
  float wmean1 = 0.0f;
  float wm21 = 0.0f;
  if ((row < rows)) {
    for (int col = wl; col < row_numel; col += 32) {
      float r_in0[1];
      nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
      float wd1 = ((r_in0[0]) - (wpivot1));
      wn1 = ((wn1) + (1.0f));
      float wdelta1 = ((wd1) - (wmean1));
      wmean1 = ((wmean1) + (((wdelta1) / (wn1))));
      wm21 = ((wm21) + (((wdelta1) * (((wd1) - (wmean1))))));
    }
  }
  float wmean_row1;
  float wm2_row1;
  float wn_row1;
  nvf_warp_welford<float>(wmean_row1, wm2_row1, wn_row1, wmean1, wm21, wn1);
  float v1 = wm2_row1;
  float v8 = ((v1) / (nvf_maximum<float>(((nvf_cast<float, long long>(nvf_cast<long long, int>(row_numel))) - (2.0f)), 0.0f)));
  if (((wl == 0) && (row < rows))) {
    float r_out0[1];
    r_out0[0] = v8;
    nvf_store<float, 1>(out0 + ro_out0, r_out0);
  }
}
