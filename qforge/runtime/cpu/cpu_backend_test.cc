// Tests of every CPU backend op against a naive scalar reference written from the op's contract.
#include "qforge/runtime/cpu/cpu_backend.h"
#include "qforge/base/blas_core.h"
#include "qforge/numerics/half.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace qforge {
namespace {

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "at " << i;
}

TEST(CpuBackend, GemmMatchesNaiveWithBiasStrideAndAccumulate) {
  Backend& be = DefaultCpuBackend();
  // The last two are large enough to be tiled across threads (by rows, then by columns).
  for (auto [m, n, k] :
       {std::tuple{1, 1, 1}, {7, 13, 29}, {64, 96, 172}, {130, 33, 5}, {300, 170, 90}, {20, 1000, 300}}) {
    auto x = Random(m * k, 1), w = Random(n * k, 2), bias = Random(n, 3);
    const int ldy = n + 3;
    std::vector<float> y(m * ldy, 0.5f), ref(m * ldy, 0.5f);
    for (int acc = 0; acc < 2; ++acc) {
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < n; ++c) {
          double s = bias[c];
          for (int i = 0; i < k; ++i) s += double(x[r * k + i]) * w[c * k + i];
          ref[r * ldy + c] = float(s + (acc ? ref[r * ldy + c] : 0.0));
        }
      be.Gemm(x.data(), w.data(), bias.data(), y.data(), m, n, k, acc == 1, ldy);
      ExpectNear(y, ref, 1e-4f * std::sqrt(float(k)) * 4);
    }
    // Padding columns beyond n are untouched.
    for (int r = 0; r < m; ++r) EXPECT_EQ(y[r * ldy + n], 0.5f);
    // Without bias.
    std::vector<float> y2(m * n);
    be.Gemm(x.data(), w.data(), nullptr, y2.data(), m, n, k, false);
    for (int r = 0; r < m; ++r)
      for (int c = 0; c < n; ++c) {
        double s = 0;
        for (int i = 0; i < k; ++i) s += double(x[r * k + i]) * w[c * k + i];
        ASSERT_NEAR(y2[r * n + c], s, 1e-4 * std::sqrt(double(k)) * 4);
      }
  }
}

// The tests that hold a batch run in parts (chunked layers, layerwise device paths, perplexity by batch size)
// to the batch run whole need a GEMM that gives each row the same bits whatever the rows beside it: the test
// binaries pin such an OpenBLAS core (base/blas_core.h). This checks that core on the tests' shapes (rows x
// columns above 1200 per call: below that, and below 1e6 multiply-adds, SkylakeX's small-matrix kernels take
// over and are not batch-invariant), through the backend's own threading. A failure here explains failures of
// those tests: the core named below does not give them the same bits.
TEST(CpuBackend, GemmRowsDoNotDependOnTheRowsBesideThem) {
  const char* keep = std::getenv("QF_TEST_KEEP_BLAS_CORE");
  if (keep == nullptr || std::string(keep) == "0") {
    const char* want = BatchInvariantOpenBlasCore(CpuBlasCoreName());
    if (want != nullptr) {
      EXPECT_STREQ(CpuBlasCoreName(), want);
    }
  }
  Backend& be = DefaultCpuBackend();
  const int64_t m = 96;
  for (auto [n, k] : {std::pair<int64_t, int64_t>{256, 384}, {512, 512}, {1408, 512}, {512, 1408}}) {
    const auto x = Random(static_cast<size_t>(m * k), 4), w = Random(static_cast<size_t>(n * k), 5);
    std::vector<float> whole(static_cast<size_t>(m * n)), part(static_cast<size_t>(m * n));
    be.Gemm(x.data(), w.data(), nullptr, whole.data(), m, n, k, false);
    for (int64_t rows = 5; rows <= 24; ++rows) {
      for (int64_t r0 = 0; r0 < m; r0 += rows) {
        const int64_t r = std::min(rows, m - r0);
        if (r * n <= 1200) continue;
        be.Gemm(x.data() + r0 * k, w.data(), nullptr, part.data() + r0 * n, r, n, k, false);
      }
      for (int64_t r0 = 0; r0 < m; r0 += rows) {
        const int64_t r = std::min(rows, m - r0);
        if (r * n <= 1200) continue;
        ASSERT_EQ(std::memcmp(part.data() + r0 * n, whole.data() + r0 * n, static_cast<size_t>(r * n) * 4), 0)
            << "OpenBLAS core " << CpuBlasCoreName() << ": rows [" << r0 << ", " << r0 + r << ") of " << m << " x "
            << n << " x " << k << " in calls of " << rows << " rows differ from one call of all rows";
      }
    }
  }
}

