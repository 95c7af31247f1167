// CPU backend: OpenBLAS sgemm for matrix products, OpenMP loops for the rest.
#include "qforge/runtime/cpu/cpu_backend.h"
#include "qforge/runtime/cpu/quant_kernels.h"
#include "qforge/numerics/half.h"

#include <cblas.h>
#include <omp.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/tensor/tensor.h"

namespace qforge {
namespace {

// OpenMP is the only thread pool: OpenBLAS runs single-threaded inside OpenMP regions. Two pools on the
// same cores (OpenBLAS's pthreads and OpenMP's spinning workers) slow small models down by 20x or more.
// (On a machine shared with other busy processes, OMP_WAIT_POLICY=passive or OMP_DYNAMIC=true avoid
// spinning at barriers for descheduled workers. OMP_DYNAMIC is not enabled here: libgomp sizes teams by
// the 15-minute load average, which a long run of this process drives up itself.)
void UseOpenMpOnly() {
  static const bool once = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)once;
}

// GEMMs with fewer multiply-adds than this run on one thread.
constexpr int64_t kGemmParallelMacs = 1 << 22;

// Rows below this many elements of work run on one thread (OpenMP start-up costs more than the loop).
constexpr int64_t kParallelGrain = 1 << 16;

// Hot elementwise kernels are compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time
// (GCC function multiversioning), so their loops vectorize without a global -march flag.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QF_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QF_SIMD_CLONES
#endif

// exp(x) for x in float range, branch-free so loops over it vectorize: Cody-Waite reduction by ln 2 and a
// degree-6 polynomial (Cephes expf coefficients), about 1 ulp. Inputs below -87.3 return ~1e-38 (treat
// as 0), above 88.7 saturate.
inline float ExpApprox(float x) {
  x = std::min(std::max(x, -87.3f), 88.7f);
  constexpr float kRound = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits
  const float t = x * 1.44269504088896341f + kRound;
  const float n = t - kRound;
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float e = p * r * r + r + 1.f;
  const int32_t bits = (std::bit_cast<int32_t>(t) - 0x4B400000 + 127) << 23;
  return e * std::bit_cast<float>(bits);
}

// Softmax of row[0, n) in place.
QF_SIMD_CLONES void SoftmaxRow(float* row, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j) {
    const float e = ExpApprox(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  const float inv = 1.f / sum;
#pragma omp simd
  for (int64_t j = 0; j < n; ++j) row[j] *= inv;
}

QF_SIMD_CLONES void SiluMulSpan(const float* gate, const float* up, float* out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.f + ExpApprox(-g)) * up[i];
  }
}

// log(Σ exp(row[j])) over j < n.
QF_SIMD_CLONES double LogSumExp(const float* row, int64_t n) {
  float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j]);
  // Partial sums of at most 1024 terms in float, then double.
  double total = 0;
  for (int64_t j0 = 0; j0 < n; j0 += 1024) {
    const int64_t j1 = std::min(n, j0 + 1024);
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = j0; j < j1; ++j) s += ExpApprox(row[j] - mx);
    total += s;
  }
  return static_cast<double>(mx) + std::log(total);
}

}  // namespace

CpuBackend::CpuBackend() : Backend(ComputeDType::kF32) { UseOpenMpOnly(); }

