extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_07ca32735f34(const nvf_half* __restrict__ in0, const nvf_half* __restrict__ in1, const nvf_half* __restrict__ in2, nvf_half* __restrict__ out0, int rows, int row_numel, int osize1, int stride_in0_o0, int stride_in0_o1, int stride_in2_o1, int stride_out0_o0, int stride_out0_o1) {
  int wl = (((int)threadIdx.x) % 32);
  int wq = (((int)threadIdx.x) / 32);
  int row = ((((int)blockIdx.x) * 4) + wq);
  int i1 = (row % osize1);
  int iq1 = (row / osize1);
  int ro_in0 = ((iq1 * stride_in0_o0) + (i1 * stride_in0_o1));
  int ro_in1 = 0;
  int ro_in2 = (i1 * stride_in2_o1);
  int ro_out0 = ((iq1 * stride_out0_o0) + (i1 * stride_out0_o1));
  nvf_half r_in1[1];
  if ((row < rows)) {
    nvf_load<nvf_half, 1>(r_in1, in1 + ro_in1);
  }
  float om8 = nvf_bits_as_float(0xff800000u);
  float os8 = 0.0f;
  if ((row < rows)) {
    for (int col = wl; col < row_numel; col += 32) {
      nvf_half r_in0[1];
      nvf_load<nvf_half, 1>(r_in0, in0 + (ro_in0 + col));
      float v2 = nvf_cast<float, nvf_half>(r_in0[0]);
      float v3 = nvf_cast<float, nvf_half>(r_in1[0]);
      float v4 = ((v2) * (v3));
      nvf_half r_in2[1];
      nvf_load<nvf_half, 1>(r_in2, in2 + (ro_in2 + col));
      float v6 = nvf_cast<float, nvf_half>(r_in2[0]);
      float v7 = ((v4) + (v6));
      float omn8 = nvf_maximum<float>(om8, v7);
      os8 = ((((os8) * (((((om8) == (omn8))) ? (1.0f) : (expf(((om8) - (omn8)))))))) + (((((v7) == (nvf_bits_as_float(0xff800000u)))) ? (0.0f) : (expf(((v7) - (omn8)))))));
      om8 = omn8;
    }
  }
  float v8;
  v8 = nvf_warp_allreduce<nvf_op_max, float>(om8);
  float osp8 = ((os8) * (((((om8) == (v8))) ? (1.0f) : (expf(((om8) - (v8)))))));
  float osum8;
  osum8 = nvf_warp_allreduce<nvf_op_sum, float>(osp8);
  float v11 = ((((v8) == (nvf_bits_as_float(0xff800000u)))) ? (nvf_bits_as_float(0x7fc00000u)) : (osum8));
  if ((row < rows)) {
    for (int col = wl; col < row_numel; col += 32) {
      nvf_half r_in0[1];
      nvf_load<nvf_half, 1>(r_in0, in0 + (ro_in0 + col));
      float v2 = nvf_cast<float, nvf_half>(r_in0[0]);
      float v3 = nvf_cast<float, nvf_half>(r_in1[0]);
      float v4 = ((v2) * (v3));
      nvf_half r_in2[1];
      nvf_load<nvf_half, 1>(r_in2, in2 + (ro_in2 + col));
      float v6 = nvf_cast<float, nvf_half>(r_in2[0]);
      float v7 = ((v4) + (v6));
      float v9 = ((v7) - (v8));
      float v10 = expf(v9);
      float v12 = ((v10) / (v11));
      nvf_half r_out0[1];
      r_out0[0] = nvf_cast<nvf_half, float>(v12);
      nvf_store<nvf_half, 1>(out0 + (ro_out0 + col), r_out0);
    }
  }
}
