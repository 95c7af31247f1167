// GPTQ's weight update (calib/gptq.h) against a literal transcription of the algorithm of spec §6.9: each
// column quantized by fake-quantizing the whole current block copy with the quantizer (FakeQuant on the full
// matrix, as ModelOpt's gptq_blockwise_update does), on small weights; the inverse-Hessian factor checked by
// multiplying it back; and the properties users rely on: GPTQ lowers the Hessian-weighted error below plain
// rounding, an identity Hessian is plain rounding, a Hessian that is not positive definite falls back to it.
#include "qforge/calib/gptq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "qforge/base/error.h"
#include "qforge/config/quantizer_set.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

// A weight quantizer for `spec` calibrated by max on w (per-block amax; static NVFP4's global amax from them).
Quantizer Calibrated(const QuantSpec& spec, const std::vector<float>& w, int64_t rows, int64_t cols,
                     config::QuantizerAttributeConfig attrs) {
  Quantizer q;
  q.slot.name = "test.weight_quantizer";
  q.slot.state = config::QuantizerState::Single(std::move(attrs));
  const std::vector<int64_t> shape = {rows, cols};
  q.amax = ComputeAmax(spec, w, shape, "w");
  q.amax_shape = AmaxShape(spec, shape).value_or(std::vector<int64_t>{});
  q.has_amax = true;
  if (spec.IsNvfp4Static()) {
    float g = 0;
    for (float a : q.amax) g = std::max(g, a);
    q.global_amax = g;
  }
  return q;
}

config::QuantizerAttributeConfig Attrs(const std::string& yaml) {
  return config::QuantizerAttributeConfig::FromJson(config::ParseYaml(yaml, "test"), "test");
}

// X [tokens, cols] with correlated columns, H = (2 / tokens) Xᵀ X.
std::vector<float> CorrelatedHessian(int64_t cols, int64_t tokens, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(tokens * cols));
  for (int64_t t = 0; t < tokens; ++t) {
    float common = nd(rng);
    for (int64_t c = 0; c < cols; ++c) {
      x[t * cols + c] = 0.6f * common + nd(rng) * (1.0f + 0.05f * static_cast<float>(c % 7));
    }
  }
  std::vector<float> h(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t a = 0; a < cols; ++a) {
    for (int64_t b = 0; b < cols; ++b) {
      double s = 0;
      for (int64_t t = 0; t < tokens; ++t) s += static_cast<double>(x[t * cols + a]) * x[t * cols + b];
      h[a * cols + b] = static_cast<float>(2.0 * s / static_cast<double>(tokens));
    }
  }
  return h;
}

std::vector<float> RandomWeight(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 0.05f);
  std::vector<float> w(static_cast<size_t>(rows * cols));
  for (float& v : w) v = nd(rng);
  return w;
}

// The literal algorithm: per column, FakeQuant of the whole current block copy, take the column.
std::vector<float> ReferenceGptq(std::vector<float> w, int64_t rows, int64_t cols, const std::vector<float>& u,
                                 int64_t block, const Quantizer& q) {
  const std::vector<int64_t> shape = {rows, cols};
  for (int64_t b0 = 0; b0 < cols; b0 += block) {
    const int64_t b1 = std::min(b0 + block, cols), nb = b1 - b0;
    std::vector<float> wblk = w, qdq(w.size()), errs(static_cast<size_t>(rows * nb));
    for (int64_t i = 0; i < nb; ++i) {
      const int64_t c = b0 + i;
      FakeQuant(q.spec(), wblk, shape, q.amax, qdq, q.global_amax, "w");
      const float d = u[c * cols + c];
      for (int64_t r = 0; r < rows; ++r) {
        const float wc = wblk[r * cols + c];
        w[r * cols + c] = qdq[r * cols + c];
        const float e = (wc - qdq[r * cols + c]) / d;
        for (int64_t j = c; j < b1; ++j) wblk[r * cols + j] -= e * u[c * cols + j];
        errs[r * nb + i] = e;
      }
    }
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = b1; j < cols; ++j) {
        double s = 0;
        for (int64_t i = 0; i < nb; ++i) s += static_cast<double>(errs[r * nb + i]) * u[(b0 + i) * cols + j];
        w[r * cols + j] -= static_cast<float>(s);
      }
    }
  }
  return w;
}

