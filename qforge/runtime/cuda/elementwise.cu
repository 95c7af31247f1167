// Elementwise and row kernels of the CUDA backend: bf16 rounding, the GEMM epilogue, RmsNorm, RoPE,
// SiluMul, Add, SwapMiddleAxes, Softmax, SigmoidScaleRows, GatherRows, ScatterAddRows, EmbedRows, and the
// conversion of stored 16-bit weights.
//
// Where the CPU reference (cpu_backend.cc, built for baseline x86-64: no FMA) evaluates an expression of
// separately rounded products and sums, the kernels spell it with __fmul_rn / __fadd_rn so that nvcc
// does not contract it into an FMA: RoPE, Add, ScatterAddRows and the GEMM epilogue are then bit-identical
// to the CPU. Reductions (RmsNorm, Softmax) differ from it only by summation order; exp-based ops by the
// exp implementation (CUDA expf, <= 2 ulp, against the CPU's polynomial).
#include <cuda_runtime.h>

#include <cstdint>

#include "qforge/numerics/half.h"
#include "qforge/runtime/cuda/cuda_kernels.h"
#include "qforge/runtime/cuda/kernel_common.cuh"

namespace qforge::cuda {
namespace {

constexpr int kThreads = 256;

// The streaming ops (one pass over 1-3 arrays) as functors over one element, run by Map kernels that move
// float4 where every pointer is 16-byte aligned (a scalar kernel takes the n % 4 tail): a thread per
// element with scalar accesses reaches only about half of the memory bandwidth.
struct RoundOp {
  __device__ float operator()(float x, float) const { return RoundOut(x, true); }
};
struct SiluMulOp {
  bool round_bf16;
  __device__ float operator()(float g, float u) const {
    return RoundOut(__fmul_rn(g / __fadd_rn(1.f, expf(-g)), u), round_bf16);
  }
};
struct UMax {
  __device__ __forceinline__ uint32_t operator()(uint32_t a, uint32_t b) const { return a > b ? a : b; }
};
struct AddOp {
  bool round_bf16;
  __device__ float operator()(float y, float x) const { return RoundOut(__fadd_rn(y, x), round_bf16); }
};

// out[i] = op(a[i], b[i]); b may be null for unary ops (read as 0). out may equal a or b.
template <typename Op>
__global__ void MapKernel(const float* a, const float* b, float* out, int64_t n, Op op) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = op(a[i], b != nullptr ? b[i] : 0.f);
  }
}

template <typename Op>
__global__ void Map4Kernel(const float4* a, const float4* b, float4* out, int64_t n4, Op op) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n4; i += int64_t{gridDim.x} * blockDim.x) {
    const float4 x = a[i];
    const float4 y = b != nullptr ? b[i] : make_float4(0.f, 0.f, 0.f, 0.f);
    out[i] = make_float4(op(x.x, y.x), op(x.y, y.y), op(x.z, y.z), op(x.w, y.w));
  }
}

bool Aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <typename Op>
cudaError_t LaunchMap(const float* a, const float* b, float* out, int64_t n, Op op, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  int64_t done = 0;
  if (Aligned16(a) && Aligned16(b) && Aligned16(out) && n >= 4) {
    const int64_t n4 = n / 4;
    Map4Kernel<<<GridFor(n4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(a), reinterpret_cast<const float4*>(b), reinterpret_cast<float4*>(out), n4, op);
    done = n4 * 4;
  }
  if (done < n) {
    MapKernel<<<GridFor(n - done, kThreads), kThreads, 0, stream>>>(a + done, b != nullptr ? b + done : nullptr,
                                                                   out + done, n - done, op);
  }
  return cudaGetLastError();
}

__global__ void F32ToBf16Kernel(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = F32ToBf16Rne(x[i]);
  }
}

__global__ void F32ToBf16Kernel4(const float4* x, ushort4* y, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n4; i += int64_t{gridDim.x} * blockDim.x) {
    const float4 v = x[i];
    y[i] = make_ushort4(F32ToBf16Rne(v.x), F32ToBf16Rne(v.y), F32ToBf16Rne(v.z), F32ToBf16Rne(v.w));
  }
}

__global__ void Bf16ToF32Kernel(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    y[i] = Bf16ToF32(x[i]);
  }
}

