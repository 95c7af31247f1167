// Causal grouped-query attention, flash style (Backend::CausalAttention): each block owns a tile of query
// rows of one (sequence, head), walks the key/value tiles it can see through shared memory and keeps the
// softmax online (running max m and sum l per row, the output rescaled by exp(m_old - m_new)), so no
// [seq, seq] score matrix ever reaches global memory. Blocks of the last (longest) query tiles start first.
//
// Two kernels:
//   FlashMmaKernel<D, BC>  kBF16 mode, head_dim D in {64, 128, 256}: Q·K^T and P·V on bf16 tensor cores
//                          (mma.sync m16n8k16, fp32 accumulation). q, k, v hold bf16 values, so their
//                          conversion is exact; P is rounded to bf16 for P·V, as torch's bf16 attention
//                          does. 4 warps x 16 query rows, BC keys per tile.
//   FlashSimtKernel<kMaxD> any head_dim <= 512, fp32 FMAs throughout (kF32 mode, and the fallback): 32
//                          query rows x 32 keys per tile, 4 threads per query row.
// Softmax runs in the exp2 domain: scores are scaled by scale * log2(e) and exponentiated with exp2f.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "qforge/runtime/cuda/cuda_kernels.h"
#include "qforge/runtime/cuda/kernel_common.cuh"

