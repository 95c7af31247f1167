// CUDA quantization kernels: amax reductions, fake quant of every QdqOp, NVFP4 packing and FP8 export casts.
//
// Every per-element formula is the one of numerics/qdq.h / encode.h, written with the layout.h codecs and
// the same fp32 operations in the same order, so results are bit-identical to the references (the
// building blocks of qdq.h are repeated below as device functions because qdq.h is a C++20 host header;
// tests/backend_consistency/quant_ops_test.cc holds them to the reference bit for bit). No expression
// here multiplies into an add, so FMA contraction cannot change a result; divisions are IEEE and fp32
// subnormals are kept, so this file must be compiled without --use_fast_math / -ftz=true / -prec-div=false.
// NaN results come out as some NaN (the references' NaN payloads are not reproduced), except where a NaN's
// sign reaches an exported byte (E4M3 non-saturating codes): there the x86 rules of the CPU reference are
// followed (X86Div).
//
// Performance shape: reductions are grid-stride loops with one result per block and a one-block second
// stage (LaunchAbsMaxStats), or warp-per-segment reductions with one atomicMax per segment (grouped
// layouts); elementwise kernels move float4 where the pointers are 16-byte aligned and a vector never
// straddles a row; dynamic-block kernels keep a whole 16/32 block in registers (one read, one write).
#include <math_constants.h>

#include <cfloat>
#include <cstdint>

#include "qforge/numerics/layout.h"
#include "qforge/runtime/cuda/cuda_quant_kernels.h"