__global__ void Bf16ToF32Kernel4(const ushort4* x, float4* y, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n4; i += int64_t{gridDim.x} * blockDim.x) {
    const ushort4 v = x[i];
    y[i] = make_float4(Bf16ToF32(v.x), Bf16ToF32(v.y), Bf16ToF32(v.z), Bf16ToF32(v.w));
  }
}

// out[i] = SiluMulOp(gate[i], up[i]) of bf16 operands (the bf16 GEMM outputs of GatedLinear), exactly
// SiluMul on their f32 widenings.
__global__ void SiluMulBf16Kernel(const uint16_t* gate, const uint16_t* up, float* out, int64_t n) {
  const SiluMulOp op{true};
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = op(Bf16ToF32(gate[i]), Bf16ToF32(up[i]));
  }
}

__global__ void SiluMulBf16Kernel4(const ushort4* gate, const ushort4* up, float4* out, int64_t n4) {
  const SiluMulOp op{true};
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n4; i += int64_t{gridDim.x} * blockDim.x) {
    const ushort4 g = gate[i], u = up[i];
    out[i] = make_float4(op(Bf16ToF32(g.x), Bf16ToF32(u.x)), op(Bf16ToF32(g.y), Bf16ToF32(u.y)),
                         op(Bf16ToF32(g.z), Bf16ToF32(u.z)), op(Bf16ToF32(g.w), Bf16ToF32(u.w)));
  }
}

// h[i] = SiluMulOp(gate[i], up[i]) as bf16 bits (the value is a bf16 already: exact), and, with amax not
// null, the largest |h| bit pattern folded into *amax (AmaxFold). With `vec` (all three arrays 8-byte
// aligned) n / 4 ushort4 groups first, then the tail; otherwise element by element.
__global__ void SiluMulToBf16Kernel(const uint16_t* gate, const uint16_t* up, uint16_t* h, int64_t n, bool vec,
                                    uint32_t* amax) {
  __shared__ uint32_t scratch[33];
  const SiluMulOp op{true};
  uint32_t m = 0;
  const auto one = [&](uint16_t g, uint16_t u) {
    const float v = op(Bf16ToF32(g), Bf16ToF32(u));
    const uint32_t bits = __float_as_uint(v) & 0x7FFFFFFFu;
    m = bits > m ? bits : m;
    return F32ToBf16Rne(v);
  };
  const int64_t n4 = vec ? n / 4 : 0, stride = int64_t{gridDim.x} * blockDim.x;
  const int64_t first = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  const auto* g4 = reinterpret_cast<const ushort4*>(gate);
  const auto* u4 = reinterpret_cast<const ushort4*>(up);
  auto* h4 = reinterpret_cast<ushort4*>(h);
  for (int64_t i = first; i < n4; i += stride) {
    const ushort4 g = g4[i], u = u4[i];
    h4[i] = make_ushort4(one(g.x, u.x), one(g.y, u.y), one(g.z, u.z), one(g.w, u.w));
  }
  for (int64_t i = 4 * n4 + first; i < n; i += stride) h[i] = one(gate[i], up[i]);
  if (amax != nullptr) {
    m = BlockReduce(m, UMax{}, 0u, scratch);
    if (threadIdx.x == 0 && m != 0) atomicMax(amax, m);
  }
}

// Rows r < m stride gridDim.y, columns j < n stride the x grid: the shape of every [rows, cols] kernel here.
#define QF_FOR_ROWS_COLS(m, n)                                                 \
  for (int64_t r = blockIdx.y; r < (m); r += gridDim.y)                        \
    for (int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; j < (n); \
         j += int64_t{gridDim.x} * blockDim.x)

dim3 RowsColsGrid(int64_t rows, int64_t cols) {
  int64_t gx = (cols + kThreads - 1) / kThreads;
  if (gx > 4096) gx = 4096;
  if (gx < 1) gx = 1;
  return dim3(static_cast<unsigned>(gx), GridRows(rows));
}

__global__ void BiasRoundKernel(float* y, const float* bias, int64_t m, int64_t n, int64_t ldy, bool round_bf16) {
  QF_FOR_ROWS_COLS(m, n) {
    float v = y[r * ldy + j];
    if (bias != nullptr) v = __fadd_rn(v, bias[j]);
    y[r * ldy + j] = RoundOut(v, round_bf16);
  }
}

