// Tests of the reference QDQ (spec §5): geometry, every spec case, edge cases, hand-computed values.
#include "qforge/numerics/qdq.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

namespace qforge {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

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
QuantSpec Nvfp4Spec(int block = 16) {
  QuantSpec s;
  s.num_bits = NumBits::Float(2, 1);
  s.block = BlockSpec{{{-1, block}}, true, NumBits::Float(4, 3), false};
  return s;
}
QuantSpec Nvfp4StaticSpec(bool four_over_six = false) {
  QuantSpec s;
  s.num_bits = NumBits::Float(2, 1);
  s.block = BlockSpec{{{-1, 16}}, false, NumBits::Float(4, 3), four_over_six};
  return s;
}
QuantSpec MxSpec(NumBits elem) {
  QuantSpec s;
  s.num_bits = elem;
  s.block = BlockSpec{{{-1, 32}}, true, NumBits::Float(8, 0), false};
  return s;
}

std::vector<float> Qdq(const QuantSpec& s, const std::vector<float>& x, const std::vector<int64_t>& shape,
                       const std::vector<float>& amax, std::optional<float> global = std::nullopt) {
  std::vector<float> out(x.size());
  FakeQuant(s, x, shape, amax, out, global);
  return out;
}

std::vector<float> RandomTensor(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = nd(rng);
  return x;
}

TEST(Qdq, AmaxShapes) {
  const std::vector<int64_t> w = {6, 40};
  EXPECT_EQ(*AmaxShape(IntSpec(8), w), std::vector<int64_t>{});
  QuantSpec ax = IntSpec(8);
  ax.axis = std::vector<int>{0};
  EXPECT_EQ(*AmaxShape(ax, w), (std::vector<int64_t>{6, 1}));
  ax.axis = std::vector<int>{-1};
  EXPECT_EQ(*AmaxShape(ax, w), (std::vector<int64_t>{1, 40}));
  QuantSpec blk = IntSpec(4);
  blk.block = BlockSpec{{{-1, 16}}, false, std::nullopt, false};
  EXPECT_EQ(*AmaxShape(blk, w), (std::vector<int64_t>{6, 3, 1}));
  blk.block = BlockSpec{{{1, 16}, {0, 4}}, false, std::nullopt, false};
  EXPECT_EQ(*AmaxShape(blk, w), (std::vector<int64_t>{2, 1, 3, 1}));
  EXPECT_EQ(*AmaxShape(Nvfp4Spec(), w), std::vector<int64_t>{});
  EXPECT_FALSE(AmaxShape(MxSpec(NumBits::Float(2, 1)), w).has_value());
  // All-null block_sizes become axis = the unlisted dims (spec §2.2).
  QuantSpec nul = IntSpec(8);
  nul.block = BlockSpec{{{-1, std::nullopt}}, false, std::nullopt, false};
  EXPECT_EQ(*AmaxShape(nul, w), (std::vector<int64_t>{6, 1}));
}

TEST(Qdq, ComputeAmaxPerAxisAndStaticBlocksWithPadding) {
  // 3x5 tensor, blocks {-1: 2, 0: 2}: dims split into (2 blocks of 2 rows, padded) x (3 blocks of 2 cols).
  std::vector<float> x(15);
  for (int i = 0; i < 15; ++i) x[i] = static_cast<float>(i) * (i % 2 ? -1.0f : 1.0f);
  QuantSpec s = IntSpec(8);
  s.block = BlockSpec{{{-1, 2}, {0, 2}}, false, std::nullopt, false};
  const std::vector<int64_t> shape = {3, 5};
  EXPECT_EQ(*AmaxShape(s, shape), (std::vector<int64_t>{2, 1, 3, 1}));
  // Row blocks {0,1},{2}; column blocks {0,1},{2,3},{4}.
  EXPECT_EQ(ComputeAmax(s, x, shape), (std::vector<float>{6, 8, 9, 11, 13, 14}));
  QuantSpec ax = IntSpec(8);
  ax.axis = std::vector<int>{1};
  EXPECT_EQ(ComputeAmax(ax, x, shape), (std::vector<float>{10, 11, 12, 13, 14}));
  ax.axis = std::vector<int>{0, 1};
  EXPECT_EQ(ComputeAmax(ax, x, shape).size(), 15u);
  // Max calibration rejects NaN/inf like MaxCalibrator, naming the tensor and index.
  x[7] = kNaN;
  try {
    ComputeAmax(IntSpec(8), x, shape, "layer.weight");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layer.weight"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("index 7"), std::string::npos);
  }
}

TEST(Qdq, IntegerFakeQuantHandComputed) {
  // INT8 per tensor, amax 2: scale 63.5; 1.0 -> rint(63.5) = 64 (tie to even) -> 64/63.5.
  const std::vector<float> x = {1.0f, -2.0f, 0.5f, 3.0f, -3.0f};
  auto y = Qdq(IntSpec(8), x, {5}, {2.0f});
  EXPECT_EQ(y[0], 64.0f / 63.5f);
  EXPECT_EQ(y[1], -127.0f / 63.5f);
  EXPECT_EQ(y[2], 32.0f / 63.5f);  // 31.75 -> 32
  EXPECT_EQ(y[3], 127.0f / 63.5f);
  EXPECT_EQ(y[4], -128.0f / 63.5f);  // min bound -128 (not narrow)
  QuantSpec narrow = IntSpec(8);
  narrow.narrow_range = true;
  EXPECT_EQ(Qdq(narrow, x, {5}, {2.0f})[4], -127.0f / 63.5f);
  // INT4 ties: 7/amax scale with amax 7 -> scale 1: 2.5 -> 2, 3.5 -> 4, -8.6 -> -8, 9 -> 7.
  auto y4 = Qdq(IntSpec(4), {2.5f, 3.5f, -8.6f, 9.0f}, {4}, {7.0f});
  EXPECT_EQ(y4, (std::vector<float>{2.0f, 4.0f, -8.0f, 7.0f}));
  // amax <= 2^-24 -> exactly zero output.
  auto z = Qdq(IntSpec(8), {1.0f, -1.0f}, {2}, {0x1p-24f});
  EXPECT_EQ(z, (std::vector<float>{0.0f, 0.0f}));
  EXPECT_NE(Qdq(IntSpec(8), {1e-8f}, {1}, {0x1.000002p-24f})[0], 0.0f);
  // NaN propagates; inf saturates.
  auto n = Qdq(IntSpec(8), {kNaN, kInf, -kInf}, {3}, {1.0f});
  EXPECT_TRUE(std::isnan(n[0]));
  EXPECT_EQ(n[1], 1.0f);
  EXPECT_EQ(n[2], -128.0f / 127.0f);
}

TEST(Qdq, UnsignedRejectsNegativeInput) {
  QuantSpec u = IntSpec(8);
  u.is_unsigned = true;
  auto y = Qdq(u, {0.0f, 1.0f, 2.0f}, {3}, {2.0f});
  EXPECT_EQ(y[2], 2.0f);  // max_bound 255
  EXPECT_EQ(y[1], 128.0f / 127.5f);  // 127.5 -> 128 (tie to even)
  std::vector<float> out(2);
  EXPECT_THROW(FakeQuant(u, std::vector<float>{1.0f, -0.5f}, std::vector<int64_t>{2}, std::vector<float>{1.0f}, out), Error);
}

TEST(Qdq, Fp8FakeQuantHandComputed) {
  // amax 448 -> scale 1: plain E4M3 RNE with saturation.
  auto y = Qdq(Fp8Spec(), {1.0625f, 1.1875f, 500.0f, -1e9f, 0x1p-10f, -0.0f}, {6}, {448.0f});
  EXPECT_EQ(y[0], 1.0f);     // tie between 1.0 and 1.125 -> even (1.0)
  EXPECT_EQ(y[1], 1.25f);    // tie between 1.125 and 1.25 -> even (1.25)
  EXPECT_EQ(y[2], 448.0f);   // saturation
  EXPECT_EQ(y[3], -448.0f);
  EXPECT_EQ(y[4], 0.0f);     // half the smallest subnormal -> 0
  EXPECT_TRUE(std::signbit(y[5]));
  // amax <= 2^-24 -> amax = 1 (scale 448).
  auto t = Qdq(Fp8Spec(), {0.5f}, {1}, {1e-9f});
  EXPECT_EQ(t[0], 0.5f);
  // Per-channel amax.
  QuantSpec pc = Fp8Spec();
  pc.axis = std::vector<int>{0};
  auto c = Qdq(pc, {1.0f, 2.0f, 1.0f, 2.0f}, {2, 2}, {2.0f, 4.0f});
  const float s0 = 448.0f / 2.0f, s1 = 448.0f / 4.0f;
  EXPECT_EQ(c[0], DecodeE4M3(EncodeE4M3(1.0f * s0)) * (1.0f / s0));
  EXPECT_EQ(c[3], DecodeE4M3(EncodeE4M3(2.0f * s1)) * (1.0f / s1));
  // use_constant_amax: amax 448 regardless of the passed amax.
  QuantSpec cst = Fp8Spec();
  cst.use_constant_amax = true;
  EXPECT_EQ(Qdq(cst, {3.3f}, {1}, {})[0], DecodeE4M3(EncodeE4M3(3.3f)));
  EXPECT_EQ(ComputeAmax(cst, std::vector<float>{1e6f}, std::vector<int64_t>{1}), std::vector<float>{448.0f});
}

// Independent restatement of the NVFP4 Triton kernel in double where exact, for cross-checking.
float Nvfp4Oracle(float x, float bmax, float global) {
  const float g = global / 2688.0f;
  const float gs = g > 0 ? g : 1e-12f;
  float t = bmax / (6.0f * gs);
  if (std::isnan(t) || t > 448.0f) t = 448.0f;
  float s = DecodeE4M3(EncodeE4M3(t)) * g;
  if (!(s >= 1e-5f)) s = 1.0f;
  const float v = std::fabs(x) / s;
  static const float vals[] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
  int idx;
  if (v <= 0.25f) idx = 0;
  else if (v < 0.75f) idx = 1;
  else if (v <= 1.25f) idx = 2;
  else if (v < 1.75f) idx = 3;
  else if (v <= 2.5f) idx = 4;
  else if (v < 3.5f) idx = 5;
  else if (v <= 5.0f) idx = 6;
  else idx = 7;
  const float r = vals[idx] * s;
  return x >= 0 ? r : -r;
}

TEST(Qdq, Nvfp4DynamicMatchesOracleIncludingPartialBlocks) {
  const std::vector<int64_t> shape = {7, 37};  // 37 = 2 full blocks + a partial one
  auto x = RandomTensor(7 * 37, 1);
  x[3] = 40.0f;     // outlier
  x[50] = 1e-30f;   // tiny
  for (int i = 74; i < 90; ++i) x[i] = 0.0f;  // an all-zero block
  auto y = Qdq(Nvfp4Spec(), x, shape, {});
  float gmax = 0;
  for (float v : x) gmax = std::max(gmax, std::fabs(v));
  for (int r = 0; r < 7; ++r)
    for (int c = 0; c < 37; ++c) {
      const int b0 = (c / 16) * 16;
      float bmax = 0;
      for (int k = b0; k < std::min(b0 + 16, 37); ++k) bmax = std::max(bmax, std::fabs(x[r * 37 + k]));
      const float want = Nvfp4Oracle(x[r * 37 + c], bmax, gmax);
      ASSERT_EQ(Bits(y[r * 37 + c]), Bits(want)) << r << "," << c;
    }
  // A calibrated global amax is used instead of the tensor's own max.
  auto y2 = Qdq(Nvfp4Spec(), x, shape, {100.0f});
  EXPECT_NE(y2, y);
}

TEST(Qdq, Nvfp4DynamicEdgeCases) {
  std::vector<float> x(16, 0.0f);
  // Global amax 0 -> gs = 1e-12 but s = e4m3(..) * 0 = 0 -> s = 1: values on the raw E2M1 grid.
  x[0] = 0.0f;
  auto y = Qdq(Nvfp4Spec(), x, {16}, {0.0f});
  for (float v : y) EXPECT_EQ(Bits(v), Bits(0.0f));
  x = std::vector<float>(16, 0.3f);
  y = Qdq(Nvfp4Spec(), x, {16}, {0.0f});
  EXPECT_EQ(y[0], 0.5f);  // raw grid, scale 1
  // Tiny tensor: s = 448 * amax/2688 < 1e-5 -> s = 1 -> everything rounds to 0.
  x = std::vector<float>(16, 5e-5f);
  y = Qdq(Nvfp4Spec(), x, {16}, {});
  EXPECT_EQ(y[0], 0.0f);
  // NaN global amax -> every block scale is 1; NaN elements become -6*s (Triton's comparison chain).
  x = std::vector<float>(16, 1.0f);
  x[3] = kNaN;
  y = Qdq(Nvfp4Spec(), x, {16}, {});
  EXPECT_EQ(y[0], 1.0f);
  EXPECT_EQ(y[3], -6.0f);
  // inf element with a finite calibrated global amax: block max inf -> t clamps to 448.
  x = std::vector<float>(16, 1.0f);
  x[0] = kInf;
  y = Qdq(Nvfp4Spec(), x, {16}, {6.0f});
  const float s = 448.0f * (6.0f / 2688.0f);
  EXPECT_EQ(y[0], 6.0f * s);
  // -0.0 comes out as +0.0; a small negative value as -0.0.
  x = std::vector<float>(16, 1.0f);
  x[1] = -0.0f;
  x[2] = -1e-3f;
  y = Qdq(Nvfp4Spec(), x, {16}, {});
  EXPECT_FALSE(std::signbit(y[1]));
  EXPECT_TRUE(std::signbit(y[2]));
  EXPECT_EQ(y[2], 0.0f);
}

TEST(Qdq, Nvfp4StaticUsesFp8FakeQuantOfBlockScales) {
  auto x = RandomTensor(64, 3);
  const std::vector<int64_t> shape = {2, 32};
  const QuantSpec s = Nvfp4StaticSpec();
  const auto amax = ComputeAmax(s, x, shape);
  ASSERT_EQ(amax.size(), 4u);
  float gmax = 0;
  for (float a : amax) gmax = std::max(gmax, a);
  auto y = Qdq(s, x, shape, amax);
  for (int b = 0; b < 4; ++b) {
    const float a8 = gmax / 6.0f;  // (448/448) * gmax / 6
    const float scale8 = 448.0f / a8;
    const float sb = DecodeE4M3(EncodeE4M3(amax[b] / 6.0f * scale8)) * (1.0f / scale8);
    for (int k = 0; k < 16; ++k) EXPECT_EQ(Bits(y[b * 16 + k]), Bits(Nvfp4QdqElement(x[b * 16 + k], sb)));
  }
  // An explicit global amax changes the scales; a zero block amax gives an all-zero block.
  std::vector<float> amax0 = amax;
  amax0[1] = 0.0f;
  auto z = Qdq(s, x, shape, amax0, 10.0f);
  for (int k = 16; k < 32; ++k) EXPECT_EQ(Bits(z[k]), Bits(0.0f));
  // four_over_six: FP8_NORM 256 -> the FP8 amax is gmax * 1.75 / 6.
  auto y46 = Qdq(Nvfp4StaticSpec(true), x, shape, amax);
  const float a8 = gmax * (448.0f / 256.0f) / 6.0f;
  const float scale8 = 448.0f / a8;
  const float sb = DecodeE4M3(EncodeE4M3(amax[0] / 6.0f * scale8)) * (1.0f / scale8);
  EXPECT_EQ(Bits(y46[0]), Bits(Nvfp4QdqElement(x[0], sb)));
}

TEST(Qdq, MxScaleAndElementsHandComputed) {
  // MXFP4: block max 5 -> r = 5/6 -> e = 0; block max 7 -> e = 1 (scale 1/2).
  std::vector<float> x(64, 0.0f);
  x[0] = 5.0f;
  x[1] = 0.75f;  // tie -> RNE 1.0 in fake quant
  x[2] = -1.75f; // tie -> -2.0
  x[32] = 7.0f;
  x[33] = 1.5f;  // 0.75 after scaling -> 1.0 -> 2.0
  x[34] = -0.0f;
  auto y = Qdq(MxSpec(NumBits::Float(2, 1)), x, {64}, {});
  EXPECT_EQ(y[0], 4.0f);  // 5 -> tie between 4 and 6 -> 4
  EXPECT_EQ(y[1], 1.0f);
  EXPECT_EQ(y[2], -2.0f);
  EXPECT_EQ(y[32], 8.0f);  // 3.5 -> 4 -> 8
  EXPECT_EQ(y[33], 2.0f);
  EXPECT_FALSE(std::signbit(y[34]));
  // Exact power-of-two ratio: block max 12 -> r = 2 -> e = 1 exactly.
  std::vector<float> p(32, 0.0f);
  p[0] = 12.0f;
  EXPECT_EQ(Qdq(MxSpec(NumBits::Float(2, 1)), p, {32}, {})[0], 12.0f);
  // MXFP8: block max 448*2^-3 -> e = -3, elements on the E4M3 grid times 2^-3.
  std::vector<float> f(32, 0.01f);
  f[0] = 56.0f;
  auto g = Qdq(MxSpec(NumBits::Float(4, 3)), f, {32}, {});
  EXPECT_EQ(g[0], 56.0f);
  EXPECT_EQ(g[1], DecodeE4M3(EncodeE4M3(0.01f * 8.0f)) / 8.0f);
  // MXINT8: rint then clamp +-127.
  std::vector<float> i(32, 0.0f);
  i[0] = 127.0f;
  i[1] = 2.5f;
  auto q = Qdq(MxSpec(NumBits::Int(8)), i, {32}, {});
  EXPECT_EQ(q[0], 127.0f);
  EXPECT_EQ(q[1], 2.0f);
  // MXFP6 formats.
  std::vector<float> e32(32, 0.0f);
  e32[0] = 28.0f;
  e32[1] = 0.15625f;  // E3M2 tie between 0.125 and 0.1875 -> even (0.125)
  auto y6 = Qdq(MxSpec(NumBits::Float(3, 2)), e32, {32}, {});
  EXPECT_EQ(y6[0], 28.0f);
  EXPECT_EQ(y6[1], 0.125f);
  e32[0] = 7.5f;
  e32[1] = 0.0625f;  // E2M3 tie between 0 and 0.125 -> 0
  auto y23 = Qdq(MxSpec(NumBits::Float(2, 3)), e32, {32}, {});
  EXPECT_EQ(y23[0], 7.5f);
  EXPECT_EQ(y23[1], 0.0f);
}

TEST(Qdq, MxEdgeCases) {
  const QuantSpec s = MxSpec(NumBits::Float(2, 1));
  // All-zero block -> scale 1; partial block padded with zeros for the amax only.
  std::vector<float> x(40, 0.0f);
  x[33] = 0.3f;  // only real element of the partial block besides zeros
  auto y = Qdq(s, x, {40}, {});
  EXPECT_EQ(y[0], 0.0f);
  EXPECT_EQ(y[33], DecodeE2M1(EncodeE2M1(0.3f / 0.0625f)) * 0.0625f);  // b/6 = 0.05 -> e = -4
  // inf: block max clamps to FLT_MAX (kernel clamp), so the inf saturates to 6 * 2^e.
  std::vector<float> z(32, 1.0f);
  z[0] = kInf;
  auto w = Qdq(s, z, {32}, {});
  const int e = CeilLog2Clamped(std::numeric_limits<float>::max() / 6.0f);
  EXPECT_EQ(w[0], 6.0f * Pow2(e));
  EXPECT_EQ(w[1], 0.0f);
  // NaN elements: ignored by the block max, NaN out.
  z = std::vector<float>(32, 1.0f);
  z[5] = kNaN;
  w = Qdq(s, z, {32}, {});
  EXPECT_TRUE(std::isnan(w[5]));
  EXPECT_EQ(w[0], 1.0f);
  // Tiny block: the exponent clamps at -127.
  z = std::vector<float>(32, 0.0f);
  z[0] = 1e-45f;
  w = Qdq(s, z, {32}, {});
  EXPECT_EQ(w[0], 0.0f);  // 2^-149 * 2^127 = 2^-22 -> rounds to 0
}

TEST(Qdq, StaticBlocksEqualPerBlockPerTensorQdq) {
  // A static-block FP8 QDQ equals a per-tensor QDQ of each (cropped) block with that block's amax.
  const std::vector<int64_t> shape = {5, 7};
  auto x = RandomTensor(35, 11);
  QuantSpec s = Fp8Spec();
  s.block = BlockSpec{{{-1, 3}, {-2, 2}}, false, std::nullopt, false};
  const auto amax = ComputeAmax(s, x, shape);
  ASSERT_EQ(amax.size(), 3u * 3u);
  auto y = Qdq(s, x, shape, amax);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 7; ++c) {
      const float a = amax[(r / 2) * 3 + c / 3];
      EXPECT_EQ(Bits(y[r * 7 + c]), Bits(Fp8FakeQuantScalar(x[r * 7 + c], a)));
    }
  // Same with INT4 blocks and a block size larger than the dim (one padded block).
  QuantSpec i4 = IntSpec(4);
  i4.block = BlockSpec{{{-1, 16}}, false, std::nullopt, false};
  const auto a4 = ComputeAmax(i4, x, shape);
  ASSERT_EQ(a4.size(), 5u);
  auto y4 = Qdq(i4, x, shape, a4);
  for (int r = 0; r < 5; ++r) {
    std::vector<float> row(x.begin() + r * 7, x.begin() + r * 7 + 7);
    auto want = Qdq(IntSpec(4), row, {7}, {a4[r]});
    for (int c = 0; c < 7; ++c) EXPECT_EQ(Bits(y4[r * 7 + c]), Bits(want[c]));
  }
}