double WeightedError(const std::vector<float>& a, const std::vector<float>& b, int64_t rows, int64_t cols,
                     const std::vector<float>& h) {
  double s = 0;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < cols; ++i) {
      for (int64_t j = 0; j < cols; ++j) {
        s += static_cast<double>(a[r * cols + i] - b[r * cols + i]) * h[i * cols + j] * (a[r * cols + j] - b[r * cols + j]);
      }
    }
  }
  return s;
}

struct Case {
  const char* name;
  const char* attrs;
};

const Case kCases[] = {
    {"nvfp4_static", "{num_bits: [2, 1], block_sizes: {-1: 16, type: static, scale_bits: [4, 3]}}"},
    {"nvfp4_dynamic", "{num_bits: [2, 1], block_sizes: {-1: 16, type: dynamic, scale_bits: [4, 3]}}"},
    {"int4_block32", "{num_bits: 4, block_sizes: {-1: 32}}"},
    {"fp8_per_channel", "{num_bits: [4, 3], axis: 0}"},
    {"int8_per_tensor", "{num_bits: 8}"},
};

TEST(Gptq, InverseHessianFactorMultipliesBackToTheDampedInverse) {
  const int64_t n = 48;
  std::vector<float> h = CorrelatedHessian(n, 200, 3);
  bool identity = true;
  const std::vector<float> u = GptqInverseHessianFactor(h, n, 0.01, {}, &identity);
  EXPECT_FALSE(identity);
  double diag = 0;
  for (int64_t j = 0; j < n; ++j) diag += h[j * n + j];
  std::vector<double> hd(h.begin(), h.end());
  for (int64_t j = 0; j < n; ++j) hd[j * n + j] += 0.01 * diag / n;
  // Hd · (Uᵀ U) = I; U upper triangular.
  double worst = 0;
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t j = 0; j < n; ++j) {
      if (j < i) {
        EXPECT_EQ(u[i * n + j], 0.0f);
      }
      double s = 0;
      for (int64_t k = 0; k < n; ++k) {
        double inv_kj = 0;  // (Uᵀ U)[k][j] = Σ_m U[m][k] U[m][j]
        for (int64_t m = 0; m <= std::min(k, j); ++m) inv_kj += static_cast<double>(u[m * n + k]) * u[m * n + j];
        s += hd[i * n + k] * inv_kj;
      }
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  }
  EXPECT_LT(worst, 1e-3);
}

TEST(Gptq, EqualsTheLiteralAlgorithmAndBeatsPlainRounding) {
  const int64_t rows = 12, cols = 96;
  for (const Case& k : kCases) {
    const config::QuantizerAttributeConfig attrs = Attrs(k.attrs);
    const QuantSpec spec = attrs.ToQuantSpec();
    std::vector<float> w = RandomWeight(rows, cols, 7);
    for (int64_t r = 0; r < rows; ++r) w[r * cols + 5] = 0.0f;  // a dead column
    const std::vector<float> h = CorrelatedHessian(cols, 300, 11);
    const Quantizer q = Calibrated(spec, w, rows, cols, attrs);
    for (int64_t block : {int64_t{128}, int64_t{32}, int64_t{20}}) {
      GptqOptions o;
      o.block_size = block;
      std::vector<float> got = w;
      const GptqStats st = GptqUpdate(got, rows, cols, h, WeightColumnQuantizer(q, rows, cols), o);
      EXPECT_EQ(st.dead_columns, 1) << k.name;
      EXPECT_FALSE(st.identity_fallback) << k.name;
      std::vector<int64_t> dead = {5};
      bool identity = false;
      const std::vector<float> u = GptqInverseHessianFactor(h, cols, 0.01, dead, &identity);
      const std::vector<float> want = ReferenceGptq(w, rows, cols, u, block, q);
      float amax = 0, diff = 0;
      for (size_t i = 0; i < w.size(); ++i) {
        amax = std::max(amax, std::fabs(w[i]));
        diff = std::max(diff, std::fabs(got[i] - want[i]));
      }
      EXPECT_LE(diff, 1e-5f * amax) << k.name << " block " << block;
      // Every value is representable by the quantizer: quantizing again with the fixed scales is a no-op.
      std::vector<float> again(got.size());
      FakeQuant(spec, got, std::vector<int64_t>{rows, cols}, q.amax, again, q.global_amax, "w");
      if (!spec.IsNvfp4Dynamic()) {
        EXPECT_EQ(again, got) << k.name;
      }
      // Plain rounding (round to nearest with the same scales) has a larger Hessian-weighted error.
      std::vector<float> rtn(w.size());
      FakeQuant(spec, w, std::vector<int64_t>{rows, cols}, q.amax, rtn, q.global_amax, "w");
      EXPECT_LT(WeightedError(got, w, rows, cols, h), 0.9 * WeightedError(rtn, w, rows, cols, h)) << k.name;
      EXPECT_GT(st.relative_error, 0) << k.name;
    }
  }
}

