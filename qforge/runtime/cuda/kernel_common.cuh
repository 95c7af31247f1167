// Device helpers shared by the backend's .cu files: bf16 output rounding, warp and block reductions,
// grid sizing. nvcc only (C++17).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "qforge/numerics/half.h"

namespace qforge::cuda {

// The last step of every floating output in kBF16 mode: RNE to bf16, kept in fp32 (numerics/half.h's
// codec, so host and device round identically).
__device__ __forceinline__ float RoundOut(float v, bool round_bf16) {
  return round_bf16 ? Bf16ToF32(F32ToBf16Rne(v)) : v;
}

// Blocks for a grid-stride loop over n items, `threads` per block: enough to fill the GPU, capped so the
// grid size stays an int.
inline unsigned GridFor(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  const int64_t cap = int64_t{1} << 20;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > cap ? cap : blocks));
}

// Blocks for a one-block-per-row kernel that strides rows by gridDim.x.
inline unsigned RowBlocks(int64_t rows) {
  return static_cast<unsigned>(rows < 1 ? 1 : (rows > (1 << 20) ? (1 << 20) : rows));
}

// Grid y extent for row loops (CUDA caps grid.y at 65535); kernels stride by gridDim.y.
inline unsigned GridRows(int64_t rows) { return static_cast<unsigned>(rows < 1 ? 1 : (rows > 65535 ? 65535 : rows)); }

struct MaxOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct SumOp {
  template <typename T>
  __device__ __forceinline__ T operator()(T a, T b) const {
    return a + b;
  }
};

template <typename T, typename Op>
__device__ __forceinline__ T WarpReduce(T v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Reduction over the whole block (blockDim.x a multiple of 32, at most 1024); every thread gets the
// result. `scratch`: 33 T of shared memory; consecutive calls may share it (each starts with a barrier).
template <typename T, typename Op>
__device__ __forceinline__ T BlockReduce(T v, Op op, T identity, T* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  v = WarpReduce(v, op);
  __syncthreads();  // scratch may still be read by an earlier reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < warps ? scratch[lane] : identity;
    w = WarpReduce(w, op);
    if (lane == 0) scratch[32] = w;
  }
  __syncthreads();
  return scratch[32];
}

// Threads per block for a one-block-per-row kernel over `cols` columns: a multiple of 32 in [32, 256].
inline int RowThreads(int64_t cols) {
  int t = 32;
  while (t < 256 && t < cols) t *= 2;
  return t;
}

}  // namespace qforge::cuda
