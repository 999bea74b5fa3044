extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_91ab925ab07a(const nvf_half* __restrict__ in0, const nvf_half* __restrict__ in1, const nvf_half* __restrict__ in2, const nvf_half* __restrict__ in3, const nvf_half* __restrict__ in4, nvf_half* __restrict__ out0, int numel, int size1, int size2, int stride_in0_0, int stride_in0_1, int stride_in1_1, int stride_in4_1, int stride_out0_0, int stride_out0_1, int stride_in2_c0p0_0, int stride_in2_c0p0_1, int stride_in3_c0p1_0, int stride_in3_c0p1_1, int cat0_end0, int cat0_end1, int cat0_shift0, int cat0_shift1) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 8);
  if ((base < numel)) {
    int i2 = (base % size2);
    int q2 = (base / size2);
    int i1 = (q2 % size1);
    int q1 = (q2 / size1);
    int off_in0 = (((q1 * stride_in0_0) + (i1 * stride_in0_1)) + i2);
    int off_in1 = ((i1 * stride_in1_1) + i2);
    int off_in4 = ((i1 * stride_in4_1) + i2);
    int off_out0 = (((q1 * stride_out0_0) + (i1 * stride_out0_1)) + i2);
    nvf_half r_in0[8];
    nvf_load_vector<nvf_half, 8>(r_in0, in0 + off_in0);
    nvf_half r_in1[8];
    nvf_load_vector<nvf_half, 8>(r_in1, in1 + off_in1);
    nvf_half r_in4[8];
    nvf_load_vector<nvf_half, 8>(r_in4, in4 + off_in4);
    nvf_half r_in2_c0p0[8];
    #pragma unroll
    for (int z = 0; z < 8; z += 1) {
      r_in2_c0p0[z] = nvf_cast<nvf_half, float>(0.0f);
    }
    if ((i2 < cat0_end0)) {
      int j_in2_c0p0 = (i2 + cat0_shift0);
      int off_in2_c0p0 = (((q1 * stride_in2_c0p0_0) + (i1 * stride_in2_c0p0_1)) + j_in2_c0p0);
      nvf_load_vector<nvf_half, 8>(r_in2_c0p0, in2 + off_in2_c0p0);
    }
    nvf_half r_in3_c0p1[8];
    #pragma unroll
    for (int z = 0; z < 8; z += 1) {
      r_in3_c0p1[z] = nvf_cast<nvf_half, float>(0.0f);
    }
    if (((cat0_end0 <= i2) && (i2 < cat0_end1))) {
      int j_in3_c0p1 = (i2 + cat0_shift1);
      int off_in3_c0p1 = (((q1 * stride_in3_c0p1_0) + (i1 * stride_in3_c0p1_1)) + j_in3_c0p1);
      nvf_load_vector<nvf_half, 8>(r_in3_c0p1, in3 + off_in3_c0p1);
    }
    nvf_half r_out0[8];
    #pragma unroll
    for (int lane = 0; lane < 8; lane += 1) {
      float v2 = nvf_cast<float, nvf_half>(r_in0[lane]);
      float v3 = nvf_cast<float, nvf_half>(r_in1[lane]);
      float v4 = ((v2) * (v3));
      nvf_half v5 = nvf_cast<nvf_half, float>(v4);
      float v6 = nvf_cast<float, nvf_half>(v5);
      float v8 = nvf_cast<float, nvf_half>(r_in2_c0p0[lane]);
      float v9 = (-(v8));
      nvf_half v10 = nvf_cast<nvf_half, float>(v9);
      float v11 = nvf_cast<float, nvf_half>(v10);
      float v13 = nvf_cast<float, nvf_half>(r_in3_c0p1[lane]);
      float v15 = (((i2 < cat0_end0)) ? (v11) : (v13));
      nvf_half v16 = nvf_cast<nvf_half, float>(v15);
      float v17 = nvf_cast<float, nvf_half>(v16);
      float v19 = nvf_cast<float, nvf_half>(r_in4[lane]);
      float v20 = ((v17) * (v19));
      nvf_half v21 = nvf_cast<nvf_half, float>(v20);
      float v22 = nvf_cast<float, nvf_half>(v21);
      float v23 = ((v6) + (v22));
      r_out0[lane] = nvf_cast<nvf_half, float>(v23);
    }
    nvf_store_vector<nvf_half, 8>(out0 + off_out0, r_out0);
  }
}