TEST(Gptq, IdentityHessianIsPlainRoundingAndANonPositiveDefiniteOneFallsBackToIt) {
  const int64_t rows = 8, cols = 64;
  const config::QuantizerAttributeConfig attrs = Attrs(kCases[0].attrs);
  const QuantSpec spec = attrs.ToQuantSpec();
  const std::vector<float> w = RandomWeight(rows, cols, 5);
  const Quantizer q = Calibrated(spec, w, rows, cols, attrs);
  std::vector<float> rtn(w.size());
  FakeQuant(spec, w, std::vector<int64_t>{rows, cols}, q.amax, rtn, q.global_amax, "w");
  std::vector<float> eye(static_cast<size_t>(cols * cols), 0.0f);
  for (int64_t j = 0; j < cols; ++j) eye[j * cols + j] = 1.0f;
  std::vector<float> got = w;
  GptqStats st = GptqUpdate(got, rows, cols, eye, WeightColumnQuantizer(q, rows, cols), GptqOptions{});
  EXPECT_FALSE(st.identity_fallback);
  EXPECT_EQ(got, rtn);
  // A zero Hessian (a routed expert no token reached): not positive definite even damped.
  std::vector<float> zero(eye.size(), 0.0f);
  got = w;
  st = GptqUpdate(got, rows, cols, zero, WeightColumnQuantizer(q, rows, cols), GptqOptions{});
  EXPECT_TRUE(st.identity_fallback);
  EXPECT_EQ(got, rtn);
}

TEST(Gptq, ActOrderStillQuantizesWithEachColumnsOwnScalesAndLowersTheError) {
  const int64_t rows = 16, cols = 64;
  const config::QuantizerAttributeConfig attrs = Attrs(kCases[0].attrs);
  const QuantSpec spec = attrs.ToQuantSpec();
  const std::vector<float> w = RandomWeight(rows, cols, 9);
  const std::vector<float> h = CorrelatedHessian(cols, 300, 4);
  const Quantizer q = Calibrated(spec, w, rows, cols, attrs);
  GptqOptions o;
  o.act_order = true;
  o.block_size = 16;
  std::vector<float> got = w;
  (void)GptqUpdate(got, rows, cols, h, WeightColumnQuantizer(q, rows, cols), o);
  std::vector<float> again(got.size()), rtn(w.size());
  FakeQuant(spec, got, std::vector<int64_t>{rows, cols}, q.amax, again, q.global_amax, "w");
  EXPECT_EQ(again, got);
  FakeQuant(spec, w, std::vector<int64_t>{rows, cols}, q.amax, rtn, q.global_amax, "w");
  EXPECT_LT(WeightedError(got, w, rows, cols, h), 0.9 * WeightedError(rtn, w, rows, cols, h));
}

TEST(Gptq, DynamicPerTensorWeightQuantizersAreRefusedByName) {
  const config::QuantizerAttributeConfig attrs = Attrs("{num_bits: [4, 3], type: dynamic}");
  Quantizer q;
  q.slot.name = "model.layers.0.mlp.down_proj.weight_quantizer";
  q.slot.state = config::QuantizerState::Single(attrs);
  try {
    WeightColumnQuantizer wq(q, 4, 32);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("down_proj.weight_quantizer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("dynamic"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qforge