void CpuBackend::Gemm(const float* x, WeightRef wref, const float* bias, float* y, int64_t m, int64_t n, int64_t k,
                      bool accumulate, int64_t ldy) {
  QF_ASSERT(wref.dtype == DType::kF32, "CPU Gemm: weights must be F32, got {}", DTypeName(wref.dtype));
  const float* w = static_cast<const float*>(wref.data);
  if (ldy == 0) ldy = n;
  QF_ASSERT(ldy >= n, "Gemm: ldy {} < n {}", ldy, n);
  if (m == 0 || n == 0) return;
  // One tile: rows [r0, r1) x columns [c0, c1) of y, on the calling thread.
  auto tile = [&](int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    if (r1 <= r0 || c1 <= c0) return;
    float beta = accumulate ? 1.f : 0.f;
    if (bias != nullptr) {
      for (int64_t r = r0; r < r1; ++r) {
        float* yr = y + r * ldy;
        if (accumulate) {
#pragma omp simd
          for (int64_t j = c0; j < c1; ++j) yr[j] += bias[j];
        } else {
          std::memcpy(yr + c0, bias + c0, (c1 - c0) * sizeof(float));
        }
      }
      beta = 1.f;
    }
    if (k == 0) {
      if (beta == 0.f) {
        for (int64_t r = r0; r < r1; ++r) std::memset(y + r * ldy + c0, 0, (c1 - c0) * sizeof(float));
      }
      return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(r1 - r0), static_cast<int>(c1 - c0),
                static_cast<int>(k), 1.f, x + r0 * k, static_cast<int>(k), w + c0 * k, static_cast<int>(k), beta,
                y + r0 * ldy + c0, static_cast<int>(ldy));
  };
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (threads == 1 || m * n * k < kGemmParallelMacs) {
    tile(0, m, 0, n);
    return;
  }
  // A tr x tc grid of tiles, one per thread, chosen to minimize what the threads pack in total
  // (each packs its m/tr rows of x and its n/tc rows of w, k wide).
  int tr = 1;
  double best = 1e300;
  for (int r = 1; r <= threads; ++r) {
    if (threads % r != 0) continue;
    const int c = threads / r;
    if (m < 8 * r || n < 16 * c) continue;
    const double cost = static_cast<double>(m) / r + static_cast<double>(n) / c;
    if (cost < best) {
      best = cost;
      tr = r;
    }
  }
  const int tc = threads / tr;
  const int64_t rows_per = ((m + tr - 1) / tr + 7) / 8 * 8;
  const int64_t cols_per = ((n + tc - 1) / tc + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < tr * tc; ++t) {
    const int64_t r0 = std::min(m, (t / tc) * rows_per);
    const int64_t c0 = std::min(n, (t % tc) * cols_per);
    tile(r0, std::min(m, r0 + rows_per), c0, std::min(n, c0 + cols_per));
  }
}

void CpuBackend::RmsNorm(const float* x, const float* weight, float* y, int64_t rows, int64_t dim, float eps) {
#pragma omp parallel for if (rows * dim > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = y + r * dim;
    float ss = 0.f;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < dim; ++j) ss += xr[j] * xr[j];
    const float inv = 1.f / std::sqrt(ss / static_cast<float>(dim) + eps);
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) yr[j] = weight[j] * (xr[j] * inv);
  }
}

void CpuBackend::Rope(float* x, int64_t batch, int64_t heads, int64_t seq, int64_t head_dim, const float* cos,
                      const float* sin) {
  QF_ASSERT(head_dim % 2 == 0, "Rope: odd head_dim {}", head_dim);
  const int64_t half = head_dim / 2;
  const int64_t rows = batch * heads * seq;
#pragma omp parallel for if (rows * head_dim > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = r % seq;
    float* v = x + r * head_dim;
    const float* c = cos + pos * half;
    const float* s = sin + pos * half;
#pragma omp simd
    for (int64_t i = 0; i < half; ++i) {
      const float a = v[i];
      const float b = v[i + half];
      v[i] = a * c[i] - b * s[i];
      v[i + half] = b * c[i] + a * s[i];
    }
  }
}