TEST(Qdq, TopLevelDynamicRecomputesAmaxPerCall) {
  QuantSpec s = Fp8Spec();
  s.axis = std::vector<int>{0};
  s.dynamic = true;  // per-token dynamic
  auto x = RandomTensor(12, 5);
  auto y = Qdq(s, x, {3, 4}, {123.0f});  // the passed amax is ignored
  QuantSpec st = s;
  st.dynamic = false;
  EXPECT_EQ(y, Qdq(st, x, {3, 4}, ComputeAmax(st, x, std::vector<int64_t>{3, 4})));
}

TEST(Qdq, ErrorsNameTheKey) {
  auto expect_error = [](const QuantSpec& s, std::vector<int64_t> shape, const char* needle) {
    try {
      MakeQdqPlan(s, shape, "model.layers.0.mlp.down_proj.weight_quantizer");
      ADD_FAILURE() << "no error for " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("down_proj"), std::string::npos) << e.what();
    }
  };
  QuantSpec s = IntSpec(8);
  s.axis = std::vector<int>{2};
  expect_error(s, {4, 4}, "axis 2 is out of range");
  s = IntSpec(8);
  s.block = BlockSpec{{{-3, 16}}, false, std::nullopt, false};
  expect_error(s, {4, 4}, "block_sizes axis -3");
  s.block = BlockSpec{{{-1, 0}}, false, std::nullopt, false};
  expect_error(s, {4, 4}, "block_sizes[-1] = 0");
  s = MxSpec(NumBits::Float(2, 1));
  s.block->sizes = {{-1, 32}, {0, 2}};
  expect_error(s, {4, 64}, "exactly one integer axis key");
  s = IntSpec(8);
  s.num_bits = NumBits::Float(5, 2);
  expect_error(s, {4}, "Only blockwise dynamic quantization");
  s = Nvfp4Spec();
  s.block->scale_bits = NumBits::Float(5, 2);
  expect_error(s, {16}, "scale_bits");
  s = IntSpec(0);
  expect_error(s, {4}, "num_bits 0");
  // Amax of the wrong size.
  std::vector<float> out(4);
  QuantSpec pc = Fp8Spec();
  pc.axis = std::vector<int>{0};
  EXPECT_THROW(FakeQuant(pc, std::vector<float>(4, 1.0f), std::vector<int64_t>{2, 2},
                                  std::vector<float>{1, 2, 3}, out),
               Error);
}