TEST(CpuBackend, RmsNormMatchesNaiveInPlace) {
  Backend& be = DefaultCpuBackend();
  const int rows = 37, dim = 172;
  auto x = Random(rows * dim, 4, 3.f), w = Random(dim, 5);
  std::vector<float> ref(x.size());
  for (int r = 0; r < rows; ++r) {
    double ss = 0;
    for (int j = 0; j < dim; ++j) ss += double(x[r * dim + j]) * x[r * dim + j];
    const double inv = 1.0 / std::sqrt(ss / dim + 1e-5);
    for (int j = 0; j < dim; ++j) ref[r * dim + j] = float(w[j] * x[r * dim + j] * inv);
  }
  be.RmsNorm(x.data(), w.data(), x.data(), rows, dim, 1e-5f);
  ExpectNear(x, ref, 1e-5f);
}

TEST(CpuBackend, RopeRotatesHalvesPerPosition) {
  Backend& be = DefaultCpuBackend();
  const int B = 2, H = 3, L = 5, D = 8;
  auto x = Random(B * H * L * D, 6);
  auto cs = Random(L * D / 2, 7), sn = Random(L * D / 2, 8);
  std::vector<float> ref(x.size());
  for (int r = 0; r < B * H * L; ++r) {
    const int p = r % L;
    for (int i = 0; i < D / 2; ++i) {
      const float a = x[r * D + i], b = x[r * D + i + D / 2];
      ref[r * D + i] = a * cs[p * D / 2 + i] - b * sn[p * D / 2 + i];
      ref[r * D + i + D / 2] = b * cs[p * D / 2 + i] + a * sn[p * D / 2 + i];
    }
  }
  be.Rope(x.data(), B, H, L, D, cs.data(), sn.data());
  ExpectNear(x, ref, 1e-6f);
}

// Naive causal GQA attention: heads-major q/k/v, tokens-major out.
std::vector<float> NaiveAttention(const std::vector<float>& q, const std::vector<float>& k, const std::vector<float>& v,
                                  int B, int H, int G, int L, int D, float scale) {
  std::vector<float> out(B * L * H * D);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      const int g = h / (H / G);
      for (int i = 0; i < L; ++i) {
        std::vector<double> s(i + 1);
        double mx = -1e300;
        for (int j = 0; j <= i; ++j) {
          double dot = 0;
          for (int t = 0; t < D; ++t)
            dot += double(q[((b * H + h) * L + i) * D + t]) * k[((b * G + g) * L + j) * D + t];
          s[j] = dot * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int t = 0; t < D; ++t) {
          double o = 0;
          for (int j = 0; j <= i; ++j) o += s[j] / sum * v[((b * G + g) * L + j) * D + t];
          out[((b * L + i) * H + h) * D + t] = float(o);
        }
      }
    }
  return out;
}

TEST(CpuBackend, CausalAttentionMatchesNaiveAcrossBlocks) {
  Backend& be = DefaultCpuBackend();
  // seq 300 spans three query blocks of the blocked kernel.
  for (auto [B, H, G, L, D] : {std::tuple{1, 2, 2, 3, 4}, {2, 4, 2, 17, 8}, {1, 4, 1, 300, 16}}) {
    auto q = Random(B * H * L * D, 9), k = Random(B * G * L * D, 10), v = Random(B * G * L * D, 11);
    const float scale = 1.f / std::sqrt(float(D));
    std::vector<float> out(B * L * H * D);
    be.CausalAttention(q.data(), k.data(), v.data(), out.data(), B, H, G, L, D, scale);
    ExpectNear(out, NaiveAttention(q, k, v, B, H, G, L, D, scale), 2e-5f);
  }
}

TEST(CpuBackend, AttentionProbsThenApplyEqualsFusedAttention) {
  Backend& be = DefaultCpuBackend();
  const int B = 2, H = 4, G = 2, L = 70, D = 8;
  auto q = Random(B * H * L * D, 18), k = Random(B * G * L * D, 19), v = Random(B * G * L * D, 20);
  const float scale = 0.3f;
  std::vector<float> probs(B * H * L * L, -1.f), out(B * L * H * D), fused(B * L * H * D);
  be.CausalAttentionProbs(q.data(), k.data(), probs.data(), B, H, G, L, D, scale);
  for (int p = 0; p < B * H; ++p)
    for (int i = 0; i < L; ++i) {
      double sum = 0;
      for (int j = 0; j < L; ++j) {
        const float x = probs[(p * L + i) * L + j];
        if (j > i) {
          ASSERT_EQ(x, 0.f);
        }
        sum += x;
      }
      ASSERT_NEAR(sum, 1.0, 1e-5);
    }
  be.AttentionApply(probs.data(), v.data(), out.data(), B, H, G, L, D);
  be.CausalAttention(q.data(), k.data(), v.data(), fused.data(), B, H, G, L, D, scale);
  ExpectNear(out, fused, 1e-5f);
  ExpectNear(out, NaiveAttention(q, k, v, B, H, G, L, D, scale), 2e-5f);
}

