extern "C" __global__ void __launch_bounds__(128)
nvfuse_red_520be9ea59a3(const nvf_half* __restrict__ in0, const nvf_half* __restrict__ in1, const nvf_half* __restrict__ in2, nvf_half* __restrict__ out0, int rows, int row_numel, int osize1, int stride_in0_o0, int stride_in0_o1, int stride_in2_o1, int stride_out0_o0, int stride_out0_o1) {
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
  float om12 = nvf_bits_as_float(0xff800000u);
  float os12 = 0.0f;
  if ((row < rows)) {
    for (int col = wl; col < row_numel; col += 32) {
      nvf_half r_in0[1];
      nvf_load<nvf_half, 1>(r_in0, in0 + (ro_in0 + col));
      float v2 = nvf_cast<float, nvf_half>(r_in0[0]);
      float v3 = nvf_cast<float, nvf_half>(r_in1[0]);
      float v4 = ((v2) * (v3));
      nvf_half v5 = nvf_cast<nvf_half, float>(v4);
      float v6 = nvf_cast<float, nvf_half>(v5);
      nvf_half r_in2[1];
      nvf_load<nvf_half, 1>(r_in2, in2 + (ro_in2 + col));
      float v8 = nvf_cast<float, nvf_half>(r_in2[0]);
      float v9 = ((v6) + (v8));
      nvf_half v10 = nvf_cast<nvf_half, float>(v9);
      float v11 = nvf_cast<float, nvf_half>(v10);
      float omn12 = nvf_maximum<float>(om12, v11);
      os12 = ((((os12) * (((((om12) == (omn12))) ? (1.0f) : (expf(((om12) - (omn12)))))))) + (((((v11) == (nvf_bits_as_float(0xff800000u)))) ? (0.0f) : (expf(((v11) - (omn12)))))));
      om12 = omn12;
    }
  }
  float v12;
  v12 = nvf_warp_allreduce<nvf_op_max, float>(om12);
  float osp12 = ((os12) * (((((om12) == (v12))) ? (1.0f) : (expf(((om12) - (v12)))))));
  float osum12;
  osum12 = nvf_warp_allreduce<nvf_op_sum, float>(osp12);
  float v15 = ((((v12) == (nvf_bits_as_float(0xff800000u)))) ? (nvf_bits_as_float(0x7fc00000u)) : (osum12));
  if ((row < rows)) {
    for (int col = wl; col < row_numel; col += 32) {
      nvf_half r_in0[1];
      nvf_load<nvf_half, 1>(r_in0, in0 + (ro_in0 + col));
      float v2 = nvf_cast<float, nvf_half>(r_in0[0]);
      float v3 = nvf_cast<float, nvf_half>(r_in1[0]);
      float v4 = ((v2) * (v3));
      nvf_half v5 = nvf_cast<nvf_half, float>(v4);
      float v6 = nvf_cast<float, nvf_half>(v5);
      nvf_half r_in2[1];
      nvf_load<nvf_half, 1>(r_in2, in2 + (ro_in2 + col));
      float v8 = nvf_cast<float, nvf_half>(r_in2[0]);
      float v9 = ((v6) + (v8));
      nvf_half v10 = nvf_cast<nvf_half, float>(v9);
      float v11 = nvf_cast<float, nvf_half>(v10);
      float v13 = ((v11) - (v12));
      float v14 = expf(v13);
      float v16 = ((v14) / (v15));
      nvf_half r_out0[1];
      r_out0[0] = nvf_cast<nvf_half, float>(v16);
      nvf_store<nvf_half, 1>(out0 + (ro_out0 + col), r_out0);
    }
  }
}