void CpuBackend::CausalAttention(const float* q, const float* k, const float* v, float* out, int64_t batch,
                                 int64_t heads, int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) {
  QF_ASSERT(kv_heads > 0 && heads % kv_heads == 0, "CausalAttention: heads {} kv_heads {}", heads, kv_heads);
  const int64_t group = heads / kv_heads;
  // Query rows are processed in blocks so the score matrix only spans the keys the block can see. Every
  // (sequence, head, query block) is an independent task, the costliest (last) blocks first; sgemm runs
  // single-threaded inside.
  constexpr int64_t kBlock = 64;
  const int64_t d = head_dim;
  const int64_t blocks = (seq + kBlock - 1) / kBlock;
  const int64_t tasks = batch * heads * blocks;
#pragma omp parallel if (tasks > 1 && seq * seq * d * batch * heads > kParallelGrain)
  {
    std::vector<float> scores(static_cast<size_t>(std::min(kBlock, seq) * seq));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t blk = blocks - 1 - task / (batch * heads);
      const int64_t p = task % (batch * heads);
      const int64_t b = p / heads, h = p % heads;
      const float* qh = q + (b * heads + h) * seq * d;
      const float* kh = k + (b * kv_heads + h / group) * seq * d;
      const float* vh = v + (b * kv_heads + h / group) * seq * d;
      const int64_t i0 = blk * kBlock;
      const int64_t nb = std::min(kBlock, seq - i0);
      const int64_t nk = i0 + nb;
      float* s = scores.data();
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(nb), static_cast<int>(nk),
                  static_cast<int>(d), scale, qh + i0 * d, static_cast<int>(d), kh, static_cast<int>(d), 0.f, s,
                  static_cast<int>(nk));
      for (int64_t r = 0; r < nb; ++r) {
        float* row = s + r * nk;
        const int64_t valid = i0 + r + 1;
        SoftmaxRow(row, valid);
        std::fill(row + valid, row + nk, 0.f);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(nb), static_cast<int>(d),
                  static_cast<int>(nk), 1.f, s, static_cast<int>(nk), vh, static_cast<int>(d), 0.f,
                  out + ((b * seq + i0) * heads + h) * d, static_cast<int>(heads * d));
    }
  }
}

void CpuBackend::CausalAttentionProbs(const float* q, const float* k, float* probs, int64_t batch, int64_t heads,
                                      int64_t kv_heads, int64_t seq, int64_t head_dim, float scale) {
  QF_ASSERT(kv_heads > 0 && heads % kv_heads == 0, "CausalAttentionProbs: heads {} kv_heads {}", heads, kv_heads);
  const int64_t group = heads / kv_heads;
  const int64_t d = head_dim;
#pragma omp parallel for schedule(dynamic, 1) if (batch * heads > 1 && seq * seq * d > kParallelGrain)
  for (int64_t p = 0; p < batch * heads; ++p) {
    const int64_t b = p / heads, h = p % heads;
    float* pr = probs + p * seq * seq;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(seq), static_cast<int>(seq),
                static_cast<int>(d), scale, q + p * seq * d, static_cast<int>(d),
                k + (b * kv_heads + h / group) * seq * d, static_cast<int>(d), 0.f, pr, static_cast<int>(seq));
    for (int64_t i = 0; i < seq; ++i) {
      SoftmaxRow(pr + i * seq, i + 1);
      std::fill(pr + i * seq + i + 1, pr + (i + 1) * seq, 0.f);
    }
  }
}

void CpuBackend::AttentionApply(const float* probs, const float* v, float* out, int64_t batch, int64_t heads,
                                int64_t kv_heads, int64_t seq, int64_t head_dim) {
  QF_ASSERT(kv_heads > 0 && heads % kv_heads == 0, "AttentionApply: heads {} kv_heads {}", heads, kv_heads);
  const int64_t group = heads / kv_heads;
  const int64_t d = head_dim;
#pragma omp parallel for schedule(dynamic, 1) if (batch * heads > 1 && seq * seq * d > kParallelGrain)
  for (int64_t p = 0; p < batch * heads; ++p) {
    const int64_t b = p / heads, h = p % heads;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(seq), static_cast<int>(d),
                static_cast<int>(seq), 1.f, probs + p * seq * seq, static_cast<int>(seq),
                v + (b * kv_heads + h / group) * seq * d, static_cast<int>(d), 0.f, out + (b * seq * heads + h) * d,
                static_cast<int>(heads * d));
  }
}

void CpuBackend::Softmax(float* x, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) SoftmaxRow(x + r * cols, cols);
}

void CpuBackend::SiluMul(const float* gate, const float* up, float* out, int64_t n) {
  constexpr int64_t kChunk = 1 << 14;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for if (n > kParallelGrain)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t i0 = c * kChunk;
    SiluMulSpan(gate + i0, up + i0, out + i0, std::min(kChunk, n - i0));
  }
}