// FromBf16 over every bf16 code; ToBf16 over f32 patterns around every bf16 code (exact, halfway ties both
// ways, NaN payloads), against numerics' scalar codecs.
TEST(CpuBackend, Bf16ConversionsMatchTheScalarCodecs) {
  Backend& be = DefaultCpuBackend();
  std::vector<uint16_t> codes(1 << 16);
  for (uint32_t c = 0; c < codes.size(); ++c) codes[c] = static_cast<uint16_t>(c);
  std::vector<float> wide(codes.size());
  be.FromBf16(codes.data(), wide.data(), static_cast<int64_t>(codes.size()));
  for (uint32_t c = 0; c < codes.size(); ++c) ASSERT_EQ(std::bit_cast<uint32_t>(wide[c]), c << 16) << c;
  std::vector<float> x;
  for (uint32_t c = 0; c < (1u << 16); ++c) {
    for (uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu}) x.push_back(std::bit_cast<float>(c << 16 | low));
  }
  std::vector<uint16_t> narrow(x.size());
  be.ToBf16(x.data(), narrow.data(), static_cast<int64_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(narrow[i], F32ToBf16Rne(x[i])) << std::bit_cast<uint32_t>(x[i]);
}

// BlockGram against the definition in double: h[j][a][b] += Σ_r x[r, j·bs + a] · x[r, j·bs + b].
TEST(CpuBackend, BlockGramAccumulatesEachColumnBlocksGram) {
  Backend& be = DefaultCpuBackend();
  const int64_t rows = 29, cols = 48, bs = 16, nb = cols / bs;
  const auto x = Random(rows * cols, 31, 1.f);
  std::vector<float> h(static_cast<size_t>(nb * bs * bs), 0.5f);
  be.BlockGram(x.data(), rows, cols, bs, h.data());
  for (int64_t j = 0; j < nb; ++j) {
    for (int64_t a = 0; a < bs; ++a) {
      for (int64_t b = 0; b < bs; ++b) {
        double want = 0.5;
        for (int64_t r = 0; r < rows; ++r) want += static_cast<double>(x[r * cols + j * bs + a]) * x[r * cols + j * bs + b];
        ASSERT_NEAR(h[(j * bs + a) * bs + b], want, 1e-4) << j << " " << a << " " << b;
      }
    }
  }
}

TEST(CpuBackend, SoftmaxSiluMulAddAmax) {
  Backend& be = DefaultCpuBackend();
  auto x = Random(5 * 9, 12, 4.f);
  auto ref = x;
  for (int r = 0; r < 5; ++r) {
    double mx = -1e300, sum = 0;
    for (int j = 0; j < 9; ++j) mx = std::max(mx, double(ref[r * 9 + j]));
    for (int j = 0; j < 9; ++j) sum += std::exp(ref[r * 9 + j] - mx);
    for (int j = 0; j < 9; ++j) ref[r * 9 + j] = float(std::exp(ref[r * 9 + j] - mx) / sum);
  }
  be.Softmax(x.data(), 5, 9);
  ExpectNear(x, ref, 1e-6f);

  auto g = Random(100000, 13, 3.f), u = Random(100000, 14);
  std::vector<float> o(g.size()), r2(g.size());
  for (size_t i = 0; i < g.size(); ++i) r2[i] = float(g[i] / (1 + std::exp(-double(g[i]))) * u[i]);
  be.SiluMul(g.data(), u.data(), o.data(), g.size());
  ExpectNear(o, r2, 1e-5f);

  auto y = g;
  be.Add(y.data(), u.data(), y.size());
  for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], g[i] + u[i]);

  g[777] = -123.5f;
  EXPECT_EQ(be.Amax(g.data(), g.size()), 123.5f);
  EXPECT_EQ(be.Amax(g.data(), 0), 0.f);
  g[5] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(std::isnan(be.Amax(g.data(), g.size())));
}

