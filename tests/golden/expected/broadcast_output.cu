extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_9eac3cacd299(const float* __restrict__ in0, const float* __restrict__ in1, float* __restrict__ out0, float* __restrict__ out1, int numel, int size1, int stride_out1_0) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 4);
  if ((base < numel)) {
    int i1 = (base % size1);
    int q1 = (base / size1);
    int off_in0 = q1;
    int off_in1 = i1;
    int off_out0 = q1;
    int off_out1 = ((q1 * stride_out1_0) + i1);
    float r_in0[1];
    nvf_load<float, 1>(r_in0, in0 + off_in0);
    float r_in1[4];
    nvf_load_vector<float, 4>(r_in1, in1 + off_in1);
    float r_out0[1];
    float r_out1[4];
    float v2 = ((r_in0[0]) * (2.0f));
    #pragma unroll
    for (int lane = 0; lane < 4; lane += 1) {
      float v4 = ((v2) + (r_in1[lane]));
      if ((lane == 0)) {
        r_out0[0] = v2;
      }
      r_out1[lane] = v4;
    }
    if ((i1 == 0)) {
      nvf_store<float, 1>(out0 + off_out0, r_out0);
    }
    nvf_store_vector<float, 4>(out1 + off_out1, r_out1);
  }
}
