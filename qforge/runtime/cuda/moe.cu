// MoE kernels of the CUDA backend: top-k routing (one warp per token) and the grouping of (token, slot)
// pairs by expert (a three-kernel counting sort, stable in pair order).
#include <cuda_runtime.h>

#include <cstdint>

#include "qforge/runtime/cuda/cuda_kernels.h"
#include "qforge/runtime/cuda/kernel_common.cuh"

namespace qforge::cuda {
namespace {

constexpr int kRouteWarps = 4;

// Each lane owns experts lane, lane + 32, ... of its warp's row in shared memory, so the row needs no
// barriers. A chosen expert is marked taken by -inf (probabilities are >= 0 or NaN, never -inf).
__global__ void TopKRoutingKernel(const float* logits, int64_t tokens, int experts, int top_k, bool renormalize,
                                  int32_t* expert_ids, float* weights, bool round_bf16) {
  extern __shared__ float route_smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* p = route_smem + static_cast<int64_t>(warp) * experts;
  for (int64_t t = blockIdx.x * int64_t{kRouteWarps} + warp; t < tokens; t += int64_t{gridDim.x} * kRouteWarps) {
    const float* lt = logits + t * experts;
    float mx = -INFINITY;
    for (int e = lane; e < experts; e += 32) {
      p[e] = lt[e];
      mx = fmaxf(mx, p[e]);
    }
    mx = WarpReduce(mx, MaxOp{});
    float sum = 0.f;
    for (int e = lane; e < experts; e += 32) {
      p[e] = expf(p[e] - mx);
      sum += p[e];
    }
    sum = WarpReduce(sum, SumOp{});
    const float inv = 1.f / sum;
    for (int e = lane; e < experts; e += 32) p[e] = __fmul_rn(p[e], inv);

    int32_t* ids = expert_ids + t * top_k;
    float* w = weights + t * top_k;
    float wsum = 0.f;
    for (int s = 0; s < top_k; ++s) {
      // The lane's best untaken expert: the first of the largest (strict >, like the CPU's scan).
      int best = -1;
      float bp = 0.f;
      for (int e = lane; e < experts; e += 32) {
        const float v = p[e];
        if (v == -INFINITY) continue;
        if (best < 0 || v > bp) {
          best = e;
          bp = v;
        }
      }
      // Across the warp: larger probability wins, else (equal, or NaN) the lower index; -1 always loses.
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) {
        const int ob = __shfl_xor_sync(0xffffffffu, best, o);
        const float op = __shfl_xor_sync(0xffffffffu, bp, o);
        if (ob >= 0 && (best < 0 || op > bp || (!(bp > op) && ob < best))) {
          best = ob;
          bp = op;
        }
      }
      if (lane == 0) {
        ids[s] = best;
        w[s] = bp;
        wsum += bp;  // in slot order, as the CPU sums
      }
      if (lane == (best & 31)) p[best] = -INFINITY;
      __syncwarp();
    }
    if (lane == 0) {
      for (int s = 0; s < top_k; ++s) w[s] = RoundOut(renormalize ? w[s] / wsum : w[s], round_bf16);
    }
  }
}

// Pairs per block of the grouping kernels: four warps of 32, each block walking its range in such steps.
constexpr int kGroupStep = 128;

struct GroupGeometry {
  int64_t per_block;  // pairs per block, a multiple of kGroupStep
  int64_t blocks;
};

GroupGeometry GroupGeometryFor(int64_t n) {
  int64_t steps = (n + kGroupStep - 1) / kGroupStep;
  const int64_t steps_per_block = (steps + 1023) / 1024;  // at most 1024 blocks
  const int64_t per_block = steps_per_block * kGroupStep;
  return {per_block, (n + per_block - 1) / per_block};
}

// counts[e * blocks + blk] = pairs of block blk routed to expert e; *err = 1 for an id outside [0, experts).
__global__ void GroupCountKernel(const int32_t* expert_ids, int64_t n, int experts, int64_t per_block,
                                 int32_t* counts, int32_t* err) {
  extern __shared__ int32_t hist[];
  for (int e = threadIdx.x; e < experts; e += blockDim.x) hist[e] = 0;
  __syncthreads();
  const int64_t begin = blockIdx.x * per_block;
  const int64_t end = begin + per_block < n ? begin + per_block : n;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const int32_t e = expert_ids[i];
    if (e >= 0 && e < experts) {
      atomicAdd(&hist[e], 1);
    } else {
      atomicExch(err, 1);
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < experts; e += blockDim.x) counts[static_cast<int64_t>(e) * gridDim.x + blockIdx.x] = hist[e];
}

// One block of 1024 threads: exclusive scan of counts (expert-major, so start[e * blocks + blk] is where
// block blk's pairs of expert e go), then offsets[e] = start of expert e and offsets[experts] = total.
__global__ void GroupScanKernel(int32_t* counts, int64_t len, int experts, int64_t blocks, int32_t* offsets) {
  __shared__ int32_t warp_sums[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int32_t carry = 0;
  for (int64_t base = 0; base < len; base += 1024) {
    const int64_t idx = base + threadIdx.x;
    const int32_t v = idx < len ? counts[idx] : 0;
    int32_t x = v;
#pragma unroll
    for (int o = 1; o < 32; o <<= 1) {
      const int32_t y = __shfl_up_sync(0xffffffffu, x, o);
      if (lane >= o) x += y;
    }
    if (lane == 31) warp_sums[warp] = x;
    __syncthreads();
    if (warp == 0) {
      int32_t w = warp_sums[lane];
#pragma unroll
      for (int o = 1; o < 32; o <<= 1) {
        const int32_t y = __shfl_up_sync(0xffffffffu, w, o);
        if (lane >= o) w += y;
      }
      warp_sums[lane] = w;
    }
    __syncthreads();
    const int32_t inclusive = x + (warp > 0 ? warp_sums[warp - 1] : 0);
    if (idx < len) counts[idx] = carry + inclusive - v;
    carry += warp_sums[31];
    __syncthreads();  // warp_sums is rewritten by the next chunk
  }
  for (int e = threadIdx.x; e < experts; e += blockDim.x) offsets[e] = counts[static_cast<int64_t>(e) * blocks];
  if (threadIdx.x == 0) offsets[experts] = carry;
}

// Each block walks its range in steps of 128 pairs; within a step a pair's place among the earlier pairs
// of its expert is its rank among equal ids in its warp (__match_any_sync) plus the counts of the warps
// before it, so pairs keep their order within an expert.
__global__ void GroupScatterKernel(const int32_t* expert_ids, const float* topk_w, int64_t n, int top_k, int experts,
                                   int64_t per_block, const int32_t* start, int32_t* rows, float* weights,
                                   bool round_bf16) {
  extern __shared__ int32_t group_smem[];
  int32_t* next = group_smem;                // [experts]: where the block's next pair of expert e goes
  int32_t* warp_count = next + experts;      // [4][experts]: pairs of expert e in each warp of this step
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int e = threadIdx.x; e < experts; e += blockDim.x) next[e] = start[static_cast<int64_t>(e) * gridDim.x + blockIdx.x];
  const int64_t begin = blockIdx.x * per_block;
  const int64_t end = begin + per_block < n ? begin + per_block : n;
  for (int64_t step = begin; step < end; step += kGroupStep) {
    for (int e = threadIdx.x; e < 4 * experts; e += blockDim.x) warp_count[e] = 0;
    __syncthreads();
    const int64_t i = step + threadIdx.x;
    int32_t e = i < end ? expert_ids[i] : -1;
    if (e >= experts) e = -1;  // out of range: flagged by GroupCountKernel, skipped here
    const unsigned peers = __match_any_sync(0xffffffffu, e);
    const int rank = __popc(peers & ((1u << lane) - 1u));
    if (e >= 0 && rank == 0) warp_count[warp * experts + e] = __popc(peers);
    __syncthreads();
    if (e >= 0) {
      int32_t pos = next[e] + rank;
      for (int w = 0; w < warp; ++w) pos += warp_count[w * experts + e];
      rows[pos] = static_cast<int32_t>(i / top_k);
      weights[pos] = RoundOut(topk_w[i], round_bf16);
    }
    __syncthreads();
    for (int x = threadIdx.x; x < experts; x += blockDim.x) {
      next[x] += warp_count[x] + warp_count[experts + x] + warp_count[2 * experts + x] + warp_count[3 * experts + x];
    }
    __syncthreads();
  }
}

cudaError_t AllowSmem(const void* kernel, int64_t bytes) {
  if (bytes <= 48 * 1024) return cudaSuccess;
  return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
}

}  // namespace