// BiasRoundKernel on float4 columns (n, ldy multiples of 4; y, bias 16-byte aligned): n4 = n / 4, ldy4.
__global__ void BiasRound4Kernel(float4* y, const float4* bias, int64_t m, int64_t n4, int64_t ldy4, bool round_bf16) {
  QF_FOR_ROWS_COLS(m, n4) {
    float4 v = y[r * ldy4 + j];
    if (bias != nullptr) {
      const float4 b = bias[j];
      v = make_float4(__fadd_rn(v.x, b.x), __fadd_rn(v.y, b.y), __fadd_rn(v.z, b.z), __fadd_rn(v.w, b.w));
    }
    y[r * ldy4 + j] = make_float4(RoundOut(v.x, round_bf16), RoundOut(v.y, round_bf16), RoundOut(v.z, round_bf16),
                                  RoundOut(v.w, round_bf16));
  }
}

// One block per row: y = weight * (x * (1 / sqrt(mean(x^2) + eps))), the CPU's order of operations.
__global__ void RmsNormKernel(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps,
                              bool round_bf16) {
  __shared__ float scratch[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float ss = 0.f;
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) ss = fmaf(xr[j], xr[j], ss);
    ss = BlockReduce(ss, SumOp{}, 0.f, scratch);
    const float inv = 1.f / sqrtf(ss / static_cast<float>(dim) + eps);
    // In place (y == x) is safe: each thread rewrites only the elements it read.
    for (int64_t j = threadIdx.x; j < dim; j += blockDim.x) {
      yr[j] = RoundOut(__fmul_rn(weight[j], __fmul_rn(xr[j], inv)), round_bf16);
    }
  }
}

// One thread per rotated pair (row of [rows*seq], i < half).
__global__ void RopeKernel(float* x, int64_t pairs, int64_t seq, int64_t half, const float* cos, const float* sin,
                           bool round_bf16) {
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < pairs; p += int64_t{gridDim.x} * blockDim.x) {
    const int64_t rs = p / half, i = p - rs * half;
    const int64_t pos = rs % seq;
    float* v = x + rs * 2 * half;
    const float a = v[i], b = v[i + half];
    const float c = cos[pos * half + i], s = sin[pos * half + i];
    v[i] = RoundOut(__fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s)), round_bf16);
    v[i + half] = RoundOut(__fadd_rn(__fmul_rn(b, c), __fmul_rn(a, s)), round_bf16);
  }
}

// RopeKernel reading tokens-major x [batch, seq, heads, 2*half] and writing heads-major y [batch, heads, seq,
// 2*half] (SwapMiddleAxes' rounding, then RoPE's): one thread per output pair, p over y's order.
__global__ void RopeToHeadsKernel(const float* x, float* y, int64_t pairs, int64_t heads, int64_t seq, int64_t half,
                                  const float* cos, const float* sin, bool round_bf16) {
  for (int64_t p = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; p < pairs; p += int64_t{gridDim.x} * blockDim.x) {
    const int64_t rs = p / half, i = p - rs * half;  // rs: row of y, ((b * heads + h) * seq + pos)
    const int64_t pos = rs % seq, bh = rs / seq, h = bh % heads, b = bh / heads;
    const float* u = x + ((b * seq + pos) * heads + h) * 2 * half;
    float* v = y + rs * 2 * half;
    const float a = RoundOut(u[i], round_bf16), bb = RoundOut(u[i + half], round_bf16);
    const float c = cos[pos * half + i], s = sin[pos * half + i];
    v[i] = RoundOut(__fsub_rn(__fmul_rn(a, c), __fmul_rn(bb, s)), round_bf16);
    v[i + half] = RoundOut(__fadd_rn(__fmul_rn(bb, c), __fmul_rn(a, s)), round_bf16);
  }
}

// x [a, b, c, d] -> y [a, c, b, d], one thread per output element of T (float, or float4 when d % 4 == 0).
template <typename T>
__global__ void SwapMiddleAxesKernel(const T* x, T* y, int64_t a, int64_t b, int64_t c, int64_t d, bool round_bf16) {
  const int64_t n = a * b * c * d;
  for (int64_t o = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; o < n; o += int64_t{gridDim.x} * blockDim.x) {
    const int64_t e = o % d;
    int64_t rest = o / d;
    const int64_t j = rest % b;
    rest /= b;
    const int64_t l = rest % c;
    const int64_t i = rest / c;
    T v = x[((i * b + j) * c + l) * d + e];
    if constexpr (sizeof(T) == sizeof(float4)) {
      v.x = RoundOut(v.x, round_bf16);
      v.y = RoundOut(v.y, round_bf16);
      v.z = RoundOut(v.z, round_bf16);
      v.w = RoundOut(v.w, round_bf16);
    } else {
      v = RoundOut(v, round_bf16);
    }
    y[o] = v;
  }
}