namespace qforge::cuda::quant {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPartials = 1024;       // first-stage blocks of LaunchAbsMaxStats
constexpr int64_t kPartialWork = 4096;   // elements per first-stage block before the cap
constexpr int64_t kSegChunk = 4096;      // longest run one warp reduces before an atomic (LaunchGroupMax)
constexpr int64_t kColumnRows = 32;      // rows per thread in the column-group reduction

__device__ __forceinline__ float CanonicalNaN() { return F32FromBits(0x7FC00000u); }

// ---------------------------------------------------------------------------------------------------
// NaN signs of the x86 CPU reference (see the file comment).

// a / b with the NaN results of x86 SSE/AVX division, as the CPU reference computes it: a NaN operand
// comes back quieted (a first), and an invalid quotient (0/0, inf/inf) is the x86 default NaN 0xFFC00000.
// (CUDA gives its canonical 0x7FFFFFFF instead, whose sign would change a non-saturating E4M3 code.)
__device__ __forceinline__ float X86Div(float a, float b) {
  if (IsNanF32(a)) return F32FromBits(F32Bits(a) | 0x00400000u);
  if (IsNanF32(b)) return F32FromBits(F32Bits(b) | 0x00400000u);
  const float r = a / b;
  return IsNanF32(r) ? F32FromBits(0xFFC00000u) : r;
}

// ---------------------------------------------------------------------------------------------------
// The scalar building blocks of numerics/qdq.h and encode.h (same operations, same order).

// qdq.h Fp8FakeQuantScalar.
__device__ __forceinline__ float Fp8FakeQuant(float x, float amax) {
  const float a = amax <= 0x1p-24f ? 1.0f : amax;
  const float scale = 448.0f / a;
  const float inv = 1.0f / scale;
  return DecodeE4M3(EncodeE4M3(x * scale, Overflow::kSaturate)) * inv;
}

// qdq.cc FakeQuantResolved, kInt.
__device__ __forceinline__ float IntQdq(float x, float amax, float maxb, float minb) {
  if (amax <= 0x1p-24f) return 0.0f;
  const float scale = maxb / amax;
  float q = rintf(x * scale);
  q = q > maxb ? maxb : q;
  q = q < minb ? minb : q;
  return q / scale;
}

// qdq.h Nvfp4DynamicBlockScale.
__device__ __forceinline__ float Nvfp4DynamicBlockScale(float b, float g) {
  const float gs = g > 0.0f ? g : 1e-12f;
  float t = b / (6.0f * gs);
  if (!(t <= 448.0f)) t = 448.0f;
  const float s = DecodeE4M3(EncodeE4M3(t, Overflow::kSaturate)) * g;
  return s >= 1e-5f ? s : 1.0f;
}

// qdq.cc Nvfp4StaticBlockScale.
__device__ __forceinline__ float Nvfp4StaticBlockScale(float block_amax, float global_amax, float fp8_norm) {
  const float sraw = block_amax / 6.0f;
  const float amax8 = global_amax * (448.0f / fp8_norm) / 6.0f;
  return Fp8FakeQuant(sraw, amax8);
}

// qdq.h Nvfp4QdqElement.
__device__ __forceinline__ float Nvfp4QdqElement(float x, float s) {
  const float v = (x < 0.0f ? -x : x) / s;
  const float r = E2M1Magnitude(E2M1RoundIndexChain(v)) * s;
  return x >= 0.0f ? r : -r;
}

// qdq.h MxScaleExponent.
__device__ __forceinline__ int MxScaleExponent(float b, float fmt_max) {
  if (b == 0.0f || !IsFiniteF32(b)) return 0;
  return CeilLog2Clamped(b / fmt_max);
}

// qdq.cc MxConvert of a non-negative scaled magnitude.
template <QdqOp Op>
__device__ __forceinline__ float MxConvert(float v) {
  if constexpr (Op == QdqOp::kMxInt8) {
    if (IsNanF32(v)) return 0.0f;
    const float r = rintf(v);
    return r > 127.0f ? 127.0f : (r < -127.0f ? -127.0f : r);
  } else {
    constexpr MinifloatParams p = Op == QdqOp::kMxE4M3   ? E4M3Params()
                                  : Op == QdqOp::kMxE5M2 ? E5M2Params()
                                  : Op == QdqOp::kMxE3M2 ? E3M2Params()
                                  : Op == QdqOp::kMxE2M3 ? E2M3Params()
                                                         : E2M1Params();
    return DecodeMinifloat(EncodeMinifloat(v, p, Overflow::kSaturate), p);
  }
}

// qdq.cc FakeQuantResolved, kMx, for one element with block exponent e.
template <QdqOp Op>
__device__ __forceinline__ float MxQdq(float x, int e) {
  if (x == 0.0f) return 0.0f;
  if (IsNanF32(x)) return CanonicalNaN();
  const float q = MxConvert<Op>((x < 0.0f ? -x : x) * Pow2(-e)) * Pow2(e);
  return x < 0.0f ? -q : q;
}

// encode.h Nvfp4ExportCode.
__device__ __forceinline__ uint32_t Nvfp4ExportCode(float v) {
  const float a = v < 0.0f ? -v : v;
  const uint32_t idx = (a > 0.25f) + (a > 0.75f) + (a > 1.25f) + (a > 1.75f) + (a > 2.5f) + (a > 3.5f) +
                       (a > 5.0f) + (a == 0.75f || a == 1.75f || a == 3.5f);
  return ((v < 0.0f) ? 8u : 0u) | idx;
}

// encode.h Nvfp4ExportBlockScale (the NaN of a NaN or zero weight_scale_2 as on x86: 6 * NaN is that NaN).
__device__ __forceinline__ uint8_t Nvfp4ExportBlockScale(float block_max, float weight_scale_2) {
  const float six_ws2 = IsNanF32(weight_scale_2) ? F32FromBits(F32Bits(weight_scale_2) | 0x00400000u)
                                                 : 6.0f * weight_scale_2;
  float t = X86Div(block_max, six_ws2);
  if (t == 0.0f) t = 1.0f;
  t = t < 0x1p-9f ? 0x1p-9f : (t > 448.0f ? 448.0f : t);
  return EncodeE4M3(t, Overflow::kNonSat);
}

// One element of a fake quant with its group parameter (QdqOp's table in cuda_quant_kernels.h).
template <QdqOp Op>
__device__ __forceinline__ float Apply(float x, float p, const QdqArgs& a) {
  if constexpr (Op == QdqOp::kInt) {
    return IntQdq(x, p, a.max_bound, a.min_bound);
  } else if constexpr (Op == QdqOp::kFp8) {
    return Fp8FakeQuant(x, p);
  } else if constexpr (Op == QdqOp::kNvfp4) {
    return p == 0.0f ? 0.0f : Nvfp4QdqElement(x, p);
  } else {
    return MxQdq<Op>(x, static_cast<int>(p));
  }
}

template <bool kBf16>
__device__ __forceinline__ float Out(float y) {
  if constexpr (kBf16) {
    return Bf16ToF32(F32ToBf16Rne(y));
  } else {
    return y;
  }
}

__device__ __forceinline__ bool Aligned(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

__device__ __forceinline__ unsigned long long MaxU64(unsigned long long a, unsigned long long b) { return a > b ? a : b; }

// ---------------------------------------------------------------------------------------------------
// Reductions.

struct Acc {
  uint32_t max_bits;
  unsigned long long nonfinite, first_nonfinite, first_negative;
};

__device__ __forceinline__ void Visit(Acc& a, float v, unsigned long long i, bool check_negative) {
  const uint32_t b = F32Bits(v) & 0x7FFFFFFFu;
  a.max_bits = b > a.max_bits ? b : a.max_bits;
  if (b >= 0x7F800000u) {
    ++a.nonfinite;
    a.first_nonfinite = MaxU64(a.first_nonfinite, ~i);
  }
  if (check_negative && v < 0.0f) a.first_negative = MaxU64(a.first_negative, ~i);
}

__device__ __forceinline__ void Merge(Acc& a, const Acc& b) {
  a.max_bits = b.max_bits > a.max_bits ? b.max_bits : a.max_bits;
  a.nonfinite += b.nonfinite;
  a.first_nonfinite = MaxU64(a.first_nonfinite, b.first_nonfinite);
  a.first_negative = MaxU64(a.first_negative, b.first_negative);
}

__device__ __forceinline__ Acc WarpReduce(Acc a) {
  for (int off = 16; off >= 1; off >>= 1) {
    Acc o;
    o.max_bits = __shfl_xor_sync(0xFFFFFFFFu, a.max_bits, off);
    o.nonfinite = __shfl_xor_sync(0xFFFFFFFFu, a.nonfinite, off);
    o.first_nonfinite = __shfl_xor_sync(0xFFFFFFFFu, a.first_nonfinite, off);
    o.first_negative = __shfl_xor_sync(0xFFFFFFFFu, a.first_negative, off);
    Merge(a, o);
  }
  return a;
}

// Reduces one Acc per thread of a kThreads block; the result is valid in thread 0.
__device__ __forceinline__ Acc BlockReduce(Acc a) {
  __shared__ Acc warp_acc[kThreads / 32];
  a = WarpReduce(a);
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  if (lane == 0) warp_acc[warp] = a;
  __syncthreads();
  if (warp == 0) {
    a = lane < kThreads / 32 ? warp_acc[lane] : Acc{0, 0, 0, 0};
    a = WarpReduce(a);
  }
  return a;
}

__global__ void __launch_bounds__(kThreads)
    AbsMaxPartialKernel(const float* __restrict__ x, int64_t n, bool check_negative, ReduceStats* partials) {
  Acc a{0, 0, 0, 0};
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t nv = Aligned(x, 16) ? n / 4 : 0;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  for (int64_t v = tid; v < nv; v += stride) {
    const float4 q = x4[v];
    const unsigned long long i = static_cast<unsigned long long>(v) * 4;
    Visit(a, q.x, i, check_negative);
    Visit(a, q.y, i + 1, check_negative);
    Visit(a, q.z, i + 2, check_negative);
    Visit(a, q.w, i + 3, check_negative);
  }
  for (int64_t i = nv * 4 + tid; i < n; i += stride) Visit(a, x[i], static_cast<unsigned long long>(i), check_negative);
  a = BlockReduce(a);
  if (threadIdx.x == 0) {
    ReduceStats& p = partials[blockIdx.x];
    p.max_bits = a.max_bits;
    p.amax = 0.0f;
    p.nonfinite = a.nonfinite;
    p.first_nonfinite = a.first_nonfinite;
    p.first_negative = a.first_negative;
  }
}

__global__ void __launch_bounds__(kThreads) AbsMaxFinalKernel(const ReduceStats* partials, int np, ReduceStats* out) {
  Acc a{0, 0, 0, 0};
  for (int i = threadIdx.x; i < np; i += blockDim.x) {
    const ReduceStats& p = partials[i];
    Merge(a, Acc{p.max_bits, p.nonfinite, p.first_nonfinite, p.first_negative});
  }
  a = BlockReduce(a);
  if (threadIdx.x == 0) {
    out->max_bits = a.max_bits;
    out->amax = a.max_bits > 0x7F800000u ? CanonicalNaN() : F32FromBits(a.max_bits);
    out->nonfinite = a.nonfinite;
    out->first_nonfinite = a.first_nonfinite;
    out->first_negative = a.first_negative;
  }
}

// The value one element adds to a grouped max (MaxMode): fp32 bits of |x|, or bits + 1 with NaN as 0.
template <MaxMode M>
__device__ __forceinline__ uint32_t Contribution(float v) {
  uint32_t a = F32Bits(v) & 0x7FFFFFFFu;
  if constexpr (M == MaxMode::kPropagate) {
    return a;
  } else {
    if (a > 0x7F800000u) return 0;  // NaN: ignored by the fmax fold
    if (M == MaxMode::kIgnoreNanClampMax && a > 0x7F7FFFFFu) a = 0x7F7FFFFFu;  // inf -> FLT_MAX
    return a + 1;
  }
}

__device__ __forceinline__ void FlushStats(const Acc& a, ReduceStats* stats) {
  if (stats == nullptr || (a.nonfinite == 0 && a.first_negative == 0)) return;
  atomicAdd(&stats->nonfinite, a.nonfinite);
  atomicMax(&stats->first_nonfinite, a.first_nonfinite);
  atomicMax(&stats->first_negative, a.first_negative);
}

// Segment mode: the rows of [rows, cols] split into segments of `ext` along the last dim, each cut into
// chunks of `chunk` elements; one sub-warp of T = 2^t_log2 lanes reduces one chunk, then one atomicMax.
template <MaxMode M, typename I>
__global__ void __launch_bounds__(kThreads)
    GroupMaxSegmentKernel(const float* __restrict__ x, GroupLayout L, bool check_negative, uint32_t* gbits,
                          ReduceStats* stats, I chunk, I chunks, int t_log2) {
  const I cols = static_cast<I>(L.shape[L.rank - 1]), ext = static_cast<I>(L.extent[L.rank - 1]);
  const I rows = static_cast<I>(L.numel) / cols;
  const I segs = (cols + ext - 1) / ext;
  const I per_row = segs * chunks;
  const I items = rows * per_row;
  const int lane = threadIdx.x & 31, T = 1 << t_log2;
  const int sub = lane >> t_log2, sublane = lane & (T - 1);
  const I per_warp = static_cast<I>(32 >> t_log2);
  const I warp = (static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const I nwarps = (static_cast<I>(gridDim.x) * blockDim.x) >> 5;
  Acc acc{0, 0, 0, 0};
  for (I it = warp * per_warp; it < items; it += nwarps * per_warp) {  // uniform within the warp
    const I item = it + static_cast<I>(sub);
    const bool valid = item < items;
    uint32_t m = 0;
    I g = 0;
    if (valid) {
      const I row = item / per_row, rem = item - row * per_row;
      const I s = rem / chunks, k = rem - s * chunks;
      const I c0 = s * ext + k * chunk;
      I c1 = c0 + chunk;
      const I seg_end = (s + 1) * ext;
      c1 = c1 < seg_end ? c1 : seg_end;
      c1 = c1 < cols ? c1 : cols;
      const I base = row * cols;
      for (I c = c0 + static_cast<I>(sublane); c < c1; c += static_cast<I>(T)) {
        const float v = x[base + c];
        const uint32_t b = Contribution<M>(v);
        m = b > m ? b : m;
        if (stats != nullptr) Visit(acc, v, static_cast<unsigned long long>(base + c), check_negative);
      }
      g = RowBase(L, row) + s;
    }
    for (int off = T >> 1; off >= 1; off >>= 1) {
      const uint32_t o = __shfl_xor_sync(0xFFFFFFFFu, m, off);
      m = o > m ? o : m;
    }
    if (valid && sublane == 0 && m != 0) atomicMax(&gbits[g], m);
  }
  FlushStats(acc, stats);
}

// Column mode (extent 1 along the last dim, rank >= 2): one thread per column and chunk of kColumnRows
// rows, consecutive threads on consecutive columns; an atomicMax whenever the group changes.
template <MaxMode M, typename I>
__global__ void __launch_bounds__(kThreads)
    GroupMaxColumnKernel(const float* __restrict__ x, GroupLayout L, bool check_negative, uint32_t* gbits,
                         ReduceStats* stats) {
  const I cols = static_cast<I>(L.shape[L.rank - 1]);
  const I rows = static_cast<I>(L.numel) / cols;
  const I row_chunks = (rows + static_cast<I>(kColumnRows) - 1) / static_cast<I>(kColumnRows);
  const I items = row_chunks * cols;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  Acc acc{0, 0, 0, 0};
  for (I item = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x; item < items; item += stride) {
    const I rc = item / cols, c = item - rc * cols;
    const I r0 = rc * static_cast<I>(kColumnRows);
    const I r1 = r0 + static_cast<I>(kColumnRows) < rows ? r0 + static_cast<I>(kColumnRows) : rows;
    I cur = ~I{0};
    uint32_t m = 0;
    for (I r = r0; r < r1; ++r) {
      const I g = RowBase(L, r) + c;
      if (g != cur) {
        if (cur != ~I{0} && m != 0) atomicMax(&gbits[cur], m);
        cur = g;
        m = 0;
      }
      const float v = x[r * cols + c];
      const uint32_t b = Contribution<M>(v);
      m = b > m ? b : m;
      if (stats != nullptr) Visit(acc, v, static_cast<unsigned long long>(r * cols + c), check_negative);
    }
    if (cur != ~I{0} && m != 0) atomicMax(&gbits[cur], m);
  }
  FlushStats(acc, stats);
}

__global__ void __launch_bounds__(kThreads)
    FinalizeKernel(const uint32_t* gbits, GroupLayout L, FinalizeMode mode, const float* global_dev, float global_host,
                   float fmt_max, float* out) {
  float g = 0.0f;
  if (mode == FinalizeMode::kNvfp4Dyn) g = (global_dev != nullptr ? global_dev[0] : global_host) / 2688.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < L.num_groups; i += stride) {
    const uint32_t b = gbits[i];
    if (mode == FinalizeMode::kAmax) {
      out[i] = b > 0x7F800000u ? CanonicalNaN() : F32FromBits(b);
      continue;
    }
    float m = b == 0 ? CanonicalNaN() : F32FromBits(b - 1);
    if (IsPartial(L, i)) m = fmaxf(m, 0.0f);
    out[i] = mode == FinalizeMode::kNvfp4Dyn ? Nvfp4DynamicBlockScale(m, g)
                                             : static_cast<float>(MxScaleExponent(m, fmt_max));
  }
}

__global__ void __launch_bounds__(kThreads)
    Nvfp4StaticScalesKernel(const float* amax_dev, float amax_host, int64_t n, const float* global_dev,
                            float global_host, float fp8_norm, float* out) {
  const float gamax = global_dev != nullptr ? global_dev[0] : global_host;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float s = Nvfp4StaticBlockScale(amax_dev != nullptr ? amax_dev[i] : amax_host, gamax, fp8_norm);
    out[i] = s == 0.0f ? s : (IsFiniteF32(s) ? s : 1.0f);
  }
}

// ---------------------------------------------------------------------------------------------------
// Elementwise fake quant.

template <QdqOp Op, bool kBf16>
__global__ void __launch_bounds__(kThreads)
    QdqSingleKernel(const float* x, float* y, int64_t n, QdqArgs a, const float* param_dev, float param_host) {
  const float p = param_dev != nullptr ? param_dev[0] : param_host;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t nv = Aligned(x, 16) && Aligned(y, 16) ? n / 4 : 0;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t v = tid; v < nv; v += stride) {
    const float4 q = x4[v];
    y4[v] = make_float4(Out<kBf16>(Apply<Op>(q.x, p, a)), Out<kBf16>(Apply<Op>(q.y, p, a)),
                        Out<kBf16>(Apply<Op>(q.z, p, a)), Out<kBf16>(Apply<Op>(q.w, p, a)));
  }
  for (int64_t i = nv * 4 + tid; i < n; i += stride) y[i] = Out<kBf16>(Apply<Op>(x[i], p, a));
}

