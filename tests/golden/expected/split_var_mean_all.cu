extern "C" __global__ void __launch_bounds__(512)
nvfuse_split1_eed7f327e538(const float* __restrict__ in0, float* __restrict__ out0, float* __restrict__ out1, float* __restrict__ ws0, float* __restrict__ ws1, float* __restrict__ ws2, float* __restrict__ ws3, int rows, int row_numel, int splits, int chunk_len) {
  int chunk = (((int)blockIdx.x) % splits);
  int row = (((int)blockIdx.x) / splits);
  int part = ((row * splits) + chunk);
  int col_begin = (chunk * chunk_len);
  int col_end = ((((col_begin + chunk_len) < row_numel)) ? ((col_begin + chunk_len)) : (row_numel));
  int ro_in0 = 0;
  int ro_out0 = 0;
  int ro_out1 = 0;
  int ro_ws0 = 0;
  int ro_ws1 = 0;
  int ro_ws2 = 0;
  int ro_ws3 = 0;
  __shared__ float red_f32[16];
  float wpivot1 = 0.0f;
  for (int col = 0; col < col_end; col += row_numel) {
    float r_in0[1];
    nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
    wpivot1 = r_in0[0];
  }
  float wn1 = 0.0f;
  float wmean1 = 0.0f;
  float wm21 = 0.0f;
  float acc9 = 0.0f;
  for (int col = (col_begin + ((int)threadIdx.x)); col < col_end; col += ((int)blockDim.x)) {
    float r_in0[1];
    nvf_load<float, 1>(r_in0, in0 + (ro_in0 + col));
    float wd1 = ((r_in0[0]) - (wpivot1));
    wn1 = ((wn1) + (1.0f));
    float wdelta1 = ((wd1) - (wmean1));
    wmean1 = ((wmean1) + (((wdelta1) / (wn1))));
    wm21 = ((wm21) + (((wdelta1) * (((wd1) - (wmean1))))));
    acc9 = ((acc9) + (r_in0[0]));
  }
  __shared__ float wel_float1[48];
  float wmean_row1;
  float wm2_row1;
  float wn_row1;
  nvf_block_welford<float>(wmean_row1, wm2_row1, wn_row1, wmean1, wm21, wn1, wel_float1);
  float v1 = wm2_row1;
  float v9;
  v9 = nvf_block_allreduce<nvf_op_sum, float>(acc9, red_f32);
  if ((((int)threadIdx.x) == 0)) {
    float r_ws0[1];
    r_ws0[0] = wmean_row1;
    nvf_store<float, 1>(ws0 + part, r_ws0);
    float r_ws1[1];
    r_ws1[0] = wm2_row1;
    nvf_store<float, 1>(ws1 + part, r_ws1);
    float r_ws2[1];
    r_ws2[0] = wn_row1;
    nvf_store<float, 1>(ws2 + part, r_ws2);
    float r_ws3[1];
    r_ws3[0] = v9;
    nvf_store<float, 1>(ws3 + part, r_ws3);
  }
}

extern "C" __global__ void __launch_bounds__(256)
nvfuse_split2_e936c6927482(const float* __restrict__ in0, float* __restrict__ out0, float* __restrict__ out1, float* __restrict__ ws0, float* __restrict__ ws1, float* __restrict__ ws2, float* __restrict__ ws3, int rows, int row_numel, int splits, int chunk_len) {
  int row = ((int)blockIdx.x);
  int ro_in0 = 0;
  int ro_out0 = 0;
  int ro_out1 = 0;
  int ro_ws0 = 0;
  int ro_ws1 = 0;
  int ro_ws2 = 0;
  int ro_ws3 = 0;
  float wmean1 = 0.0f;
  float wm21 = 0.0f;
  float wn1 = 0.0f;
  for (int t = ((int)threadIdx.x); t < splits; t += ((int)blockDim.x)) {
    float r_ws0[1];
    nvf_load<float, 1>(r_ws0, ws0 + ((row * splits) + t));
    wmean1 = r_ws0[0];
    float r_ws1[1];
    nvf_load<float, 1>(r_ws1, ws1 + ((row * splits) + t));
    wm21 = r_ws1[0];
    float r_ws2[1];
    nvf_load<float, 1>(r_ws2, ws2 + ((row * splits) + t));
    wn1 = r_ws2[0];
  }
  __shared__ float wel_float1[24];
  float wmean_row1;
  float wm2_row1;
  float wn_row1;
  nvf_block_welford<float>(wmean_row1, wm2_row1, wn_row1, wmean1, wm21, wn1, wel_float1);
  float v1 = wm2_row1;
  __shared__ float red_f32[8];
  float acc9 = 0.0f;
  for (int t = ((int)threadIdx.x); t < splits; t += ((int)blockDim.x)) {
    float r_ws3[1];
    nvf_load<float, 1>(r_ws3, ws3 + ((row * splits) + t));
    acc9 = ((acc9) + (r_ws3[0]));
  }
  float v9;
  v9 = nvf_block_allreduce<nvf_op_sum, float>(acc9, red_f32);
  float v8 = ((v1) / (nvf_maximum<float>(((nvf_cast<float, long long>(nvf_cast<long long, int>(row_numel))) - (1.0f)), 0.0f)));
  float v10 = ((v9) / (nvf_cast<float, long long>(nvf_cast<long long, int>(row_numel))));
  if ((((int)threadIdx.x) == 0)) {
    float r_out0[1];
    r_out0[0] = v8;
    nvf_store<float, 1>(out0 + ro_out0, r_out0);
    float r_out1[1];
    r_out1[0] = v10;
    nvf_store<float, 1>(out1 + ro_out1, r_out1);
  }
}