TEST(Qdq, WithOwnAmaxRoundsToInputDtype) {
  auto x = RandomTensor(64, 9);
  for (float& v : x) v = Bf16ToF32(F32ToBf16Rne(v));
  std::vector<float> f32(64), bf16(64);
  FakeQuantWithOwnAmax(IntSpec(8), x, std::vector<int64_t>{64}, f32, RoundTo::kF32);
  FakeQuantWithOwnAmax(IntSpec(8), x, std::vector<int64_t>{64}, bf16, RoundTo::kBF16);
  for (int i = 0; i < 64; ++i) EXPECT_EQ(Bits(bf16[i]), Bits(Bf16ToF32(F32ToBf16Rne(f32[i]))));
  bool any_diff = false;
  for (int i = 0; i < 64; ++i) any_diff |= f32[i] != bf16[i];
  EXPECT_TRUE(any_diff);  // int8 grid points of a random amax are not bf16 values
}

TEST(Qdq, EmptyTensorsPassThrough) {
  std::vector<float> none;
  EXPECT_NO_THROW(FakeQuant(IntSpec(8), none, std::vector<int64_t>{0, 16}, {}, std::span<float>()));
  EXPECT_TRUE(ComputeAmax(IntSpec(8), none, std::vector<int64_t>{0, 16}).empty());
}

