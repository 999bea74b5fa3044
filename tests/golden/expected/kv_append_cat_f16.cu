extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_586b2d7eec33(const nvf_half* __restrict__ in0, const nvf_half* __restrict__ in1, nvf_half* __restrict__ out0, int numel, int size1, int size2, int stride_out0_0, int stride_out0_1, int stride_in0_c0p0_0, int stride_in0_c0p0_1, int stride_in1_c0p1_0, int cat0_end0, int cat0_end1, int cat0_shift0, int cat0_shift1) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 8);
  if ((base < numel)) {
    int i2 = (base % size2);
    int q2 = (base / size2);
    int i1 = (q2 % size1);
    int q1 = (q2 / size1);
    int off_out0 = (((q1 * stride_out0_0) + (i1 * stride_out0_1)) + i2);
    nvf_half r_in0_c0p0[8];
    #pragma unroll
    for (int z = 0; z < 8; z += 1) {
      r_in0_c0p0[z] = nvf_cast<nvf_half, float>(0.0f);
    }
    if ((i1 < cat0_end0)) {
      int j_in0_c0p0 = (i1 + cat0_shift0);
      int off_in0_c0p0 = (((q1 * stride_in0_c0p0_0) + (j_in0_c0p0 * stride_in0_c0p0_1)) + i2);
      nvf_load_vector<nvf_half, 8>(r_in0_c0p0, in0 + off_in0_c0p0);
    }
    nvf_half r_in1_c0p1[8];
    #pragma unroll
    for (int z = 0; z < 8; z += 1) {
      r_in1_c0p1[z] = nvf_cast<nvf_half, float>(0.0f);
    }
    if (((cat0_end0 <= i1) && (i1 < cat0_end1))) {
      int j_in1_c0p1 = (i1 + cat0_shift1);
      int off_in1_c0p1 = ((q1 * stride_in1_c0p1_0) + i2);
      nvf_load_vector<nvf_half, 8>(r_in1_c0p1, in1 + off_in1_c0p1);
    }
    nvf_half r_out0[8];
    #pragma unroll
    for (int lane = 0; lane < 8; lane += 1) {
      float v1 = nvf_cast<float, nvf_half>(r_in0_c0p0[lane]);
      float v3 = nvf_cast<float, nvf_half>(r_in1_c0p1[lane]);
      float v5 = (((i1 < cat0_end0)) ? (v1) : (v3));
      r_out0[lane] = nvf_cast<nvf_half, float>(v5);
    }
    nvf_store_vector<nvf_half, 8>(out0 + off_out0, r_out0);
  }
}