void CpuBackend::Add(float* y, const float* x, int64_t n) {
#pragma omp parallel for simd if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void CpuBackend::BlockGram(const float* x, int64_t rows, int64_t cols, int64_t block, float* h) {
  QF_ASSERT(block > 0 && cols % block == 0, "BlockGram: {} columns are not a multiple of the block {}", cols, block);
  const int64_t nb = cols / block;
  if (rows == 0) return;
#pragma omp parallel for schedule(static) if (nb > 1 && rows * cols > kParallelGrain)
  for (int64_t j = 0; j < nb; ++j) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, static_cast<int>(block), static_cast<int>(block),
                static_cast<int>(rows), 1.f, x + j * block, static_cast<int>(cols), x + j * block,
                static_cast<int>(cols), 1.f, h + j * block * block, static_cast<int>(block));
  }
}

void CpuBackend::ToBf16(const float* x, uint16_t* y, int64_t n) {
#pragma omp parallel for simd if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) y[i] = F32ToBf16Rne(x[i]);
}

void CpuBackend::FromBf16(const uint16_t* x, float* y, int64_t n) {
#pragma omp parallel for simd if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) y[i] = Bf16ToF32(x[i]);
}

void CpuBackend::SwapMiddleAxes(const float* x, float* y, int64_t a, int64_t b, int64_t c, int64_t d) {
#pragma omp parallel for collapse(2) if (a * b * c * d > kParallelGrain)
  for (int64_t i = 0; i < a; ++i) {
    for (int64_t j = 0; j < b; ++j) {
      for (int64_t l = 0; l < c; ++l) {
        std::memcpy(y + ((i * c + l) * b + j) * d, x + ((i * b + j) * c + l) * d, d * sizeof(float));
      }
    }
  }
}

void CpuBackend::EmbedRows(const void* table, DType table_dtype, const int32_t* ids, float* out, int64_t rows,
                           int64_t dim) {
  const auto* base = static_cast<const std::byte*>(table);
  const size_t row_bytes = static_cast<size_t>(dim) * DTypeSize(table_dtype);
#pragma omp parallel for if (rows * dim > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) ConvertToF32(table_dtype, base + ids[r] * row_bytes, out + r * dim, dim);
}

std::vector<int64_t> CpuBackend::GroupRowsByExpert(const int32_t* expert_ids, const float* topk_w, int64_t tokens,
                                                   int top_k, int64_t experts, int32_t* rows, float* weights) {
  // Counting sort by expert; the pairs are visited in token order, so tokens increase within an expert.
  const int64_t n = tokens * top_k;
  std::vector<int64_t> start(static_cast<size_t>(experts) + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    QF_ASSERT(expert_ids[i] >= 0 && expert_ids[i] < experts, "expert id {} of {}", expert_ids[i], experts);
    ++start[static_cast<size_t>(expert_ids[i]) + 1];
  }
  for (int64_t e = 0; e < experts; ++e) start[e + 1] += start[e];
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t s = 0; s < top_k; ++s) {
      const int32_t e = expert_ids[t * top_k + s];
      rows[fill[e]] = static_cast<int32_t>(t);
      weights[fill[e]] = topk_w[t * top_k + s];
      ++fill[e];
    }
  }
  return start;
}

void CpuBackend::TopKRouting(const float* logits, int64_t tokens, int64_t experts, int top_k, bool renormalize,
                             int32_t* expert_ids, float* weights) {
  QF_ASSERT(top_k >= 1 && top_k <= experts, "TopKRouting: top_k {} of {} experts", top_k, experts);
#pragma omp parallel for if (tokens * experts > kParallelGrain)
  for (int64_t t = 0; t < tokens; ++t) {
    std::vector<float> p(logits + t * experts, logits + (t + 1) * experts);
    SoftmaxRow(p.data(), experts);
    int32_t* ids = expert_ids + t * top_k;
    float* w = weights + t * top_k;
    float sum = 0.f;
    for (int s = 0; s < top_k; ++s) {
      int32_t best = -1;
      for (int64_t e = 0; e < experts; ++e) {
        bool taken = false;
        for (int u = 0; u < s; ++u) taken |= ids[u] == e;
        if (taken) continue;
        if (best < 0 || p[e] > p[best]) best = static_cast<int32_t>(e);
      }
      ids[s] = best;
      w[s] = p[best];
      sum += p[best];
    }
    if (renormalize) {
      for (int s = 0; s < top_k; ++s) w[s] /= sum;
    }
  }
}

