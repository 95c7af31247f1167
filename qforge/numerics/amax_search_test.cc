// Amax search (spec §6.3) against independent references: the candidate sets, brute-force searches written
// from the formulas, per-group independence, first-minimum ties, and the loss layout of every group kind.
#include "qforge/numerics/amax_search.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "qforge/numerics/layout.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

QuantSpec IntSpec(int bits) {
  QuantSpec s;
  s.num_bits = NumBits::Int(bits);
  return s;
}
QuantSpec Fp8Spec() {
  QuantSpec s;
  s.num_bits = NumBits::Float(4, 3);
  return s;
}
QuantSpec Nvfp4StaticSpec() {
  QuantSpec s;
  s.num_bits = NumBits::Float(2, 1);
  s.block = BlockSpec{{{-1, 16}}, false, NumBits::Float(4, 3), false};
  return s;
}

std::vector<float> Random(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

float AbsMax(std::span<const float> x) {
  float m = 0;
  for (float v : x) m = std::max(m, std::fabs(v));
  return m;
}

// ModelOpt's defaults give 39 candidates from 0.25 to 4.0 (spec Q11: spacing 3.75/38, not 0.1), symmetric
// in torch.linspace's two halves; the FP8 sweep has the 126 positive finite E4M3 values over 448.
TEST(AmaxSearch, CandidateSets) {
  const std::vector<float> m = MseMultipliers(0.25, 4.0, 0.1);
  ASSERT_EQ(m.size(), 39u);
  EXPECT_EQ(m.front(), 0.25f);
  EXPECT_EQ(m.back(), 4.0f);
  for (size_t i = 1; i < m.size(); ++i) {
    EXPECT_GT(m[i], m[i - 1]);
    EXPECT_NEAR(m[i] - m[i - 1], 3.75 / 38, 1e-6);
  }
  // torch 2.11's torch.linspace(0.25, 4.0, 39) and torch.linspace(0.1, 2.0, 11), fp32, on the GPU machine
  // (CUDA and CPU give the same values), printed exactly as hex.
  const double torch_39[] = {
      0x1.0000000000000p-2, 0x1.650d7a0000000p-2, 0x1.ca1af40000000p-2, 0x1.1794360000000p-1,
      0x1.4a1af40000000p-1, 0x1.7ca1b00000000p-1, 0x1.af286c0000000p-1, 0x1.e1af2a0000000p-1,
      0x1.0a1af40000000p+0, 0x1.235e520000000p+0, 0x1.3ca1b00000000p+0, 0x1.55e50e0000000p+0,
      0x1.6f286c0000000p+0, 0x1.886bca0000000p+0, 0x1.a1af2a0000000p+0, 0x1.baf2880000000p+0,
      0x1.d435e60000000p+0, 0x1.ed79440000000p+0, 0x1.035e520000000p+1, 0x1.1000000000000p+1,
      0x1.1ca1ae0000000p+1, 0x1.29435e0000000p+1, 0x1.35e50c0000000p+1, 0x1.4286bc0000000p+1,
      0x1.4f286c0000000p+1, 0x1.5bca1a0000000p+1, 0x1.686bca0000000p+1, 0x1.750d780000000p+1,
      0x1.81af280000000p+1, 0x1.8e50d80000000p+1, 0x1.9af2860000000p+1, 0x1.a794360000000p+1,
      0x1.b435e40000000p+1, 0x1.c0d7940000000p+1, 0x1.cd79440000000p+1, 0x1.da1af20000000p+1,
      0x1.e6bca20000000p+1, 0x1.f35e500000000p+1, 0x1.0000000000000p+2,
  };
  const double torch_11[] = {
      0x1.99999a0000000p-4, 0x1.28f5c20000000p-2, 0x1.eb851e0000000p-2, 0x1.570a3e0000000p-1,
      0x1.b851ec0000000p-1, 0x1.0ccccc0000000p+0, 0x1.3d70a40000000p+0, 0x1.6e147c0000000p+0,
      0x1.9eb8520000000p+0, 0x1.cf5c280000000p+0, 0x1.0000000000000p+1,
  };
  for (size_t i = 0; i < 39; ++i) EXPECT_EQ(m[i], static_cast<float>(torch_39[i])) << i;
  const std::vector<float> m11 = MseMultipliers(0.1, 2.0, 0.19);
  ASSERT_EQ(m11.size(), 11u);
  for (size_t i = 0; i < 11; ++i) EXPECT_EQ(m11[i], static_cast<float>(torch_11[i])) << i;
  EXPECT_EQ(MseMultipliers(1.0, 1.5, 0.5), (std::vector<float>{1.0f, 1.5f}));  // NVFP4 four-over-six
  EXPECT_EQ(MseMultipliers(1.0, 1.0, 0.1).size(), 1u);
  const std::vector<float> c = Fp8ScaleCandidates();
  ASSERT_EQ(c.size(), 126u);
  EXPECT_EQ(c.front(), std::ldexp(1.0f, -9) / 448.0f);  // smallest E4M3 subnormal
  EXPECT_EQ(c.back(), 1.0f);                            // 448 / 448
  for (size_t i = 1; i < c.size(); ++i) EXPECT_GT(c[i], c[i - 1]);
}

// Per-tensor INT8: the search equals a brute force over the multipliers written from the INT8 formula
// (s = 127 / amax, y = clamp(rint(x s), -128, 127) / s), and its loss is no worse than max calibration's.
TEST(AmaxSearch, PerTensorIntMatchesABruteForce) {
  const std::vector<float> w = Random(4 * 64, 3);
  const std::vector<int64_t> shape = {4, 64};
  const float amax0 = AbsMax(w);
  const std::vector<float> m = MseMultipliers(0.25, 4.0, 0.1);
  const AmaxSearchResult r = SearchAmaxMultiplier(IntSpec(8), w, shape, std::vector<float>{amax0}, {}, m);
  auto loss_at = [&](float a) {
    const float s = 127.0f / a;
    double loss = 0;
    for (float x : w) {
      const float q = std::clamp(std::nearbyint(x * s), -128.0f, 127.0f) / s;
      loss += (static_cast<double>(x) - q) * (static_cast<double>(x) - q);
    }
    return loss;
  };
  double best = std::numeric_limits<double>::infinity();
  int best_k = -1;
  for (size_t k = 0; k < m.size(); ++k) {
    const double loss = loss_at(amax0 * m[k]);
    if (loss < best) {
      best = loss;
      best_k = static_cast<int>(k);
    }
  }
  const double at_max = loss_at(amax0);
  ASSERT_EQ(r.index.size(), 1u);
  EXPECT_EQ(r.index[0], best_k);
  EXPECT_EQ(r.amax[0], amax0 * m[static_cast<size_t>(best_k)]);
  EXPECT_LT(best_k, 15);  // Gaussian weights: clipping below the max wins
  EXPECT_LE(best, at_max);
}

// Per-channel FP8 (axis 0): every row picks its own multiplier, exactly the one a search over that row
// alone picks.
TEST(AmaxSearch, PerChannelRowsAreIndependent) {
  const int64_t rows = 5, cols = 48;
  std::vector<float> w = Random(rows * cols, 7);
  w[2 * cols + 5] = 9.0f;  // an outlier in row 2
  QuantSpec pc = Fp8Spec();
  pc.axis = std::vector<int>{0};
  const std::vector<int64_t> shape = {rows, cols};
  const std::vector<float> amax = ComputeAmax(pc, w, shape);
  const std::vector<float> m = MseMultipliers(0.25, 4.0, 0.1);
  const AmaxSearchResult r = SearchAmaxMultiplier(pc, w, shape, amax, {}, m);
  ASSERT_EQ(r.amax.size(), static_cast<size_t>(rows));
  for (int64_t i = 0; i < rows; ++i) {
    const std::span<const float> row(w.data() + i * cols, static_cast<size_t>(cols));
    const std::vector<int64_t> one = {1, cols};
    const AmaxSearchResult ri = SearchAmaxMultiplier(Fp8Spec(), row, one, std::vector<float>{amax[i]}, {}, m);
    EXPECT_EQ(r.index[static_cast<size_t>(i)], ri.index[0]) << "row " << i;
    EXPECT_EQ(r.amax[static_cast<size_t>(i)], ri.amax[0]) << "row " << i;
  }
}

// Static NVFP4 sweep: every block's amax is global * (E4M3 value / 448), the chosen block error is the
// smallest over all 126 candidates (checked by QDQ of each block alone), and an all-zero block, where every
// candidate ties at 0, keeps the first (smallest) candidate.
TEST(AmaxSearch, Fp8SweepPicksTheBestCodePerBlock) {
  const int64_t rows = 3, cols = 40;  // 3 blocks per row, the last one padded
  std::vector<float> w = Random(rows * cols, 11);
  for (int64_t j = 16; j < 32; ++j) w[static_cast<size_t>(cols + j)] = 0.0f;  // row 1, block 1: zeros
  const std::vector<int64_t> shape = {rows, cols};
  const QuantSpec s = Nvfp4StaticSpec();
  const std::vector<float> amax = ComputeAmax(s, w, shape);
  ASSERT_EQ(amax.size(), 9u);
  const float global = *std::max_element(amax.begin(), amax.end());
  const AmaxSearchResult r = SearchAmaxFp8Sweep(s, w, shape, amax, global);
  const std::vector<float> c = Fp8ScaleCandidates();
  ASSERT_EQ(r.amax.size(), 9u);
  for (int64_t b = 0; b < 9; ++b) {
    const int64_t row = b / 3, blk = b % 3;
    const int64_t j0 = blk * 16, n = std::min<int64_t>(16, cols - j0);
    std::vector<float> block(16, 0.0f);
    std::copy_n(w.begin() + row * cols + j0, n, block.begin());
    const std::vector<int64_t> one = {1, 16};
    auto loss = [&](float a) {
      std::vector<float> q(16);
      FakeQuant(s, block, one, std::vector<float>{a}, q, global);
      double l = 0;
      for (int i = 0; i < 16; ++i) l += (static_cast<double>(block[i]) - q[i]) * (static_cast<double>(block[i]) - q[i]);
      return l;
    };
    const size_t k = static_cast<size_t>(r.index[static_cast<size_t>(b)]);
    EXPECT_EQ(r.amax[static_cast<size_t>(b)], global * c[k]) << "block " << b;
    const double chosen = loss(r.amax[static_cast<size_t>(b)]);
    for (size_t j = 0; j < c.size(); ++j) {
      const double other = loss(global * c[j]);
      EXPECT_LE(chosen, other) << "block " << b << " candidate " << j;
      if (j < k) {
        EXPECT_LT(chosen, other) << "block " << b << ": an earlier candidate ties (first minimum)";
      }
    }
  }
  EXPECT_EQ(r.index[4], 0);  // the zero block
}

// The block-by-block sweep chooses what the generic whole-tensor search chooses, on random weights with odd
// widths (a padded last block), outliers, zero rows and tiny values.
TEST(AmaxSearch, FastSweepEqualsTheReference) {
  const QuantSpec s = Nvfp4StaticSpec();
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{7, 48}, {5, 37}, {1, 16}, {33, 300}}) {
    std::vector<float> w = Random(static_cast<size_t>(rows * cols), static_cast<uint32_t>(rows * 1000 + cols));
    w[static_cast<size_t>(cols / 2)] = 40.0f;
    for (int64_t j = 0; j < cols; ++j) w[static_cast<size_t>((rows - 1) * cols + j)] = rows > 1 ? 0.0f : w[j];
    if (rows > 2) w[static_cast<size_t>(cols + 1)] = 1e-30f;
    const std::vector<int64_t> shape = {rows, cols};
    const std::vector<float> amax = ComputeAmax(s, w, shape);
    const float global = *std::max_element(amax.begin(), amax.end());
    const AmaxSearchResult fast = SearchAmaxFp8Sweep(s, w, shape, amax, global);
    const AmaxSearchResult ref = SearchAmaxFp8Sweep(s, w, shape, amax, global, nullptr, "w", nullptr, true);
    EXPECT_EQ(fast.index, ref.index) << rows << "x" << cols;
    EXPECT_EQ(fast.amax, ref.amax) << rows << "x" << cols;
  }
}