// Records what numerics offers to its kernels; declines everything unless `accept_fake_quant`, then
// writes 42 everywhere (a value no reference QDQ of these inputs produces) to show the result is used.
class SpyKernels final : public HostQuantKernels {
 public:
  bool accept_fake_quant = false;
  mutable int fake_quant_calls = 0;
  mutable int abs_max_calls = 0;
  mutable std::vector<float> offered_amax;
  bool FakeQuant(const QdqPlan& plan, std::span<const float> x, std::span<const float> amax,
                 std::optional<float> global_amax, std::span<float> out) const override {
    ++fake_quant_calls;
    offered_amax.assign(amax.begin(), amax.end());
    if (!accept_fake_quant) return false;
    EXPECT_EQ(plan.numel, static_cast<int64_t>(x.size()));
    EXPECT_FALSE(global_amax.has_value());
    for (float& v : out) v = 42.0f;
    return true;
  }
  bool AbsMax(std::span<const float> /*x*/, bool /*propagate_nan*/, float* /*result*/) const override {
    ++abs_max_calls;
    return false;
  }
};

TEST(Qdq, KernelsAreOfferedTheResolvedPlanAndMayDecline) {
  const std::vector<int64_t> shape = {4, 8};
  const auto x = RandomTensor(32, 11);
  QuantSpec pc = IntSpec(8);
  pc.axis = std::vector<int>{0};
  const std::vector<float> ref = Qdq(pc, x, shape, {2.0f});  // no kernels: the reference
  SpyKernels spy;
  std::vector<float> out(32);
  FakeQuant(pc, x, shape, std::vector<float>{2.0f}, out, std::nullopt, "t", &spy);
  EXPECT_EQ(spy.fake_quant_calls, 1);
  EXPECT_EQ(spy.offered_amax, std::vector<float>(4, 2.0f));  // one amax per group, broadcast resolved
  for (int i = 0; i < 32; ++i) EXPECT_EQ(Bits(out[i]), Bits(ref[i])) << i;  // declined: the reference ran
  spy.accept_fake_quant = true;
  FakeQuant(pc, x, shape, std::vector<float>{2.0f}, out, std::nullopt, "t", &spy);
  EXPECT_EQ(out, std::vector<float>(32, 42.0f));
  // Max calibration asks for the abs max (finiteness probe) and falls back when declined.
  EXPECT_EQ(ComputeAmax(Fp8Spec(), x, shape, "t", &spy), ComputeAmax(Fp8Spec(), x, shape));
  EXPECT_EQ(spy.abs_max_calls, 1);
}

TEST(Qdq, ExportAmax) {
  EXPECT_EQ(ExportAmax(0.0f, 448.0f), 448.0f);
  EXPECT_EQ(ExportAmax(kNaN, 127.0f), 127.0f);
  EXPECT_EQ(ExportAmax(1e-45f, 448.0f), std::numeric_limits<float>::min());
  EXPECT_EQ(ExportAmax(kInf, 448.0f), std::numeric_limits<float>::max());
  EXPECT_EQ(ExportAmax(3.0f, 448.0f), 3.0f);
  QuantSpec nv = Nvfp4Spec();
  EXPECT_EQ(MaxBound(nv), 6.0f);
  EXPECT_EQ(MaxBound(Fp8Spec()), 448.0f);
  QuantSpec u4 = IntSpec(4);
  u4.is_unsigned = true;
  EXPECT_EQ(MaxBound(u4), 15.0f);
  EXPECT_EQ(MaxBound(IntSpec(4)), 7.0f);
}

}  // namespace
}  // namespace qforge
