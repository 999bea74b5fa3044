extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_9c26635df6c2(const float* __restrict__ in0, const float* __restrict__ in1, float* __restrict__ out0, int numel, int size1, int stride_in0_0, int stride_in1_1, int stride_out0_0) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 1);
  if ((base < numel)) {
    int i1 = (base % size1);
    int q1 = (base / size1);
    int off_in0 = ((q1 * stride_in0_0) + i1);
    int off_in1 = (q1 + (i1 * stride_in1_1));
    int off_out0 = ((q1 * stride_out0_0) + i1);
    float r_in0[1];
    nvf_load<float, 1>(r_in0, in0 + off_in0);
    float r_in1[1];
    nvf_load<float, 1>(r_in1, in1 + off_in1);
    float r_out0[1];
    #pragma unroll
    for (int lane = 0; lane < 1; lane += 1) {
      float v2 = ((r_in0[0]) + (r_in1[0]));
      r_out0[lane] = v2;
    }
    nvf_store<float, 1>(out0 + off_out0, r_out0);
  }
}