namespace qforge::cuda {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr unsigned kFull = 0xffffffffu;

// ---------------------------------------------------------------------------------------------------
// fp32 kernel.
constexpr int kSimtBr = 32;       // query rows per block
constexpr int kSimtBc = 32;       // keys per tile
constexpr int kSimtThreads = 128; // 4 per query row

// Shared memory: Q [Br][d+1], K [Bc][d+1] (padded: rows read across lanes at one column), V [Bc][d],
// P [Br][Bc+1] (floats).
int64_t SimtSmemFloats(int64_t d) {
  return kSimtBr * (d + 1) + kSimtBc * (d + 1) + kSimtBc * d + kSimtBr * (kSimtBc + 1);
}

// Thread t owns query row r = t / 4 of the tile and, within it, key columns sub + 4c (c < 8) of each score
// tile and output columns sub + 4jj. kMaxD > 0: the output row lives in kMaxD / 4 registers (d <=
// kMaxD); kMaxD == 0: it accumulates in `out` itself (each element is owned by one thread), any d.
template <int kMaxD>
__global__ void __launch_bounds__(kSimtThreads)
    FlashSimtKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                    float* __restrict__ out, int heads, int kv_heads, int seq, int d, float scale_log2,
                    bool round_bf16) {
  extern __shared__ float simt_smem[];
  const int dp = d + 1;
  float* qs = simt_smem;
  float* ks = qs + kSimtBr * dp;
  float* vs = ks + kSimtBc * dp;
  float* ps = vs + kSimtBc * d;

  const int qb = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, g = h / (heads / kv_heads);
  const float* qh = q + (static_cast<int64_t>(b) * heads + h) * seq * d;
  const float* kh = k + (static_cast<int64_t>(b) * kv_heads + g) * seq * d;
  const float* vh = v + (static_cast<int64_t>(b) * kv_heads + g) * seq * d;
  const int q0 = qb * kSimtBr;
  const int tid = threadIdx.x, r = tid >> 2, sub = tid & 3;
  const int i = q0 + r;  // this thread's query position (>= seq: a padding row, computed, never stored)
  float* orow = out + ((static_cast<int64_t>(b) * seq + i) * heads + h) * d;

  for (int e = tid; e < kSimtBr * d; e += kSimtThreads) {
    const int rr = e / d, cc = e - rr * d;
    qs[rr * dp + cc] = q0 + rr < seq ? qh[static_cast<int64_t>(q0 + rr) * d + cc] : 0.f;
  }
  constexpr int kAcc = kMaxD > 0 ? kMaxD / 4 : 1;
  float o[kAcc];
#pragma unroll
  for (int jj = 0; jj < kAcc; ++jj) o[jj] = 0.f;
  float m = -INFINITY, l = 0.f;  // l: this thread's partial row sum (its 8 columns of each tile)

  const int kv_end = min(seq, q0 + kSimtBr);
  for (int kv0 = 0; kv0 < kv_end; kv0 += kSimtBc) {
    __syncthreads();  // the previous tile is consumed
    for (int e = tid; e < kSimtBc * d; e += kSimtThreads) {
      const int jr = e / d, cc = e - jr * d;
      const bool in = kv0 + jr < seq;
      const int64_t src = static_cast<int64_t>(kv0 + jr) * d + cc;
      ks[jr * dp + cc] = in ? kh[src] : 0.f;  // zeros, not garbage: masked keys meet p = 0
      vs[jr * d + cc] = in ? vh[src] : 0.f;
    }
    __syncthreads();

    float s[kSimtBc / 4];
#pragma unroll
    for (int c = 0; c < kSimtBc / 4; ++c) s[c] = 0.f;
    const float* qr = qs + r * dp;
    for (int dd = 0; dd < d; ++dd) {
      const float qv = qr[dd];
#pragma unroll
      for (int c = 0; c < kSimtBc / 4; ++c) s[c] = fmaf(qv, ks[(sub + 4 * c) * dp + dd], s[c]);
    }
    // Key 0 is visible to every row, so after the first tile m is finite and exp2f(m - m_new) is defined.
    float mt = -INFINITY;
#pragma unroll
    for (int c = 0; c < kSimtBc / 4; ++c) {
      const int j = kv0 + sub + 4 * c;
      s[c] = (j <= i && j < seq) ? s[c] * scale_log2 : -INFINITY;
      mt = fmaxf(mt, s[c]);
    }
    mt = fmaxf(mt, __shfl_xor_sync(kFull, mt, 1));
    mt = fmaxf(mt, __shfl_xor_sync(kFull, mt, 2));
    const float m_new = fmaxf(m, mt);
    const float alpha = exp2f(m - m_new);
    float ls = 0.f;
    float* pw = ps + r * (kSimtBc + 1);
#pragma unroll
    for (int c = 0; c < kSimtBc / 4; ++c) {
      const float p = exp2f(s[c] - m_new);
      pw[sub + 4 * c] = p;
      ls += p;
    }
    l = l * alpha + ls;
    m = m_new;
    __syncwarp();  // a row's 4 threads are in one warp
    if constexpr (kMaxD > 0) {
#pragma unroll
      for (int jj = 0; jj < kAcc; ++jj) o[jj] *= alpha;
      for (int j = 0; j < kSimtBc; ++j) {
        const float p = pw[j];
        const float* vr = vs + j * d + sub;
#pragma unroll
        for (int jj = 0; jj < kAcc; ++jj) {
          if (sub + 4 * jj < d) o[jj] = fmaf(p, vr[4 * jj], o[jj]);
        }
      }
    } else if (i < seq) {
      for (int c = sub; c < d; c += 4) {
        float acc = kv0 == 0 ? 0.f : orow[c] * alpha;
        for (int j = 0; j < kSimtBc; ++j) acc = fmaf(pw[j], vs[j * d + c], acc);
        orow[c] = acc;
      }
    }
  }
  l += __shfl_xor_sync(kFull, l, 1);
  l += __shfl_xor_sync(kFull, l, 2);
  const float inv = 1.f / l;
  if (i < seq) {
    if constexpr (kMaxD > 0) {
#pragma unroll
      for (int jj = 0; jj < kAcc; ++jj) {
        const int c = sub + 4 * jj;
        if (c < d) orow[c] = RoundOut(o[jj] * inv, round_bf16);
      }
    } else {
      for (int c = sub; c < d; c += 4) orow[c] = RoundOut(orow[c] * inv, round_bf16);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// bf16 tensor-core kernel.
constexpr int kMmaBr = 64;  // query rows per block: 4 warps x 16
constexpr int kMmaThreads = 128;

// Two floats as bf16x2 (RNE), `lo` in the low half: the operand order of mma.sync.
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ uint32_t Ld32(const uint16_t* p) { return *reinterpret_cast<const uint32_t*>(p); }

// c[16x8] += a[16x16] · b[16x8], bf16 inputs, fp32 accumulators. With g = lane / 4, t = lane % 4:
//   a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][2t+8..], a3 = A[g+8][2t+8..]
//   b0 = B[2t..2t+1][g], b1 = B[2t+8..2t+9][g]
//   c0, c1 = C[g][2t], C[g][2t+1];  c2, c3 = C[g+8][2t], C[g+8][2t+1]
__device__ __forceinline__ void MmaBf16(float (&c)[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3,
                                        uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <int D, int BC>
constexpr int64_t MmaSmemBytes() {
  return static_cast<int64_t>(kMmaBr + 2 * BC) * (D + 8) * 2;
}

// Shared memory (bf16): Q [64][D+8], K [BC][D+8], V [BC][D+8]. The 8-element pad makes a row 16 bytes
// longer than D, so the fragment loads of 8 rows x 4 lanes hit 32 different banks. Rows beyond seq are
// zeros. Warp w owns query rows q0 + 16w .. +15; each lane holds rows g and g + 8 of them.
template <int D, int BC>
__global__ void __launch_bounds__(kMmaThreads)
    FlashMmaKernel(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                   float* __restrict__ out, int heads, int kv_heads, int seq, float scale_log2, bool round_bf16) {
  constexpr int LD = D + 8, D4 = D / 4;
  extern __shared__ uint4 mma_smem[];
  uint16_t* qs = reinterpret_cast<uint16_t*>(mma_smem);
  uint16_t* ks = qs + kMmaBr * LD;
  uint16_t* vs = ks + BC * LD;

  const int qb = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  const int h = blockIdx.y, b = blockIdx.z, g = h / (heads / kv_heads);
  const float* qh = q + (static_cast<int64_t>(b) * heads + h) * seq * D;
  const float* kh = k + (static_cast<int64_t>(b) * kv_heads + g) * seq * D;
  const float* vh = v + (static_cast<int64_t>(b) * kv_heads + g) * seq * D;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, gid = lane >> 2, tig = lane & 3;
  const int q0 = qb * kMmaBr;
  const float4 zero4 = make_float4(0.f, 0.f, 0.f, 0.f);

  for (int e = tid; e < kMmaBr * D4; e += kMmaThreads) {
    const int rr = e / D4, c4 = e % D4;
    const float4 x = q0 + rr < seq ? *reinterpret_cast<const float4*>(qh + static_cast<int64_t>(q0 + rr) * D + c4 * 4)
                                   : zero4;
    *reinterpret_cast<uint2*>(qs + rr * LD + c4 * 4) = make_uint2(PackBf16(x.x, x.y), PackBf16(x.z, x.w));
  }

  float o[D / 8][4];
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) o[dt][0] = o[dt][1] = o[dt][2] = o[dt][3] = 0.f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.f, l1 = 0.f;  // rows row0, row1; l partial over the quad
  const int row0 = q0 + warp * 16 + gid, row1 = row0 + 8;
  const uint16_t* qw = qs + warp * 16 * LD;

  const int kv_end = min(seq, q0 + kMmaBr);
  for (int kv0 = 0; kv0 < kv_end; kv0 += BC) {
    __syncthreads();  // the previous tile is consumed (and, the first time, Q is stored)
    for (int e = tid; e < BC * D4; e += kMmaThreads) {
      const int jr = e / D4, c4 = e % D4;
      float4 xk = zero4, xv = zero4;
      if (kv0 + jr < seq) {
        const int64_t src = static_cast<int64_t>(kv0 + jr) * D + c4 * 4;
        xk = *reinterpret_cast<const float4*>(kh + src);
        xv = *reinterpret_cast<const float4*>(vh + src);
      }
      *reinterpret_cast<uint2*>(ks + jr * LD + c4 * 4) = make_uint2(PackBf16(xk.x, xk.y), PackBf16(xk.z, xk.w));
      *reinterpret_cast<uint2*>(vs + jr * LD + c4 * 4) = make_uint2(PackBf16(xv.x, xv.y), PackBf16(xv.z, xv.w));
    }
    __syncthreads();

    // S = Q · K^T for the warp's 16 rows x BC keys: s[nt] is the 16x8 tile of keys nt*8 .. +7.
    float s[BC / 8][4];
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      const int c = kk * 16 + 2 * tig;
      const uint32_t a0 = Ld32(qw + gid * LD + c), a1 = Ld32(qw + (gid + 8) * LD + c);
      const uint32_t a2 = Ld32(qw + gid * LD + c + 8), a3 = Ld32(qw + (gid + 8) * LD + c + 8);
#pragma unroll
      for (int nt = 0; nt < BC / 8; ++nt) {
        const uint16_t* kr = ks + (nt * 8 + gid) * LD + c;
        MmaBf16(s[nt], a0, a1, a2, a3, Ld32(kr), Ld32(kr + 8));
      }
    }

    // Mask, scale, online softmax. A row's values are spread over the 4 lanes of a quad.
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int j = kv0 + nt * 8 + 2 * tig + (e & 1);
        const int i = e < 2 ? row0 : row1;
        const float val = (j <= i && j < seq) ? s[nt][e] * scale_log2 : -INFINITY;
        s[nt][e] = val;
        if (e < 2) {
          mx0 = fmaxf(mx0, val);
        } else {
          mx1 = fmaxf(mx1, val);
        }
      }
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(kFull, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(kFull, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(kFull, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(kFull, mx1, 2));
    const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
    const float al0 = exp2f(m0 - mn0), al1 = exp2f(m1 - mn1);
    m0 = mn0;
    m1 = mn1;
    float ls0 = 0.f, ls1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < BC / 8; ++nt) {
      s[nt][0] = exp2f(s[nt][0] - mn0);
      s[nt][1] = exp2f(s[nt][1] - mn0);
      s[nt][2] = exp2f(s[nt][2] - mn1);
      s[nt][3] = exp2f(s[nt][3] - mn1);
      ls0 += s[nt][0] + s[nt][1];
      ls1 += s[nt][2] + s[nt][3];
    }
    l0 = l0 * al0 + ls0;
    l1 = l1 * al1 + ls1;
#pragma unroll
    for (int dt = 0; dt < D / 8; ++dt) {
      o[dt][0] *= al0;
      o[dt][1] *= al0;
      o[dt][2] *= al1;
      o[dt][3] *= al1;
    }

    // O += P · V: the accumulator layout of two adjacent key tiles is the A layout of one 16-key step.
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      const uint32_t a0 = PackBf16(s[2 * kk][0], s[2 * kk][1]), a1 = PackBf16(s[2 * kk][2], s[2 * kk][3]);
      const uint32_t a2 = PackBf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      const uint32_t a3 = PackBf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      const uint16_t* vr = vs + (kk * 16 + 2 * tig) * LD + gid;
#pragma unroll
      for (int dt = 0; dt < D / 8; ++dt) {
        const uint16_t* vc = vr + dt * 8;
        const uint32_t b0 = static_cast<uint32_t>(vc[0]) | (static_cast<uint32_t>(vc[LD]) << 16);
        const uint32_t b1 = static_cast<uint32_t>(vc[8 * LD]) | (static_cast<uint32_t>(vc[9 * LD]) << 16);
        MmaBf16(o[dt], a0, a1, a2, a3, b0, b1);
      }
    }
  }

  l0 += __shfl_xor_sync(kFull, l0, 1);
  l0 += __shfl_xor_sync(kFull, l0, 2);
  l1 += __shfl_xor_sync(kFull, l1, 1);
  l1 += __shfl_xor_sync(kFull, l1, 2);
  const float inv0 = 1.f / l0, inv1 = 1.f / l1;
  float* out0 = out + ((static_cast<int64_t>(b) * seq + row0) * heads + h) * D + 2 * tig;
  float* out1 = out + ((static_cast<int64_t>(b) * seq + row1) * heads + h) * D + 2 * tig;
#pragma unroll
  for (int dt = 0; dt < D / 8; ++dt) {
    if (row0 < seq) {
      *reinterpret_cast<float2*>(out0 + dt * 8) =
          make_float2(RoundOut(o[dt][0] * inv0, round_bf16), RoundOut(o[dt][1] * inv0, round_bf16));
    }
    if (row1 < seq) {
      *reinterpret_cast<float2*>(out1 + dt * 8) =
          make_float2(RoundOut(o[dt][2] * inv1, round_bf16), RoundOut(o[dt][3] * inv1, round_bf16));
    }
  }
}

template <int D, int BC>
cudaError_t LaunchMma(const float* q, const float* k, const float* v, float* out, int batch, int heads, int kv_heads,
                      int seq, float scale_log2, bool round_bf16, cudaStream_t stream) {
  constexpr int64_t smem = MmaSmemBytes<D, BC>();
  const cudaError_t err = cudaFuncSetAttribute(reinterpret_cast<const void*>(&FlashMmaKernel<D, BC>),
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>((seq + kMmaBr - 1) / kMmaBr), static_cast<unsigned>(heads),
                  static_cast<unsigned>(batch));
  FlashMmaKernel<D, BC><<<grid, kMmaThreads, static_cast<size_t>(smem), stream>>>(q, k, v, out, heads, kv_heads, seq,
                                                                                 scale_log2, round_bf16);
  return cudaGetLastError();
}

template <int kMaxD>
cudaError_t LaunchSimt(const float* q, const float* k, const float* v, float* out, int batch, int heads,
                       int kv_heads, int seq, int d, float scale_log2, bool round_bf16, cudaStream_t stream) {
  const int64_t smem = SimtSmemFloats(d) * static_cast<int64_t>(sizeof(float));
  const cudaError_t err = cudaFuncSetAttribute(reinterpret_cast<const void*>(&FlashSimtKernel<kMaxD>),
                                               cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  const dim3 grid(static_cast<unsigned>((seq + kSimtBr - 1) / kSimtBr), static_cast<unsigned>(heads),
                  static_cast<unsigned>(batch));
  FlashSimtKernel<kMaxD><<<grid, kSimtThreads, static_cast<size_t>(smem), stream>>>(q, k, v, out, heads, kv_heads,
                                                                                  seq, d, scale_log2, round_bf16);
  return cudaGetLastError();
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

int64_t AttentionSmemBytes(int64_t head_dim) { return SimtSmemFloats(head_dim) * static_cast<int64_t>(sizeof(float)); }

cudaError_t LaunchCausalAttention(const float* q, const float* k, const float* v, float* out, int64_t batch,
                                  int64_t heads, int64_t kv_heads, int64_t seq, int64_t head_dim, float scale,
                                  bool use_bf16_mma, bool round_bf16, cudaStream_t stream) {
  if (batch <= 0 || heads <= 0 || seq <= 0 || head_dim <= 0) return cudaSuccess;
  const float sl2 = scale * kLog2e;
  const int B = static_cast<int>(batch), H = static_cast<int>(heads), G = static_cast<int>(kv_heads);
  const int S = static_cast<int>(seq), D = static_cast<int>(head_dim);
  if (use_bf16_mma && Aligned16(q) && Aligned16(k) && Aligned16(v) && Aligned16(out)) {
    if (D == 64) return LaunchMma<64, 64>(q, k, v, out, B, H, G, S, sl2, round_bf16, stream);
    if (D == 128) return LaunchMma<128, 64>(q, k, v, out, B, H, G, S, sl2, round_bf16, stream);
    if (D == 256) return LaunchMma<256, 32>(q, k, v, out, B, H, G, S, sl2, round_bf16, stream);
  }
  if (D <= 64) return LaunchSimt<64>(q, k, v, out, B, H, G, S, D, sl2, round_bf16, stream);
  if (D <= 128) return LaunchSimt<128>(q, k, v, out, B, H, G, S, D, sl2, round_bf16, stream);
  if (D <= 256) return LaunchSimt<256>(q, k, v, out, B, H, G, S, D, sl2, round_bf16, stream);
  return LaunchSimt<0>(q, k, v, out, B, H, G, S, D, sl2, round_bf16, stream);
}

}  // namespace qforge::cuda
