extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_2987ef1bb7f1(const nvf_bfloat16* __restrict__ in0, const nvf_bfloat16* __restrict__ in1, nvf_bfloat16* __restrict__ out0, int numel, int size1, int stride_in0_0, int stride_out0_0) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 8);
  if ((base < numel)) {
    int i1 = (base % size1);
    int q1 = (base / size1);
    int off_in0 = ((q1 * stride_in0_0) + i1);
    int off_in1 = i1;
    int off_out0 = ((q1 * stride_out0_0) + i1);
    nvf_bfloat16 r_in0[8];
    nvf_load_vector<nvf_bfloat16, 8>(r_in0, in0 + off_in0);
    nvf_bfloat16 r_in1[8];
    nvf_load_vector<nvf_bfloat16, 8>(r_in1, in1 + off_in1);
    nvf_bfloat16 r_out0[8];
    #pragma unroll
    for (int lane = 0; lane < 8; lane += 1) {
      float v2 = nvf_cast<float, nvf_bfloat16>(r_in0[lane]);
      float v3 = nvf_cast<float, nvf_bfloat16>(r_in1[lane]);
      float v4 = ((v2) + (v3));
      nvf_bfloat16 v5 = nvf_cast<nvf_bfloat16, float>(v4);
      float v6 = nvf_cast<float, nvf_bfloat16>(v5);
      float v10 = ((v6) * (0.70710677f));
      float v11 = erff(v10);
      float v12 = ((v6) * (0.5f));
      float v13 = ((1.0f) + (v11));
      float v14 = ((v12) * (v13));
      r_out0[lane] = nvf_cast<nvf_bfloat16, float>(v14);
    }
    nvf_store_vector<nvf_bfloat16, 8>(out0 + off_out0, r_out0);
  }
}
