extern "C" __global__ void __launch_bounds__(128)
nvfuse_pw_26050b69e05c(const float* __restrict__ in0, const float* __restrict__ in1, const float* __restrict__ in2, const float* __restrict__ in3, const float* __restrict__ in4, const float* __restrict__ in5, const float* __restrict__ in6, const float* __restrict__ in7, float* __restrict__ out0, int numel) {
  int base = (((((int)blockIdx.x) * ((int)blockDim.x)) + ((int)threadIdx.x)) * 4);
  if ((base < numel)) {
    if (((base + 4) <= numel)) {
      int off_in0 = base;
      int off_in1 = base;
      int off_in2 = base;
      int off_in3 = base;
      int off_in4 = base;
      int off_in5 = base;
      int off_in6 = base;
      int off_in7 = base;
      int off_out0 = base;
      float r_in0[4];
      nvf_load_vector<float, 4>(r_in0, in0 + off_in0);
      float r_in1[4];
      nvf_load_vector<float, 4>(r_in1, in1 + off_in1);
      float r_in2[4];
      nvf_load_vector<float, 4>(r_in2, in2 + off_in2);
      float r_in3[4];
      nvf_load_vector<float, 4>(r_in3, in3 + off_in3);
      float r_in4[4];
      nvf_load_vector<float, 4>(r_in4, in4 + off_in4);
      float r_in5[4];
      nvf_load_vector<float, 4>(r_in5, in5 + off_in5);
      float r_in6[4];
      nvf_load_vector<float, 4>(r_in6, in6 + off_in6);
      float r_in7[4];
      nvf_load_vector<float, 4>(r_in7, in7 + off_in7);
      float r_out0[4];
      #pragma unroll
      for (int lane = 0; lane < 4; lane += 1) {
        float v2 = ((r_in0[lane]) + (r_in1[lane]));
        float v5 = ((r_in2[lane]) + (r_in3[lane]));
        float v6 = nvf_minimum<float>(v2, v5);
        float v7 = nvf_maximum<float>(r_in0[lane], r_in2[lane]);
        float v8 = ((v6) - (v7));
        float v10 = nvf_maximum<float>(v8, 0.0f);
        float v13 = ((r_in4[lane]) + (r_in5[lane]));
        float v16 = ((r_in6[lane]) + (r_in7[lane]));
        float v17 = nvf_minimum<float>(v13, v16);
        float v18 = nvf_maximum<float>(r_in4[lane], r_in6[lane]);
        float v19 = ((v17) - (v18));
        float v20 = nvf_maximum<float>(v19, 0.0f);
        float v21 = ((v10) * (v20));
        float v22 = ((r_in1[lane]) * (r_in5[lane]));
        float v23 = ((r_in3[lane]) * (r_in7[lane]));
        float v24 = ((v22) + (v23));
        float v25 = ((v24) - (v21));
        float v27 = nvf_maximum<float>(v25, 1e-06f);
        float v28 = ((v21) / (v27));
        r_out0[lane] = v28;
      }
      nvf_store_vector<float, 4>(out0 + off_out0, r_out0);
    }
    if ((numel < (base + 4))) {
      #pragma unroll 1
      for (int tail = 0; tail < 4; tail += 1) {
        int e = (base + tail);
        if ((e < numel)) {
          int off_in0 = e;
          int off_in1 = e;
          int off_in2 = e;
          int off_in3 = e;
          int off_in4 = e;
          int off_in5 = e;
          int off_in6 = e;
          int off_in7 = e;
          int off_out0 = e;
          float r_in0[1];
          nvf_load<float, 1>(r_in0, in0 + off_in0);
          float r_in1[1];
          nvf_load<float, 1>(r_in1, in1 + off_in1);
          float r_in2[1];
          nvf_load<float, 1>(r_in2, in2 + off_in2);
          float r_in3[1];
          nvf_load<float, 1>(r_in3, in3 + off_in3);
          float r_in4[1];
          nvf_load<float, 1>(r_in4, in4 + off_in4);
          float r_in5[1];
          nvf_load<float, 1>(r_in5, in5 + off_in5);
          float r_in6[1];
          nvf_load<float, 1>(r_in6, in6 + off_in6);
          float r_in7[1];
          nvf_load<float, 1>(r_in7, in7 + off_in7);
          float r_out0[1];
          #pragma unroll
          for (int lane = 0; lane < 1; lane += 1) {
            float v2 = ((r_in0[0]) + (r_in1[0]));
            float v5 = ((r_in2[0]) + (r_in3[0]));
            float v6 = nvf_minimum<float>(v2, v5);
            float v7 = nvf_maximum<float>(r_in0[0], r_in2[0]);
            float v8 = ((v6) - (v7));
            float v10 = nvf_maximum<float>(v8, 0.0f);
            float v13 = ((r_in4[0]) + (r_in5[0]));
            float v16 = ((r_in6[0]) + (r_in7[0]));
            float v17 = nvf_minimum<float>(v13, v16);
            float v18 = nvf_maximum<float>(r_in4[0], r_in6[0]);
            float v19 = ((v17) - (v18));
            float v20 = nvf_maximum<float>(v19, 0.0f);
            float v21 = ((v10) * (v20));
            float v22 = ((r_in1[0]) * (r_in5[0]));
            float v23 = ((r_in3[0]) * (r_in7[0]));
            float v24 = ((v22) + (v23));
            float v25 = ((v24) - (v21));
            float v27 = nvf_maximum<float>(v25, 1e-06f);
            float v28 = ((v21) / (v27));
            r_out0[lane] = v28;
          }
          nvf_store<float, 1>(out0 + off_out0, r_out0);
        }
      }
    }
  }
}