template <QdqOp Op, bool kBf16, typename I>
__global__ void __launch_bounds__(kThreads)
    QdqGroupedKernel(const float* x, float* y, GroupLayout L, QdqArgs a, const float* __restrict__ params) {
  const I n = static_cast<I>(L.numel);
  const I cols = static_cast<I>(L.shape[L.rank - 1]), ext = static_cast<I>(L.extent[L.rank - 1]);
  const I tid = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  const bool vec = Aligned(x, 16) && Aligned(y, 16) && cols % 4 == 0;
  if (vec) {
    const float4* x4 = reinterpret_cast<const float4*>(x);
    float4* y4 = reinterpret_cast<float4*>(y);
    for (I v = tid; v < n / 4; v += stride) {
      const I e = v * 4;
      I row = 0, c = e;
      if (L.rank > 1) {
        row = e / cols;
        c = e - row * cols;
      }
      const I base = RowBase(L, row);
      const float4 q = x4[v];
      y4[v] = make_float4(Out<kBf16>(Apply<Op>(q.x, params[base + SegOf(L, c, ext)], a)),
                          Out<kBf16>(Apply<Op>(q.y, params[base + SegOf(L, c + 1, ext)], a)),
                          Out<kBf16>(Apply<Op>(q.z, params[base + SegOf(L, c + 2, ext)], a)),
                          Out<kBf16>(Apply<Op>(q.w, params[base + SegOf(L, c + 3, ext)], a)));
    }
    return;
  }
  for (I e = tid; e < n; e += stride) {
    I row = 0, c = e;
    if (L.rank > 1) {
      row = e / cols;
      c = e - row * cols;
    }
    y[e] = Out<kBf16>(Apply<Op>(x[e], params[RowBase(L, row) + SegOf(L, c, ext)], a));
  }
}

