// Reductions of the CUDA backend: Amax (NaN-propagating), per-row cross entropy, and the causal row
// softmax of CausalAttentionProbs.
#include <cuda_runtime.h>

#include <cstdint>

#include "qforge/runtime/cuda/cuda_kernels.h"
#include "qforge/runtime/cuda/kernel_common.cuh"

namespace qforge::cuda {
namespace {

constexpr int kThreads = 256;

struct UMaxOp {
  __device__ __forceinline__ uint32_t operator()(uint32_t a, uint32_t b) const { return a > b ? a : b; }
};

// Bit patterns of |x| order like the values, and every NaN's pattern lies above +inf's (0x7F800000): the
// largest pattern is max |x| and is a NaN iff some element is NaN, with one atomicMax per block.
__global__ void AmaxKernel(const float* x, int64_t n, uint32_t* result) {
  __shared__ uint32_t scratch[33];
  uint32_t m = 0;
  const auto fold = [&m](float v) {
    const uint32_t bits = __float_as_uint(v) & 0x7FFFFFFFu;
    m = bits > m ? bits : m;
  };
  // float4 loads over the 16-byte-aligned middle (scalar loads reach about half the bandwidth), scalars for
  // the ends.
  const int64_t head = min(n, static_cast<int64_t>((16 - reinterpret_cast<uintptr_t>(x) % 16) % 16 / 4));
  const int64_t n4 = (n - head) / 4;
  const auto* x4 = reinterpret_cast<const float4*>(x + head);
  const int64_t stride = int64_t{gridDim.x} * blockDim.x, first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  for (int64_t i = first; i < n4; i += stride) {
    const float4 v = x4[i];
    fold(v.x);
    fold(v.y);
    fold(v.z);
    fold(v.w);
  }
  for (int64_t i = first; i < head; i += stride) fold(x[i]);
  for (int64_t i = head + 4 * n4 + first; i < n; i += stride) fold(x[i]);
  m = BlockReduce(m, UMaxOp{}, 0u, scratch);
  if (threadIdx.x == 0 && m != 0) atomicMax(result, m);
}

// One block per row: float max, then the exponentials summed in double (the CPU sums them in float
// partials of 1024 terms, then double).
__global__ void CrossEntropyKernel(const float* logits, const int32_t* targets, double* nll, int64_t rows,
                                   int64_t vocab) {
  __shared__ float fscratch[33];
  __shared__ double dscratch[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* lr = logits + r * vocab;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, lr[j]);
    mx = BlockReduce(mx, MaxOp{}, -INFINITY, fscratch);
    double sum = 0.0;
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) sum += static_cast<double>(expf(lr[j] - mx));
    sum = BlockReduce(sum, SumOp{}, 0.0, dscratch);
    if (threadIdx.x == 0) nll[r] = static_cast<double>(mx) + log(sum) - static_cast<double>(lr[targets[r]]);
  }
}

// Row r of [rows, seq] is query i = r % seq: softmax over j <= i, zeros after.
__global__ void CausalSoftmaxKernel(float* probs, int64_t rows, int64_t seq, bool round_bf16) {
  __shared__ float scratch[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float* pr = probs + r * seq;
    const int64_t valid = r % seq + 1;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) mx = fmaxf(mx, pr[j]);
    mx = BlockReduce(mx, MaxOp{}, -INFINITY, scratch);
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < valid; j += blockDim.x) {
      const float e = expf(pr[j] - mx);
      pr[j] = e;
      sum += e;
    }
    sum = BlockReduce(sum, SumOp{}, 0.f, scratch);
    const float inv = 1.f / sum;
    for (int64_t j = threadIdx.x; j < seq; j += blockDim.x) {
      pr[j] = j < valid ? RoundOut(__fmul_rn(pr[j], inv), round_bf16) : 0.f;
    }
  }
}

}  // namespace

cudaError_t LaunchAmaxFold(const float* x, int64_t n, uint32_t* result, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  unsigned blocks = GridFor(n, kThreads);
  if (blocks > 132 * 16) blocks = 132 * 16;  // grid-stride: a few waves, few atomics
  AmaxKernel<<<blocks, kThreads, 0, stream>>>(x, n, result);
  return cudaGetLastError();
}

cudaError_t LaunchAmax(const float* x, int64_t n, uint32_t* result, cudaStream_t stream) {
  const cudaError_t e = cudaMemsetAsync(result, 0, sizeof(uint32_t), stream);
  if (e != cudaSuccess) return e;
  return LaunchAmaxFold(x, n, result, stream);
}

cudaError_t LaunchCrossEntropy(const float* logits, const int32_t* targets, double* nll, int64_t rows,
                               int64_t vocab, cudaStream_t stream) {
  if (rows <= 0) return cudaSuccess;
  CrossEntropyKernel<<<RowBlocks(rows), RowThreads(vocab) < 256 ? RowThreads(vocab) : 512, 0, stream>>>(
      logits, targets, nll, rows, vocab);
  return cudaGetLastError();
}

cudaError_t LaunchCausalSoftmax(float* probs, int64_t rows, int64_t seq, bool round_bf16, cudaStream_t stream) {
  if (rows <= 0 || seq <= 0) return cudaSuccess;
  CausalSoftmaxKernel<<<RowBlocks(rows), RowThreads(seq), 0, stream>>>(probs, rows, seq, round_bf16);
  return cudaGetLastError();
}

}  // namespace qforge::cuda
