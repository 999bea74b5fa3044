extern "C" __global__ void __launch_bounds__(128)
nvfuse_split1_19a75d3aea2b(const nvf_bfloat16* __restrict__ in0, const nvf_bfloat16* __restrict__ in1, nvf_bfloat16* __restrict__ out0, nvf_bfloat16* __restrict__ out1, float* __restrict__ ws0, int rows, int row_numel, int stride_in0_i0, int stride_in1_i0, int stride_out0_i0, int splits, int chunk_len) {
  int chunk = (((int)blockIdx.x) % splits);
  int tx = (((int)threadIdx.x) % 32);
  int ty = (((int)threadIdx.x) / 32);
  int row = (((((int)blockIdx.x) / splits) * 256) + (tx * 8));
  int part = ((chunk * rows) + row);
  int col_begin = (chunk * chunk_len);
  int col_end = ((((col_begin + chunk_len) < row_numel)) ? ((col_begin + chunk_len)) : (row_numel));
  int ro_in0 = row;
  int ro_in1 = row;
  int ro_out0 = row;
  int ro_out1 = row;
  int ro_ws0 = 0;
  float acc14[8];
  #pragma unroll
  for (int pl = 0; pl < 8; pl += 1) {
    acc14[pl] = 0.0f;
  }
  if ((row < rows)) {
    for (int col = (col_begin + ty); col < col_end; col += 4) {
      nvf_bfloat16 w_out0[8];
      nvf_bfloat16 q_in0[8];
      nvf_load_vector<nvf_bfloat16, 8>(q_in0, in0 + (ro_in0 + (col * stride_in0_i0)));
      nvf_bfloat16 q_in1[8];
      nvf_load_vector<nvf_bfloat16, 8>(q_in1, in1 + (ro_in1 + (col * stride_in1_i0)));
      #pragma unroll
      for (int pl = 0; pl < 8; pl += 1) {
        float v1 = nvf_cast<float, nvf_bfloat16>(q_in0[pl]);
        float v3 = (-(v1));
        float v4 = expf(v3);
        float v5 = ((1.0f) + (v4));
        float v6 = ((1.0f) / (v5));
        nvf_bfloat16 v7 = nvf_cast<nvf_bfloat16, float>(v6);
        float v8 = nvf_cast<float, nvf_bfloat16>(v7);
        float v10 = nvf_cast<float, nvf_bfloat16>(q_in1[pl]);
        float v11 = ((v10) * (v8));
        nvf_bfloat16 v12 = nvf_cast<nvf_bfloat16, float>(v11);
        float v13 = nvf_cast<float, nvf_bfloat16>(v12);
        acc14[pl] = ((acc14[pl]) + (v13));
        w_out0[pl] = nvf_cast<nvf_bfloat16, float>(v11);
      }
      nvf_store_vector<nvf_bfloat16, 8>(out0 + (ro_out0 + (col * stride_out0_i0)), w_out0);
    }
  }
  float v14[8];
  __shared__ float col0_float32[128];
  #pragma unroll
  for (int pl = 0; pl < 8; pl += 1) {
    col0_float32[((int)threadIdx.x)] = acc14[pl];
    __syncthreads();
    v14[pl] = 0.0f;
    for (int j_v14 = 0; j_v14 < 4; j_v14 += 1) {
      v14[pl] = ((v14[pl]) + (col0_float32[((j_v14 * 32) + tx)]));
    }
    __syncthreads();
  }
  if (((ty == 0) && (row < rows))) {
    float r_ws0_0[4];
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      r_ws0_0[pl] = v14[pl];
    }
    nvf_store_vector<float, 4>(ws0 + part, r_ws0_0);
    float r_ws0_1[4];
    #pragma unroll
    for (int pl = 4; pl < 8; pl += 1) {
      r_ws0_1[(pl - 4)] = v14[pl];
    }
    nvf_store_vector<float, 4>(ws0 + (part + 4), r_ws0_1);
  }
}