// One thread per block of B elements along a row: fmax-fold of |x| (padding counts as 0), block parameter,
// then the QDQ of the block's real elements.
template <QdqOp Op, int B, bool kBf16>
__global__ void __launch_bounds__(kThreads)
    BlockQdqKernel(const float* x, float* y, int64_t rows, int64_t cols, QdqArgs a, const float* global_dev,
                   float global_host) {
  const int64_t segs = (cols + B - 1) / B, nblk = rows * segs;
  const bool vec = cols % B == 0 && Aligned(x, 16) && Aligned(y, 16);
  float g = 0.0f;
  if constexpr (Op == QdqOp::kNvfp4) g = (global_dev != nullptr ? global_dev[0] : global_host) / 2688.0f;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < nblk; b += stride) {
    float v[B];
    int64_t base;
    int len = B;
    if (vec) {
      base = b * B;
      const float4* x4 = reinterpret_cast<const float4*>(x + base);
#pragma unroll
      for (int k = 0; k < B / 4; ++k) {
        const float4 q = x4[k];
        v[4 * k] = q.x;
        v[4 * k + 1] = q.y;
        v[4 * k + 2] = q.z;
        v[4 * k + 3] = q.w;
      }
    } else {
      const int64_t row = b / segs, s = b - row * segs;
      base = row * cols + s * B;
      const int64_t left = cols - s * B;
      len = left < B ? static_cast<int>(left) : B;
#pragma unroll
      for (int k = 0; k < B; ++k) v[k] = k < len ? x[base + k] : 0.0f;
    }
    float m = CanonicalNaN();
#pragma unroll
    for (int k = 0; k < B; ++k) {
      float av = fabsf(v[k]);
      if constexpr (Op != QdqOp::kNvfp4) av = av > FLT_MAX ? FLT_MAX : av;
      m = fmaxf(m, av);
    }
    float p;
    if constexpr (Op == QdqOp::kNvfp4) {
      p = Nvfp4DynamicBlockScale(m, g);
    } else {
      p = static_cast<float>(MxScaleExponent(m, a.max_bound));
    }
    if (vec) {
      float4* y4 = reinterpret_cast<float4*>(y + base);
#pragma unroll
      for (int k = 0; k < B / 4; ++k) {
        y4[k] = make_float4(Out<kBf16>(Apply<Op>(v[4 * k], p, a)), Out<kBf16>(Apply<Op>(v[4 * k + 1], p, a)),
                            Out<kBf16>(Apply<Op>(v[4 * k + 2], p, a)), Out<kBf16>(Apply<Op>(v[4 * k + 3], p, a)));
      }
    } else {
#pragma unroll
      for (int k = 0; k < B; ++k)
        if (k < len) y[base + k] = Out<kBf16>(Apply<Op>(v[k], p, a));
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Export encoders.

__global__ void __launch_bounds__(kThreads)
    PackNvfp4Kernel(const float* __restrict__ w, int64_t nblk, float ws2, uint8_t* packed, uint8_t* scales,
                    int* nonfinite) {
  const bool vec_in = Aligned(w, 16), vec_out = Aligned(packed, 8);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < nblk; b += stride) {
    float v[16];
    if (vec_in) {
      const float4* w4 = reinterpret_cast<const float4*>(w + b * 16);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float4 q = w4[k];
        v[4 * k] = q.x;
        v[4 * k + 1] = q.y;
        v[4 * k + 2] = q.z;
        v[4 * k + 3] = q.w;
      }
    } else {
#pragma unroll
      for (int k = 0; k < 16; ++k) v[k] = w[b * 16 + k];
    }
    uint32_t mb = 0;
#pragma unroll
    for (int k = 0; k < 16; ++k) {
      const uint32_t ab = F32Bits(v[k]) & 0x7FFFFFFFu;
      mb = ab > mb ? ab : mb;
    }
    if (mb >= 0x7F800000u) {  // max|w| of finite weights is finite, and the caller reports the block
      *nonfinite = 1;
      continue;
    }
    const uint8_t sc = Nvfp4ExportBlockScale(F32FromBits(mb), ws2);
    scales[b] = sc;
    const float denom = DecodeE4M3(sc) * ws2;
    uint32_t word[2] = {0, 0};
#pragma unroll
    for (int k = 0; k < 8; ++k) {
      const uint32_t byte = Nvfp4ExportCode(v[2 * k] / denom) | (Nvfp4ExportCode(v[2 * k + 1] / denom) << 4);
      word[k / 4] |= byte << (8 * (k % 4));
    }
    if (vec_out) {
      reinterpret_cast<uint2*>(packed)[b] = make_uint2(word[0], word[1]);
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k) packed[b * 8 + k] = static_cast<uint8_t>(word[k / 4] >> (8 * (k % 4)));
    }
  }
}

