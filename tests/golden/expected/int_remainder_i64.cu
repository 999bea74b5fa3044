extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_cfba5f7b18d5(const long long* __restrict__ in0, const long long* __restrict__ in1, long long* __restrict__ out0, int numel) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 2);
  if ((base < numel)) {
    if (((base + 2) <= numel)) {
      int off_in0 = base;
      int off_in1 = base;
      int off_out0 = base;
      long long r_in0[2];
      nvf_load_vector<long long, 2>(r_in0, in0 + off_in0);
      long long r_in1[2];
      nvf_load_vector<long long, 2>(r_in1, in1 + off_in1);
      long long r_out0[2];
      #pragma unroll
      for (int lane = 0; lane < 2; lane += 1) {
        long long v2 = nvf_remainder<long long>(r_in0[lane], r_in1[lane]);
        r_out0[lane] = v2;
      }
      nvf_store_vector<long long, 2>(out0 + off_out0, r_out0);
    }
    if ((numel < (base + 2))) {
      #pragma unroll 1
      for (int tail = 0; tail < 2; tail += 1) {
        int e = (base + tail);
        if ((e < numel)) {
          int off_in0 = e;
          int off_in1 = e;
          int off_out0 = e;
          long long r_in0[1];
          nvf_load<long long, 1>(r_in0, in0 + off_in0);
          long long r_in1[1];
          nvf_load<long long, 1>(r_in1, in1 + off_in1);
          long long r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            long long v2 = nvf_remainder<long long>(r_in0[0], r_in1[0]);
            r_out0[lane] = v2;
          }
          nvf_store<long long, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