TEST(CpuBackend, SwapMiddleAxes) {
  Backend& be = DefaultCpuBackend();
  const int A = 2, Bd = 3, C = 4, D = 5;
  auto x = Random(A * Bd * C * D, 15);
  std::vector<float> y(x.size()), back(x.size());
  be.SwapMiddleAxes(x.data(), y.data(), A, Bd, C, D);
  for (int a = 0; a < A; ++a)
    for (int b = 0; b < Bd; ++b)
      for (int c = 0; c < C; ++c)
        for (int d = 0; d < D; ++d) ASSERT_EQ(y[((a * C + c) * Bd + b) * D + d], x[((a * Bd + b) * C + c) * D + d]);
  be.SwapMiddleAxes(y.data(), back.data(), A, C, Bd, D);
  EXPECT_EQ(back, x);
}

TEST(CpuBackend, TopKRoutingWithAndWithoutRenormalization) {
  Backend& be = DefaultCpuBackend();
  // Token 0: distinct logits; token 1: a tie between experts 1 and 3 (the lower index wins first).
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 1.0f, 0.5f, 1.5f, 0.0f, 1.5f};
  std::vector<int32_t> ids(4);
  std::vector<float> w(4);
  be.TopKRouting(logits.data(), 2, 4, 2, false, ids.data(), w.data());
  EXPECT_EQ(ids, (std::vector<int32_t>{1, 3, 1, 3}));
  double s0 = 0;
  for (int e = 0; e < 4; ++e) s0 += std::exp(double(logits[e]));
  EXPECT_NEAR(w[0], std::exp(2.0) / s0, 1e-6);
  EXPECT_NEAR(w[1], std::exp(1.0) / s0, 1e-6);
  be.TopKRouting(logits.data(), 2, 4, 2, true, ids.data(), w.data());
  EXPECT_NEAR(w[0], std::exp(2.0) / (std::exp(2.0) + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(w[0] + w[1], 1.0, 1e-6);
  EXPECT_NEAR(w[2], 0.5, 1e-6);
}

TEST(CpuBackend, SigmoidScaleGatherScatter) {
  Backend& be = DefaultCpuBackend();
  auto x = Random(4 * 6, 16);
  std::vector<float> gl = {0.f, 1.f, -2.f, 3.f};
  auto y = x;
  be.SigmoidScaleRows(y.data(), gl.data(), 4, 6);
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 6; ++j) ASSERT_NEAR(y[r * 6 + j], x[r * 6 + j] / (1 + std::exp(-gl[r])), 1e-6);
  {
    const std::vector<float> sc = {0.5f, 2.f, 3.f, 1e-4f, 1e4f, -1.f};
    auto z = x;
    be.ScaleColumns(z.data(), sc.data(), 4, 6);
    for (int r = 0; r < 4; ++r)
      for (int j = 0; j < 6; ++j) ASSERT_EQ(z[r * 6 + j], x[r * 6 + j] * sc[j]);
  }

  std::vector<int32_t> idx = {3, 0};
  std::vector<float> g(2 * 6);
  be.GatherRows(x.data(), idx.data(), g.data(), 2, 6);
  for (int j = 0; j < 6; ++j) {
    EXPECT_EQ(g[j], x[18 + j]);
    EXPECT_EQ(g[6 + j], x[j]);
  }
  std::vector<float> acc(4 * 6, 1.f);
  std::vector<float> rw = {0.25f, 2.f};
  be.ScatterAddRows(g.data(), idx.data(), rw.data(), acc.data(), 2, 6);
  for (int j = 0; j < 6; ++j) {
    EXPECT_FLOAT_EQ(acc[18 + j], 1.f + 0.25f * x[18 + j]);
    EXPECT_FLOAT_EQ(acc[j], 1.f + 2.f * x[j]);
    EXPECT_EQ(acc[6 + j], 1.f);
  }
}

TEST(CpuBackend, CrossEntropyIsLogSumExpMinusTarget) {
  Backend& be = DefaultCpuBackend();
  auto l = Random(3 * 50, 17, 5.f);
  std::vector<int32_t> t = {0, 49, 7};
  std::vector<double> nll(3);
  be.CrossEntropy(l.data(), t.data(), nll.data(), 3, 50);
  for (int r = 0; r < 3; ++r) {
    double s = 0;
    for (int j = 0; j < 50; ++j) s += std::exp(double(l[r * 50 + j]));
    EXPECT_NEAR(nll[r], std::log(s) - l[r * 50 + t[r]], 1e-6);
  }
}

}  // namespace
}  // namespace qforge