template <typename I>
__global__ void __launch_bounds__(kThreads)
    EncodeFp8Kernel(const float* __restrict__ w, const float* __restrict__ scales, I n, I group, uint8_t* codes,
                    int* nonfinite) {
  const I tid = static_cast<I>(blockIdx.x) * blockDim.x + threadIdx.x;
  const I stride = static_cast<I>(gridDim.x) * blockDim.x;
  const bool one_group = group >= n;
  const I nv = Aligned(w, 16) && Aligned(codes, 4) ? n / 4 : 0;
  bool bad = false;
  for (I v = tid; v < nv; v += stride) {
    const float4 q = reinterpret_cast<const float4*>(w)[v];
    const float wk[4] = {q.x, q.y, q.z, q.w};
    const I i0 = v * 4;
    const I g0 = one_group ? I{0} : i0 / group;
    const bool same = one_group || i0 - g0 * group + 3 < group;
    uint32_t word = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float s = scales[same ? g0 : (i0 + k) / group];
      bad |= !IsFiniteF32(wk[k]);
      word |= static_cast<uint32_t>(EncodeE4M3(X86Div(wk[k], s), Overflow::kNonSat)) << (8 * k);
    }
    reinterpret_cast<uint32_t*>(codes)[v] = word;
  }
  for (I i = nv * 4 + tid; i < n; i += stride) {
    bad |= !IsFiniteF32(w[i]);
    codes[i] = EncodeE4M3(X86Div(w[i], scales[one_group ? I{0} : i / group]), Overflow::kNonSat);
  }
  if (bad) *nonfinite = 1;
}