// One block per row: max, then exp(x - max) summed, then times 1 / sum (the CPU's SoftmaxRow).
__global__ void SoftmaxKernel(float* x, int64_t rows, int64_t cols, bool round_bf16) {
  __shared__ float scratch[33];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    float* xr = x + r * cols;
    float mx = -INFINITY;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) mx = fmaxf(mx, xr[j]);
    mx = BlockReduce(mx, MaxOp{}, -INFINITY, scratch);
    float sum = 0.f;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) {
      const float e = expf(xr[j] - mx);
      xr[j] = e;
      sum += e;
    }
    sum = BlockReduce(sum, SumOp{}, 0.f, scratch);
    const float inv = 1.f / sum;
    for (int64_t j = threadIdx.x; j < cols; j += blockDim.x) xr[j] = RoundOut(__fmul_rn(xr[j], inv), round_bf16);
  }
}

__global__ void SigmoidScaleRowsKernel(float* x, const float* gate_logits, int64_t rows, int64_t cols,
                                       bool round_bf16) {
  QF_FOR_ROWS_COLS(rows, cols) {
    const float g = 1.f / __fadd_rn(1.f, expf(-gate_logits[r]));
    x[r * cols + j] = RoundOut(__fmul_rn(x[r * cols + j], g), round_bf16);
  }
}

__global__ void ScaleColumnsKernel(float* x, const float* scale, int64_t rows, int64_t cols, bool round_bf16) {
  QF_FOR_ROWS_COLS(rows, cols) { x[r * cols + j] = RoundOut(__fmul_rn(x[r * cols + j], scale[j]), round_bf16); }
}

__global__ void GatherRowsKernel(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim,
                                 bool round_bf16) {
  QF_FOR_ROWS_COLS(rows, dim) {
    out[r * dim + j] = RoundOut(x[static_cast<int64_t>(rows_idx[r]) * dim + j], round_bf16);
  }
}

// Rows of rows_idx are distinct within a call (the contract), so no two threads touch one element.
__global__ void ScatterAddRowsKernel(const float* x, const int32_t* rows_idx, const float* row_weights, float* y,
                                     int64_t rows, int64_t dim, bool round_bf16) {
  QF_FOR_ROWS_COLS(rows, dim) {
    float* yv = y + static_cast<int64_t>(rows_idx[r]) * dim + j;
    *yv = RoundOut(__fadd_rn(*yv, __fmul_rn(row_weights[r], x[r * dim + j])), round_bf16);
  }
}

__global__ void EmbedRowsKernel(const void* table, int kind, const int32_t* ids, float* out, int64_t rows,
                                int64_t dim, bool round_bf16) {
  QF_FOR_ROWS_COLS(rows, dim) {
    const int64_t src = static_cast<int64_t>(ids[r]) * dim + j;
    float v;
    if (kind == kEmbedF32) {
      v = static_cast<const float*>(table)[src];
    } else if (kind == kEmbedF16) {
      v = F16ToF32(static_cast<const uint16_t*>(table)[src]);
    } else {
      v = Bf16ToF32(static_cast<const uint16_t*>(table)[src]);
    }
    out[r * dim + j] = RoundOut(v, round_bf16);
  }
}

__global__ void ConvertHalfKernel(const uint16_t* x, int kind, int64_t n, float* out_f32, uint16_t* out_bf16) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const float v = kind == kEmbedF16 ? F16ToF32(x[i]) : Bf16ToF32(x[i]);
    if (out_f32 != nullptr) {
      out_f32[i] = v;
    } else {
      out_bf16[i] = F32ToBf16Rne(v);
    }
  }
}

#undef QF_FOR_ROWS_COLS

}  // namespace

cudaError_t ProbeKernelImage() {
  cudaFuncAttributes attr;
  return cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(&F32ToBf16Kernel));
}