extern "C" __global__ void __launch_bounds__(256)
nvfuse_split2_a82f7be3316f(const nvf_bfloat16* __restrict__ in0, const nvf_bfloat16* __restrict__ in1, nvf_bfloat16* __restrict__ out0, nvf_bfloat16* __restrict__ out1, float* __restrict__ ws0, int rows, int row_numel, int stride_in0_i0, int stride_in1_i0, int stride_out0_i0, int splits, int chunk_len) {
  int tx = (((int)threadIdx.x) % 8);
  int ty = (((int)threadIdx.x) / 8);
  int row = ((((int)blockIdx.x) * 32) + (tx * 4));
  int ro_in0 = row;
  int ro_in1 = row;
  int ro_out0 = row;
  int ro_out1 = row;
  int ro_ws0 = 0;
  int leaves = (splits / 4);
  int per_row = (((leaves < 32)) ? (1) : ((leaves / 32)));
  int leaf0 = (ty * per_row);
  int leaf_count = (((leaf0 < leaves)) ? (per_row) : (0));
  int low_leaves = (((leaves < 32)) ? (leaves) : (32));
  float y0_14[4];
  #pragma unroll
  for (int pl = 0; pl < 4; pl += 1) {
    y0_14[pl] = 0.0f;
  }
  float s0_0_14[4];
  if ((row < rows)) {
    for (int j = 0; j < leaf_count; j += 1) {
      int pos_lo = ((leaf0 + j) % 32);
      int pos_hi = ((leaf0 + j) / 32);
      int leaf = (((((((((pos_lo % 2) * 16) + (((pos_lo / 2) % 2) * 8)) + (((pos_lo / 4) % 2) * 4)) + (((pos_lo / 8) % 2) * 2)) + ((pos_lo / 16) % 2)) * low_leaves) / 32) + ((((pos_hi % 2) * leaves) / 64) * 32));
      float q0_ws0[4];
      nvf_load_vector<float, 4>(q0_ws0, ws0 + (((leaf * 4) * rows) + row));
      float q1_ws0[4];
      nvf_load_vector<float, 4>(q1_ws0, ws0 + ((((leaf * 4) + 1) * rows) + row));
      float q2_ws0[4];
      nvf_load_vector<float, 4>(q2_ws0, ws0 + ((((leaf * 4) + 2) * rows) + row));
      float q3_ws0[4];
      nvf_load_vector<float, 4>(q3_ws0, ws0 + ((((leaf * 4) + 3) * rows) + row));
      #pragma unroll
      for (int pl = 0; pl < 4; pl += 1) {
        y0_14[pl] = 0.0f;
        y0_14[pl] = ((y0_14[pl]) + (q0_ws0[pl]));
        y0_14[pl] = ((y0_14[pl]) + (q1_ws0[pl]));
        y0_14[pl] = ((y0_14[pl]) + (q2_ws0[pl]));
        y0_14[pl] = ((y0_14[pl]) + (q3_ws0[pl]));
      }
      if (((j % 2) == 1)) {
        #pragma unroll
        for (int pl = 0; pl < 4; pl += 1) {
          y0_14[pl] = ((s0_0_14[pl]) + (y0_14[pl]));
        }
      }
      if (((j % 2) == 0)) {
        #pragma unroll
        for (int pl = 0; pl < 4; pl += 1) {
          s0_0_14[pl] = y0_14[pl];
        }
      }
    }
  }
  __shared__ float rows0_float32[1024];
  if (((ty % 2) == 1)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      rows0_float32[((pl * 256) + ((int)threadIdx.x))] = y0_14[pl];
    }
  }
  __syncthreads();
  if (((ty % 2) == 0)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      y0_14[pl] = ((y0_14[pl]) + (rows0_float32[((pl * 256) + (((int)threadIdx.x) + 8))]));
    }
  }
  if (((ty % 4) == 2)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      rows0_float32[((pl * 256) + ((int)threadIdx.x))] = y0_14[pl];
    }
  }
  __syncthreads();
  if (((ty % 4) == 0)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      y0_14[pl] = ((y0_14[pl]) + (rows0_float32[((pl * 256) + (((int)threadIdx.x) + 16))]));
    }
  }
  if (((ty % 8) == 4)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      rows0_float32[((pl * 256) + ((int)threadIdx.x))] = y0_14[pl];
    }
  }
  __syncthreads();
  if (((ty % 8) == 0)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      y0_14[pl] = ((y0_14[pl]) + (rows0_float32[((pl * 256) + (((int)threadIdx.x) + 32))]));
    }
  }
  if (((ty % 16) == 8)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      rows0_float32[((pl * 256) + ((int)threadIdx.x))] = y0_14[pl];
    }
  }
  __syncthreads();
  if (((ty % 16) == 0)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      y0_14[pl] = ((y0_14[pl]) + (rows0_float32[((pl * 256) + (((int)threadIdx.x) + 64))]));
    }
  }
  if (((ty % 32) == 16)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      rows0_float32[((pl * 256) + ((int)threadIdx.x))] = y0_14[pl];
    }
  }
  __syncthreads();
  if (((ty % 32) == 0)) {
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      y0_14[pl] = ((y0_14[pl]) + (rows0_float32[((pl * 256) + (((int)threadIdx.x) + 128))]));
    }
  }
  if (((ty == 0) && (row < rows))) {
    nvf_bfloat16 w_out1[4];
    #pragma unroll
    for (int pl = 0; pl < 4; pl += 1) {
      w_out1[pl] = nvf_cast<nvf_bfloat16, float>(y0_14[pl]);
    }
    nvf_store_vector<nvf_bfloat16, 4>(out1 + ro_out1, w_out1);
  }
}