// ---------------------------------------------------------------------------------------------------
// Launch helpers.

int NumSms() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
    return 1;
  return n > 0 ? n : 1;
}

// Blocks for `work` independent thread items: enough to cover them, at most 8 resident blocks per SM
// (kThreads = 256, 2048 threads per SM), grid-stride loops do the rest.
unsigned Grid(int64_t work) {
  const int64_t want = (work + kThreads - 1) / kThreads;
  const int64_t cap = static_cast<int64_t>(NumSms()) * 8;
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

bool Fits32(int64_t n) { return n < (int64_t{1} << 30); }

int PartialBlocks(int64_t n) {
  const int64_t b = (n + kPartialWork - 1) / kPartialWork;
  return static_cast<int>(b < 1 ? 1 : (b > kMaxPartials ? kMaxPartials : b));
}

template <QdqOp O>
struct OpTag {
  static constexpr QdqOp value = O;
};

// Calls fn(OpTag<op>{}) for a runtime op: the only switch over QdqOp.
template <typename Fn>
cudaError_t VisitOp(QdqOp op, Fn&& fn) {
  switch (op) {
    case QdqOp::kInt: return fn(OpTag<QdqOp::kInt>{});
    case QdqOp::kFp8: return fn(OpTag<QdqOp::kFp8>{});
    case QdqOp::kNvfp4: return fn(OpTag<QdqOp::kNvfp4>{});
    case QdqOp::kMxE4M3: return fn(OpTag<QdqOp::kMxE4M3>{});
    case QdqOp::kMxE5M2: return fn(OpTag<QdqOp::kMxE5M2>{});
    case QdqOp::kMxE3M2: return fn(OpTag<QdqOp::kMxE3M2>{});
    case QdqOp::kMxE2M3: return fn(OpTag<QdqOp::kMxE2M3>{});
    case QdqOp::kMxE2M1: return fn(OpTag<QdqOp::kMxE2M1>{});
    case QdqOp::kMxInt8: return fn(OpTag<QdqOp::kMxInt8>{});
  }
  return cudaErrorInvalidValue;
}

}  // namespace

int AbsMaxStatsSlots(int64_t n) { return PartialBlocks(n) + 1; }

cudaError_t LaunchAbsMaxStats(const float* x, int64_t n, bool check_negative, ReduceStats* slots, cudaStream_t stream) {
  const int np = PartialBlocks(n);
  AbsMaxPartialKernel<<<np, kThreads, 0, stream>>>(x, n, check_negative, slots);
  AbsMaxFinalKernel<<<1, kThreads, 0, stream>>>(slots, np, slots + np);
  return cudaGetLastError();
}

namespace {

template <MaxMode M, typename I>
void GroupMaxT(const float* x, const GroupLayout& L, bool check_negative, uint32_t* gbits, ReduceStats* stats,
               cudaStream_t stream) {
  const int64_t cols = L.shape[L.rank - 1], ext = L.extent[L.rank - 1], rows = L.numel / cols;
  if (ext == 1 && L.rank >= 2) {
    const int64_t items = (rows + kColumnRows - 1) / kColumnRows * cols;
    GroupMaxColumnKernel<M, I><<<Grid(items), kThreads, 0, stream>>>(x, L, check_negative, gbits, stats);
    return;
  }
  const int64_t chunk = ext < kSegChunk ? ext : kSegChunk;
  const int64_t chunks = (ext + chunk - 1) / chunk;
  int t_log2 = 0;
  while (t_log2 < 5 && (int64_t{2} << t_log2) <= chunk) ++t_log2;
  const int64_t items = rows * ((cols + ext - 1) / ext) * chunks;
  const int64_t threads = items * (int64_t{1} << t_log2);
  GroupMaxSegmentKernel<M, I><<<Grid(threads), kThreads, 0, stream>>>(x, L, check_negative, gbits, stats,
                                                                        static_cast<I>(chunk), static_cast<I>(chunks), t_log2);
}

template <MaxMode M>
void GroupMaxM(const float* x, const GroupLayout& L, bool check_negative, uint32_t* gbits, ReduceStats* stats,
               cudaStream_t stream) {
  if (Fits32(L.numel)) {
    GroupMaxT<M, uint32_t>(x, L, check_negative, gbits, stats, stream);
  } else {
    GroupMaxT<M, uint64_t>(x, L, check_negative, gbits, stats, stream);
  }
}

}  // namespace