cudaError_t LaunchRoundBf16(float* x, int64_t n, cudaStream_t stream) {
  return LaunchMap(x, nullptr, x, n, RoundOp{}, stream);
}

cudaError_t LaunchF32ToBf16(const float* x, uint16_t* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  int64_t done = 0;
  if (Aligned16(x) && reinterpret_cast<uintptr_t>(y) % 8 == 0 && n >= 4) {
    const int64_t n4 = n / 4;
    F32ToBf16Kernel4<<<GridFor(n4, kThreads), kThreads, 0, stream>>>(reinterpret_cast<const float4*>(x),
                                                                      reinterpret_cast<ushort4*>(y), n4);
    done = n4 * 4;
  }
  if (done < n) F32ToBf16Kernel<<<GridFor(n - done, kThreads), kThreads, 0, stream>>>(x + done, y + done, n - done);
  return cudaGetLastError();
}

cudaError_t LaunchBiasRound(float* y, const float* bias, int64_t m, int64_t n, int64_t ldy, bool round_bf16,
                            cudaStream_t stream) {
  if (m <= 0 || n <= 0 || (bias == nullptr && !round_bf16)) return cudaSuccess;
  if (n % 4 == 0 && ldy % 4 == 0 && Aligned16(y) && Aligned16(bias)) {
    BiasRound4Kernel<<<RowsColsGrid(m, n / 4), kThreads, 0, stream>>>(
        reinterpret_cast<float4*>(y), reinterpret_cast<const float4*>(bias), m, n / 4, ldy / 4, round_bf16);
  } else {
    BiasRoundKernel<<<RowsColsGrid(m, n), kThreads, 0, stream>>>(y, bias, m, n, ldy, round_bf16);
  }
  return cudaGetLastError();
}