void CpuBackend::SigmoidScaleRows(float* x, const float* gate_logits, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const float g = 1.f / (1.f + std::exp(-gate_logits[r]));
    float* xr = x + r * cols;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) xr[j] *= g;
  }
}

void CpuBackend::ScaleColumns(float* x, const float* scale, int64_t rows, int64_t cols) {
#pragma omp parallel for if (rows * cols > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * cols;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) xr[j] *= scale[j];
  }
}

void CpuBackend::GatherRows(const float* x, const int32_t* rows_idx, float* out, int64_t rows, int64_t dim) {
#pragma omp parallel for if (rows * dim > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) std::memcpy(out + r * dim, x + rows_idx[r] * dim, dim * sizeof(float));
}

void CpuBackend::ScatterAddRows(const float* x, const int32_t* rows_idx, const float* row_weights, float* y,
                                int64_t rows, int64_t dim) {
#pragma omp parallel for if (rows * dim > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    float* yr = y + static_cast<int64_t>(rows_idx[r]) * dim;
    const float* xr = x + r * dim;
    const float wr = row_weights[r];
#pragma omp simd
    for (int64_t j = 0; j < dim; ++j) yr[j] += wr * xr[j];
  }
}

float CpuBackend::Amax(const float* x, int64_t n) {
  float m = 0.f;
  bool nan = false;
#pragma omp parallel for reduction(max : m) reduction(|| : nan) if (n > kParallelGrain)
  for (int64_t i = 0; i < n; ++i) {
    const float a = std::fabs(x[i]);
    nan = nan || std::isnan(a);
    m = std::max(m, a);
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

void CpuBackend::CrossEntropy(const float* logits, const int32_t* targets, double* nll, int64_t rows, int64_t vocab) {
#pragma omp parallel for if (rows * vocab > kParallelGrain)
  for (int64_t r = 0; r < rows; ++r) {
    const float* lr = logits + r * vocab;
    nll[r] = LogSumExp(lr, vocab) - static_cast<double>(lr[targets[r]]);
  }
}

void BlasSgemmOwnThreads(const float* x, const float* w, float* y, int64_t m, int64_t n, int64_t k, int threads) {
  openblas_set_num_threads(threads);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              1.f, x, static_cast<int>(k), w, static_cast<int>(k), 0.f, y, static_cast<int>(n));
  openblas_set_num_threads(1);
}

void* CpuBackend::AllocBytes(int64_t bytes) {
  // 64-byte alignment for the SIMD kernels; sizes rounded up as aligned_alloc requires.
  const size_t n = (static_cast<size_t>(bytes) + 63) & ~size_t{63};
  void* p = std::aligned_alloc(64, n);
  QF_CHECK(p != nullptr, "out of host memory allocating {} bytes", bytes);
  return p;
}

void CpuBackend::FreeBytes(void* p, int64_t) { std::free(p); }
void CpuBackend::CopyToDevice(void* dst, const void* host, int64_t bytes) { std::memcpy(dst, host, bytes); }
void CpuBackend::CopyToHost(void* host, const void* src, int64_t bytes) { std::memcpy(host, src, bytes); }
void CpuBackend::Copy(void* dst, const void* src, int64_t bytes) {
  if (dst != src) std::memcpy(dst, src, bytes);
}
void CpuBackend::Zero(void* dst, int64_t bytes) { std::memset(dst, 0, bytes); }

std::pair<int64_t, int64_t> CpuBackend::MemoryInfo() const {
  const long pages = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return {static_cast<int64_t>(avail) * size, static_cast<int64_t>(pages) * size};
}

const HostQuantKernels* CpuBackend::host_kernels() const { return &cpu::HostKernels(); }

Backend& DefaultCpuBackend() {
  static CpuBackend backend;
  return backend;
}

std::unique_ptr<Backend> CreateCpuBackend(ComputeDType) { return std::make_unique<CpuBackend>(); }

const char* CpuBlasCoreName() { return openblas_get_corename(); }

}  // namespace qforge