cudaError_t LaunchGroupMax(const float* x, const GroupLayout& layout, MaxMode mode, bool check_negative,
                           uint32_t* group_bits, ReduceStats* stats, cudaStream_t stream) {
  if (layout.rank == 0 || layout.numel == 0) return cudaErrorInvalidValue;  // one group: LaunchAbsMaxStats
  switch (mode) {
    case MaxMode::kPropagate: GroupMaxM<MaxMode::kPropagate>(x, layout, check_negative, group_bits, stats, stream); break;
    case MaxMode::kIgnoreNan: GroupMaxM<MaxMode::kIgnoreNan>(x, layout, check_negative, group_bits, stats, stream); break;
    case MaxMode::kIgnoreNanClampMax:
      GroupMaxM<MaxMode::kIgnoreNanClampMax>(x, layout, check_negative, group_bits, stats, stream);
      break;
  }
  return cudaGetLastError();
}

cudaError_t LaunchFinalizeGroups(const uint32_t* group_bits, const GroupLayout& layout, FinalizeMode mode,
                                 const float* global_dev, float global_host, float fmt_max, float* out,
                                 cudaStream_t stream) {
  FinalizeKernel<<<Grid(layout.num_groups), kThreads, 0, stream>>>(group_bits, layout, mode, global_dev, global_host,
                                                                   fmt_max, out);
  return cudaGetLastError();
}

cudaError_t LaunchNvfp4StaticScales(const float* amax_dev, float amax_host, int64_t n, const float* global_dev,
                                    float global_host, float fp8_norm, float* out, cudaStream_t stream) {
  Nvfp4StaticScalesKernel<<<Grid(n), kThreads, 0, stream>>>(amax_dev, amax_host, n, global_dev, global_host, fp8_norm,
                                                           out);
  return cudaGetLastError();
}

cudaError_t LaunchQdqSingle(const float* x, float* y, int64_t n, const QdqArgs& args, const float* param_dev,
                            float param_host, cudaStream_t stream) {
  const unsigned grid = Grid((n + 3) / 4);
  return VisitOp(args.op, [&](auto tag) {
    constexpr QdqOp op = decltype(tag)::value;
    if (args.round_bf16) {
      QdqSingleKernel<op, true><<<grid, kThreads, 0, stream>>>(x, y, n, args, param_dev, param_host);
    } else {
      QdqSingleKernel<op, false><<<grid, kThreads, 0, stream>>>(x, y, n, args, param_dev, param_host);
    }
    return cudaGetLastError();
  });
}

cudaError_t LaunchQdqGrouped(const float* x, float* y, const GroupLayout& layout, const QdqArgs& args,
                             const float* params, cudaStream_t stream) {
  if (layout.rank == 0) return LaunchQdqSingle(x, y, layout.numel, args, params, 0.0f, stream);
  const unsigned grid = Grid((layout.numel + 3) / 4);
  const bool fits = Fits32(layout.numel);
  return VisitOp(args.op, [&](auto tag) {
    constexpr QdqOp op = decltype(tag)::value;
    if (args.round_bf16) {
      if (fits) {
        QdqGroupedKernel<op, true, uint32_t><<<grid, kThreads, 0, stream>>>(x, y, layout, args, params);
      } else {
        QdqGroupedKernel<op, true, uint64_t><<<grid, kThreads, 0, stream>>>(x, y, layout, args, params);
      }
    } else {
      if (fits) {
        QdqGroupedKernel<op, false, uint32_t><<<grid, kThreads, 0, stream>>>(x, y, layout, args, params);
      } else {
        QdqGroupedKernel<op, false, uint64_t><<<grid, kThreads, 0, stream>>>(x, y, layout, args, params);
      }
    }
    return cudaGetLastError();
  });
}

cudaError_t LaunchBlockQdq(const float* x, float* y, int64_t rows, int64_t cols, int block, const QdqArgs& args,
                           const float* global_dev, float global_host, cudaStream_t stream) {
  if ((block != 16 && block != 32) || (args.op == QdqOp::kInt || args.op == QdqOp::kFp8)) return cudaErrorInvalidValue;
  const int64_t nblk = rows * ((cols + block - 1) / block);
  const unsigned grid = Grid(nblk);
  return VisitOp(args.op, [&](auto tag) {
    constexpr QdqOp op = decltype(tag)::value;
    if constexpr (op == QdqOp::kInt || op == QdqOp::kFp8) {
      return cudaErrorInvalidValue;
    } else {
      if (block == 16) {
        if (args.round_bf16) {
          BlockQdqKernel<op, 16, true><<<grid, kThreads, 0, stream>>>(x, y, rows, cols, args, global_dev, global_host);
        } else {
          BlockQdqKernel<op, 16, false><<<grid, kThreads, 0, stream>>>(x, y, rows, cols, args, global_dev, global_host);
        }
      } else {
        if (args.round_bf16) {
          BlockQdqKernel<op, 32, true><<<grid, kThreads, 0, stream>>>(x, y, rows, cols, args, global_dev, global_host);
        } else {
          BlockQdqKernel<op, 32, false><<<grid, kThreads, 0, stream>>>(x, y, rows, cols, args, global_dev, global_host);
        }
      }
      return cudaGetLastError();
    }
  });
}