cudaError_t LaunchRmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps,
                          bool round_bf16, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaSuccess;
  RmsNormKernel<<<RowBlocks(rows), RowThreads(dim), 0, stream>>>(x, weight, y, rows, dim, eps, round_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchRope(float* x, int64_t rows, int64_t seq, int64_t head_dim, const float* cos, const float* sin,
                       bool round_bf16, cudaStream_t stream) {
  const int64_t half = head_dim / 2, pairs = rows * seq * half;
  if (pairs <= 0) return cudaSuccess;
  RopeKernel<<<GridFor(pairs, kThreads), kThreads, 0, stream>>>(x, pairs, seq, half, cos, sin, round_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchRopeToHeads(const float* x, float* y, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim,
                              const float* cos, const float* sin, bool round_bf16, cudaStream_t stream) {
  const int64_t half = head_dim / 2, pairs = batch * heads * seq * half;
  if (pairs <= 0) return cudaSuccess;
  RopeToHeadsKernel<<<GridFor(pairs, kThreads), kThreads, 0, stream>>>(x, y, pairs, heads, seq, half, cos, sin,
                                                                       round_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchBf16ToF32(const uint16_t* x, float* y, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  int64_t done = 0;
  if (reinterpret_cast<uintptr_t>(x) % 8 == 0 && Aligned16(y) && n >= 4) {
    const int64_t n4 = n / 4;
    Bf16ToF32Kernel4<<<GridFor(n4, kThreads), kThreads, 0, stream>>>(reinterpret_cast<const ushort4*>(x),
                                                                      reinterpret_cast<float4*>(y), n4);
    done = n4 * 4;
  }
  if (done < n) Bf16ToF32Kernel<<<GridFor(n - done, kThreads), kThreads, 0, stream>>>(x + done, y + done, n - done);
  return cudaGetLastError();
}

cudaError_t LaunchSiluMul(const float* gate, const float* up, float* out, int64_t n, bool round_bf16,
                          cudaStream_t stream) {
  return LaunchMap(gate, up, out, n, SiluMulOp{round_bf16}, stream);
}

cudaError_t LaunchSiluMulBf16(const uint16_t* gate, const uint16_t* up, float* out, int64_t n, cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  int64_t done = 0;
  const auto a8 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; };
  if (a8(gate) && a8(up) && Aligned16(out) && n >= 4) {
    const int64_t n4 = n / 4;
    SiluMulBf16Kernel4<<<GridFor(n4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<const ushort4*>(gate), reinterpret_cast<const ushort4*>(up), reinterpret_cast<float4*>(out),
        n4);
    done = n4 * 4;
  }
  if (done < n) {
    SiluMulBf16Kernel<<<GridFor(n - done, kThreads), kThreads, 0, stream>>>(gate + done, up + done, out + done,
                                                                           n - done);
  }
  return cudaGetLastError();
}

cudaError_t LaunchSiluMulToBf16(const uint16_t* gate, const uint16_t* up, uint16_t* h, int64_t n, uint32_t* amax,
                                cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  const auto a8 = [](const void* p) { return reinterpret_cast<uintptr_t>(p) % 8 == 0; };
  const bool vec = a8(gate) && a8(up) && a8(h);
  unsigned blocks = GridFor(vec ? (n + 3) / 4 : n, kThreads);
  if (blocks > 132 * 16) blocks = 132 * 16;  // grid-stride: a few waves, few atomics
  SiluMulToBf16Kernel<<<blocks, kThreads, 0, stream>>>(gate, up, h, n, vec, amax);
  return cudaGetLastError();
}

cudaError_t LaunchAdd(float* y, const float* x, int64_t n, bool round_bf16, cudaStream_t stream) {
  return LaunchMap(y, x, y, n, AddOp{round_bf16}, stream);
}

cudaError_t LaunchSwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d,
                                 bool round_bf16, cudaStream_t stream) {
  const int64_t n = a * b * c * d;
  if (n <= 0) return cudaSuccess;
  const bool vec = d % 4 == 0 && Aligned16(x) && Aligned16(y);
  if (vec) {
    SwapMiddleAxesKernel<float4><<<GridFor(n / 4, kThreads), kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(x), reinterpret_cast<float4*>(y), a, b, c, d / 4, round_bf16);
  } else {
    SwapMiddleAxesKernel<float><<<GridFor(n, kThreads), kThreads, 0, stream>>>(x, y, a, b, c, d, round_bf16);
  }
  return cudaGetLastError();
}

cudaError_t LaunchSoftmax(float* x, int64_t rows, int64_t cols, bool round_bf16, cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  SoftmaxKernel<<<RowBlocks(rows), RowThreads(cols), 0, stream>>>(x, rows, cols, round_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchSigmoidScaleRows(float* x, const float* gate_logits, int64_t rows, int64_t cols, bool round_bf16,
                                   cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  SigmoidScaleRowsKernel<<<RowsColsGrid(rows, cols), kThreads, 0, stream>>>(x, gate_logits, rows, cols, round_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchScaleColumns(float* x, const float* scale, int64_t rows, int64_t cols, bool round_bf16,
                               cudaStream_t stream) {
  if (rows <= 0 || cols <= 0) return cudaSuccess;
  ScaleColumnsKernel<<<RowsColsGrid(rows, cols), kThreads, 0, stream>>>(x, scale, rows, cols, round_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchGatherRows(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim,
                             bool round_bf16, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaSuccess;
  GatherRowsKernel<<<RowsColsGrid(rows, dim), kThreads, 0, stream>>>(x, rows_idx, out, rows, dim, round_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchScatterAddRows(const float* x, const int32_t* rows_idx, const float* row_weights, float* y,
                                 int64_t rows, int64_t dim, bool round_bf16, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaSuccess;
  ScatterAddRowsKernel<<<RowsColsGrid(rows, dim), kThreads, 0, stream>>>(x, rows_idx, row_weights, y, rows, dim,
                                                                         round_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchConvertHalf(const uint16_t* x, int kind, int64_t n, float* out_f32, uint16_t* out_bf16,
                              cudaStream_t stream) {
  if (n <= 0) return cudaSuccess;
  ConvertHalfKernel<<<GridFor(n, kThreads), kThreads, 0, stream>>>(x, kind, n, out_f32, out_bf16);
  return cudaGetLastError();
}

cudaError_t LaunchEmbedRows(const void* table, int table_kind, const int32_t* ids, float* out, int64_t rows,
                            int64_t dim, bool round_bf16, cudaStream_t stream) {
  if (rows <= 0 || dim <= 0) return cudaSuccess;
  EmbedRowsKernel<<<RowsColsGrid(rows, dim), kThreads, 0, stream>>>(table, table_kind, ids, out, rows, dim,
                                                                    round_bf16);
  return cudaGetLastError();
}

}  // namespace qforge::cuda