// GroupSquaredError's layout for static blocks (padding ignored) and per-channel axes, against direct loops.
TEST(AmaxSearch, GroupLossLayouts) {
  const int64_t rows = 4, cols = 40;
  const std::vector<float> x = Random(rows * cols, 21), y = Random(rows * cols, 22);
  const std::vector<int64_t> shape = {rows, cols};
  std::vector<double> blocks(12);
  GroupSquaredError(Nvfp4StaticSpec(), shape, x, y, blocks);
  std::vector<double> cols_loss(static_cast<size_t>(cols));
  QuantSpec pc = Fp8Spec();
  pc.axis = std::vector<int>{1};
  GroupSquaredError(pc, shape, x, y, cols_loss);
  std::vector<double> want_b(12, 0), want_c(static_cast<size_t>(cols), 0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < cols; ++j) {
      const double e = static_cast<double>(x[r * cols + j]) - y[r * cols + j];
      want_b[static_cast<size_t>(r * 3 + j / 16)] += e * e;
      want_c[static_cast<size_t>(j)] += e * e;
    }
  }
  for (size_t i = 0; i < want_b.size(); ++i) EXPECT_DOUBLE_EQ(blocks[i], want_b[i]) << i;
  for (size_t i = 0; i < want_c.size(); ++i) EXPECT_DOUBLE_EQ(cols_loss[i], want_c[i]) << i;
}

TEST(AmaxSearch, RefusesSpecsWithoutASearchableAmax) {
  const std::vector<float> w = Random(32, 1);
  const std::vector<int64_t> shape = {1, 32};
  QuantSpec dyn = Fp8Spec();
  dyn.dynamic = true;
  EXPECT_THROW(SearchAmaxMultiplier(dyn, w, shape, std::vector<float>{1.0f}, {}, MseMultipliers(0.25, 4, 0.1)), Error);
  EXPECT_THROW(SearchAmaxFp8Sweep(Fp8Spec(), w, shape, std::vector<float>{1.0f}, 1.0f), Error);
  EXPECT_THROW(SearchAmaxMultiplier(Fp8Spec(), w, shape, std::vector<float>{1.0f, 2.0f}, {}, {std::vector<float>{1.0f}}),
               Error);
}

}  // namespace
}  // namespace qforge