cudaError_t LaunchTopKRouting(const float* logits, int64_t tokens, int64_t experts, int top_k, bool renormalize,
                              int32_t* expert_ids, float* weights, bool round_bf16, cudaStream_t stream) {
  if (tokens <= 0) return cudaSuccess;
  const int64_t smem = kRouteWarps * experts * static_cast<int64_t>(sizeof(float));
  cudaError_t err = AllowSmem(reinterpret_cast<const void*>(&TopKRoutingKernel), smem);
  if (err != cudaSuccess) return err;
  const int64_t blocks = (tokens + kRouteWarps - 1) / kRouteWarps;
  TopKRoutingKernel<<<static_cast<unsigned>(blocks < (1 << 20) ? blocks : (1 << 20)), 32 * kRouteWarps,
                      static_cast<size_t>(smem), stream>>>(logits, tokens, static_cast<int>(experts), top_k,
                                                           renormalize, expert_ids, weights, round_bf16);
  return cudaGetLastError();
}

int64_t GroupRowsScratchInts(int64_t n, int64_t experts) { return experts * GroupGeometryFor(n).blocks; }

cudaError_t LaunchGroupRowsByExpert(const int32_t* expert_ids, const float* topk_w, int64_t n, int top_k,
                                    int64_t experts, int32_t* rows, float* weights, int32_t* scratch,
                                    int32_t* offsets, bool round_bf16, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(offsets, 0, static_cast<size_t>(experts + 2) * sizeof(int32_t), stream);
  if (err != cudaSuccess || n <= 0) return err;
  const GroupGeometry g = GroupGeometryFor(n);
  const int ex = static_cast<int>(experts);
  const int64_t count_smem = experts * static_cast<int64_t>(sizeof(int32_t));
  const int64_t scatter_smem = 5 * count_smem;
  if ((err = AllowSmem(reinterpret_cast<const void*>(&GroupCountKernel), count_smem)) != cudaSuccess) return err;
  if ((err = AllowSmem(reinterpret_cast<const void*>(&GroupScatterKernel), scatter_smem)) != cudaSuccess) return err;
  const unsigned blocks = static_cast<unsigned>(g.blocks);
  GroupCountKernel<<<blocks, kGroupStep, static_cast<size_t>(count_smem), stream>>>(expert_ids, n, ex, g.per_block,
                                                                                    scratch, offsets + experts + 1);
  GroupScanKernel<<<1, 1024, 0, stream>>>(scratch, experts * g.blocks, ex, g.blocks, offsets);
  GroupScatterKernel<<<blocks, kGroupStep, static_cast<size_t>(scatter_smem), stream>>>(
      expert_ids, topk_w, n, top_k, ex, g.per_block, scratch, rows, weights, round_bf16);
  return cudaGetLastError();
}

}  // namespace qforge::cuda