namespace {

// Per-thread double sums, a warp shuffle tree, one pair of atomics per warp. A grid of a few waves.
__device__ __forceinline__ void AddErrorSums(double e2, double r2, double* sums) {
  for (int off = 16; off > 0; off >>= 1) {
    e2 += __shfl_down_sync(0xFFFFFFFFu, e2, off);
    r2 += __shfl_down_sync(0xFFFFFFFFu, r2, off);
  }
  if ((threadIdx.x & 31) == 0) {
    atomicAdd(&sums[0], e2);
    atomicAdd(&sums[1], r2);
  }
}

__global__ void __launch_bounds__(kThreads)
    Nvfp4ErrorKernel(const float* __restrict__ w, const uint8_t* __restrict__ packed,
                     const uint8_t* __restrict__ scales, int64_t n, float ws2, double* sums) {
  double e2 = 0, r2 = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const uint8_t byte = packed[i / 2];
    const float dq = DecodeNvfp4Element((i % 2 == 0) ? (byte & 0xF) : (byte >> 4), scales[i / 16], ws2);
    const double x = w[i], e = x - static_cast<double>(dq);
    e2 += e * e;
    r2 += x * x;
  }
  AddErrorSums(e2, r2, sums);
}

__global__ void __launch_bounds__(kThreads)
    Fp8ErrorKernel(const float* __restrict__ w, const uint8_t* __restrict__ codes, const float* __restrict__ scales,
                   int64_t n, int64_t group, double* sums) {
  double e2 = 0, r2 = 0;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float dq = DecodeE4M3(codes[i]) * scales[i / group];
    const double x = w[i], e = x - static_cast<double>(dq);
    e2 += e * e;
    r2 += x * x;
  }
  AddErrorSums(e2, r2, sums);
}

unsigned ErrorGrid(int64_t n) {
  const int64_t blocks = (n + kThreads * 8 - 1) / (kThreads * 8);
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > 132 * 8 ? 132 * 8 : blocks));
}

}  // namespace

cudaError_t LaunchNvfp4Error(const float* w, const uint8_t* packed, const uint8_t* scales, int64_t n,
                             float weight_scale_2, double* sums, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  Nvfp4ErrorKernel<<<ErrorGrid(n), kThreads, 0, stream>>>(w, packed, scales, n, weight_scale_2, sums);
  return cudaGetLastError();
}

cudaError_t LaunchFp8Error(const float* w, const uint8_t* codes, const float* scales, int64_t n, int64_t group,
                           double* sums, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  Fp8ErrorKernel<<<ErrorGrid(n), kThreads, 0, stream>>>(w, codes, scales, n, group, sums);
  return cudaGetLastError();
}

cudaError_t LaunchPackNvfp4(const float* w, int64_t nblk, float weight_scale_2, uint8_t* packed, uint8_t* scales,
                            int* nonfinite, cudaStream_t stream) {
  if (nblk == 0) return cudaSuccess;
  PackNvfp4Kernel<<<Grid(nblk), kThreads, 0, stream>>>(w, nblk, weight_scale_2, packed, scales, nonfinite);
  return cudaGetLastError();
}

cudaError_t LaunchEncodeFp8(const float* w, const float* scales, int64_t n, int64_t group, uint8_t* codes,
                            int* nonfinite, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const unsigned grid = Grid((n + 3) / 4);
  if (Fits32(n) && Fits32(group)) {
    EncodeFp8Kernel<uint32_t><<<grid, kThreads, 0, stream>>>(w, scales, static_cast<uint32_t>(n),
                                                             static_cast<uint32_t>(group), codes, nonfinite);
  } else {
    EncodeFp8Kernel<uint64_t><<<grid, kThreads, 0, stream>>>(w, scales, static_cast<uint64_t>(n),
                                                             static_cast<uint64_t>(group), codes, nonfinite);
  }
  return cudaGetLastError();
}

namespace {

// One thread per 16-element row block: numerics Nvfp4SweepRowBlocks' loop, with the same scalar QDQ and the
// double loss summed in element order with explicit round-to-nearest adds and products (no FMA
// contraction, which the host code does not do either), so every choice is the host's.
__global__ void Nvfp4SweepKernel(const float* w, int64_t rows, int64_t cols, int64_t nb, const float* scales, int n,
                                 int32_t* index) {
  extern __shared__ float s_scales[];
  for (int k = threadIdx.x; k < n; k += blockDim.x) s_scales[k] = scales[k];
  __syncthreads();
  for (int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; t < rows * nb; t += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = t / nb, b = t % nb;
    const float* x = w + r * cols + b * 16;
    const int m = static_cast<int>(cols - b * 16 < 16 ? cols - b * 16 : 16);
    float v[16];
    for (int e = 0; e < 16; ++e) v[e] = e < m ? x[e] : 0.0f;
    double best = CUDART_INF;
    int32_t best_k = 0;
    for (int k = 0; k < n; ++k) {
      const float s = s_scales[k];
      double loss = 0.0;
      for (int e = 0; e < m; ++e) {
        const float y = s == 0.0f ? 0.0f : Nvfp4QdqElement(v[e], IsFiniteF32(s) ? s : 1.0f);
        const double d = __dsub_rn(static_cast<double>(v[e]), static_cast<double>(y));
        loss = __dadd_rn(loss, __dmul_rn(d, d));
      }
      if (loss < best) {
        best = loss;
        best_k = k;
      }
    }
    index[t] = best_k;
  }
}

}  // namespace

cudaError_t LaunchNvfp4Sweep(const float* w, int64_t rows, int64_t cols, const float* scales, int n, int32_t* index,
                             cudaStream_t stream) {
  const int64_t nb = (cols + 15) / 16;
  if (rows * nb == 0) return cudaSuccess;
  Nvfp4SweepKernel<<<Grid(rows * nb), kThreads, static_cast<size_t>(n) * sizeof(float), stream>>>(w, rows, cols, nb,
                                                                                                  scales, n, index);
  return cudaGetLastError();
}

}  // namespace qforge::cuda::quant
