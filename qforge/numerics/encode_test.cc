// Tests of the export encodings: layouts, decode(encode(w)) == qdq(w), and each documented difference
// between ModelOpt's export path and its fake-quant path (one test per difference, named for it).
#include "qforge/numerics/encode.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

bool SameBits(float a, float b) { return Bits(a) == Bits(b) || (std::isnan(a) && std::isnan(b)); }

std::vector<float> RandomTensor(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> x(n);
  for (float& v : x) v = nd(rng);
  return x;
}

// Random weights with the adversarial features every format must survive: outliers, tiny values, an
// all-zero block, varied row scales. Exact zeros and ties are added only where the paths agree on them.
std::vector<float> Adversarial(size_t rows, size_t cols, uint32_t seed, bool exact_zeros) {
  auto x = RandomTensor(rows * cols, seed);
  std::mt19937 rng(seed + 1);
  for (size_t r = 0; r < rows; ++r) {
    const float row_scale = std::ldexp(1.0f, static_cast<int>(rng() % 20) - 10);
    for (size_t c = 0; c < cols; ++c) x[r * cols + c] *= row_scale;
  }
  x[3] *= 300.0f;                   // outlier
  x[cols + 5] = 1e-20f;             // tiny
  x[2 * cols + 1] = -3e-30f;        // tiny negative
  if (exact_zeros && rows > 3)
    for (size_t c = 0; c < std::min<size_t>(cols, 32); ++c) x[3 * cols + c] = 0.0f;  // zero block(s)
  return x;
}

std::vector<float> QdqOwn(PackFormat f, const std::vector<float>& w, const std::vector<int64_t>& shape) {
  std::vector<float> out(w.size());
  FakeQuantWithOwnAmax(WeightSpecFor(f), w, shape, out);
  return out;
}

// ------------------------------------------------------------------------------------------------
// Layouts.

TEST(Encode, TableNamesAndSpecs) {
  for (const PackFormatTraits& t : kPackFormatTable) {
    EXPECT_EQ(PackFormatFromName(t.name), t.format);
    EXPECT_NO_THROW(MakeQdqPlan(WeightSpecFor(t.format), std::vector<int64_t>{256, 256}));
  }
  EXPECT_FALSE(PackFormatFromName("fp4"));
  EXPECT_NE(AllPackFormatNames().find("int4_awq"), std::string_view::npos);
}

TEST(Encode, Nvfp4LayoutLowNibbleIsTheEvenElement) {
  std::vector<float> w(32, 0.0f);
  w[0] = 6.0f;    // code 7
  w[1] = -0.5f;   // code 9
  w[16] = 1.0f;
  const PackedWeight p = PackWeight(PackFormat::kNvfp4, w, std::vector<int64_t>{2, 16});
  EXPECT_EQ(p.weight_shape, (std::vector<int64_t>{2, 8}));
  EXPECT_EQ(p.scale_shape, (std::vector<int64_t>{2, 1}));
  ASSERT_TRUE(p.weight_scale_2);
  EXPECT_EQ(*p.weight_scale_2, 6.0f / 2688.0f);
  // Block 0: amax 6 -> 6/(6*ws2) = 448 -> scale byte 0x7E; element codes 7 and 9.
  EXPECT_EQ(p.scale_bytes[0], 0x7E);
  EXPECT_EQ(p.weight[0], 0x97);
  EXPECT_EQ(UnpackWeight(p), QdqOwn(PackFormat::kNvfp4, w, {2, 16}));
}

TEST(Encode, Int4AwqPacksAlongTheOutputDimension) {
  std::vector<float> w(4 * 128, 0.0f);
  for (int c = 0; c < 128; ++c) {
    w[0 * 128 + c] = 7.0f;
    w[1 * 128 + c] = -8.0f * 7.0f / 8.0f;  // -7
    w[2 * 128 + c] = 1.0f;
    w[3 * 128 + c] = -1.0f;
  }
  const PackedWeight p = PackWeight(PackFormat::kInt4Awq, w, std::vector<int64_t>{4, 128});
  EXPECT_EQ(p.weight_shape, (std::vector<int64_t>{2, 128}));
  EXPECT_EQ(p.scale_shape, (std::vector<int64_t>{4, 1}));
  EXPECT_EQ(p.scale_f32[0], 1.0f);  // amax 7 / 7
  EXPECT_EQ(p.weight[0], 0x97);     // row 0 (7) low nibble, row 1 (-7 = 0x9) high nibble
  EXPECT_EQ(p.weight[128], 0x97);   // rows 2/3: amax 1 -> scale 1/7 -> codes 7 and -7
  EXPECT_EQ(UnpackWeight(p)[128 * 3], -1.0f);
}

TEST(Encode, Fp8BlockScaleShapeIsTheQuantizerAmaxLayout) {
  auto w = RandomTensor(200 * 300, 4);
  const PackedWeight p = PackWeight(PackFormat::kFp8Block, w, std::vector<int64_t>{200, 300});
  EXPECT_EQ(p.scale_shape, (std::vector<int64_t>{2, 1, 3, 1}));  // runtime-contract [out/128, 1, in/128, 1]
  EXPECT_EQ(p.weight_shape, (std::vector<int64_t>{200, 300}));   // padded blocks cropped
  // 3-D experts keep their leading dim.
  auto e = RandomTensor(2 * 128 * 128, 5);
  EXPECT_EQ(PackWeight(PackFormat::kFp8Block, e, std::vector<int64_t>{2, 128, 128}).scale_shape,
            (std::vector<int64_t>{2, 1, 1, 1, 1}));
}

TEST(Encode, ShapesAndScalesOfEveryFormat) {
  auto w = RandomTensor(256 * 256, 6);
  const std::vector<int64_t> shape = {256, 256};
  struct Want {
    PackFormat f;
    std::vector<int64_t> weight, scale;
    bool scale2;
  } wants[] = {
      {PackFormat::kFp8, {256, 256}, {}, false},           {PackFormat::kFp8PerChannel, {256, 256}, {256}, false},
      {PackFormat::kFp8Block, {256, 256}, {2, 1, 2, 1}, false}, {PackFormat::kNvfp4, {256, 128}, {256, 16}, true},
      {PackFormat::kMxfp8, {256, 256}, {256, 8}, false},   {PackFormat::kMxfp4, {256, 128}, {256, 8}, false},
      {PackFormat::kInt8, {256, 256}, {256}, false},       {PackFormat::kInt4Awq, {128, 256}, {256, 2}, false},
  };
  for (const Want& want : wants) {
    const PackedWeight p = PackWeight(want.f, w, shape);
    EXPECT_EQ(p.weight_shape, want.weight) << GetTraits(want.f).name;
    EXPECT_EQ(p.scale_shape, want.scale) << GetTraits(want.f).name;
    EXPECT_EQ(p.weight_scale_2.has_value(), want.scale2) << GetTraits(want.f).name;
    int64_t n = 1;
    for (int64_t d : want.weight) n *= d;
    EXPECT_EQ(static_cast<int64_t>(p.weight.size()), n);
  }
}

// The layout the export plans before encoding is the one PackWeight produces, for every format and for
// 3-d (expert) weights where the format takes them; a shape a format cannot hold throws the same way.
TEST(Encode, PackedLayoutOfEqualsWhatPackWeightWrites) {
  for (const auto& t : kPackFormatTable) {
    for (const std::vector<int64_t>& shape : {std::vector<int64_t>{256, 384}, std::vector<int64_t>{3, 128, 256}}) {
      const auto w = RandomTensor(static_cast<size_t>(shape[0] * shape[1] * (shape.size() > 2 ? shape[2] : 1)), 9);
      if (static_cast<int>(shape.size()) > 2 && (t.format == PackFormat::kFp8PerChannel || t.format == PackFormat::kInt8)) {
        continue;  // per-channel formats take [out, in] only
      }
      const PackedWeight p = PackWeight(t.format, w, shape);
      const PackedLayout l = PackedLayoutOf(t.format, shape);
      EXPECT_EQ(l.weight_shape, p.weight_shape) << t.name;
      EXPECT_EQ(l.scale_shape, p.scale_shape) << t.name;
      EXPECT_EQ(l.has_scale_2, p.weight_scale_2.has_value()) << t.name;
      EXPECT_EQ(l.weight_type, t.weight_type) << t.name;
      EXPECT_EQ(l.scale_type, t.scale_type) << t.name;
    }
  }
  EXPECT_THROW(PackedLayoutOf(PackFormat::kNvfp4, std::vector<int64_t>{4, 40}, "w"), Error);
  EXPECT_THROW(PackedLayoutOf(PackFormat::kMxfp8, std::vector<int64_t>{4, 48}, "w"), Error);
  EXPECT_THROW(PackedLayoutOf(PackFormat::kInt4Awq, std::vector<int64_t>{3, 128}, "w"), Error);
  EXPECT_THROW(PackedLayoutOf(PackFormat::kFp8PerChannel, std::vector<int64_t>{8}, "w"), Error);
}

// Declines every kernel, counting the offers: PackWeight must fall back to the same bytes.
class DecliningKernels final : public HostQuantKernels {
 public:
  mutable int pack_nvfp4 = 0, encode_fp8 = 0, abs_max = 0;
  bool AbsMax(std::span<const float>, bool, float*) const override {
    ++abs_max;
    return false;
  }
  bool PackNvfp4(std::span<const float>, int64_t, int64_t, float, std::span<uint8_t>,
                 std::span<uint8_t>) const override {
    ++pack_nvfp4;
    return false;
  }
  bool EncodeFp8(std::span<const float>, std::span<const float>, int64_t, std::span<uint8_t>) const override {
    ++encode_fp8;
    return false;
  }
};

TEST(Encode, DeclinedKernelsFallBackToTheReference) {
  const std::vector<int64_t> shape = {8, 64};
  const auto w = Adversarial(8, 64, 21, true);
  const DecliningKernels k;
  for (PackFormat f : {PackFormat::kNvfp4, PackFormat::kFp8, PackFormat::kFp8PerChannel, PackFormat::kMxfp8}) {
    const PackedWeight ref = PackWeight(f, w, shape);
    const PackedWeight got = PackWeight(f, w, shape, {}, "w", &k);
    EXPECT_EQ(got.weight, ref.weight) << GetTraits(f).name;
    EXPECT_EQ(got.scale_bytes, ref.scale_bytes) << GetTraits(f).name;
    EXPECT_EQ(got.scale_f32, ref.scale_f32) << GetTraits(f).name;
  }
  EXPECT_EQ(k.pack_nvfp4, 1);
  EXPECT_EQ(k.encode_fp8, 2);
  EXPECT_GE(k.abs_max, 3);  // nvfp4 global amax, fp8/fp8_pc calibration, mxfp8 finiteness
}

TEST(Encode, ReferenceKernelsStopAtNonFiniteWeights) {
  std::vector<float> w(32, 1.0f);
  std::vector<uint8_t> packed(16), scales(2), codes(32);
  EXPECT_TRUE(PackNvfp4Reference(w, 1, 32, 1.0f, packed, scales));
  EXPECT_TRUE(EncodeFp8Reference(w, std::vector<float>{1.0f, 2.0f}, 16, codes));
  EXPECT_EQ(codes[0], EncodeE4M3(1.0f));
  EXPECT_EQ(codes[16], EncodeE4M3(0.5f));
  for (float bad : {std::nanf(""), kInf, -kInf}) {
    w[20] = bad;
    EXPECT_FALSE(PackNvfp4Reference(w, 1, 32, 1.0f, packed, scales));
    EXPECT_FALSE(EncodeFp8Reference(w, std::vector<float>{1.0f, 2.0f}, 16, codes));
  }
}

TEST(Encode, ErrorsNameTheTensor) {
  auto expect_error = [](PackFormat f, std::vector<float> w, std::vector<int64_t> shape, const char* needle) {
    try {
      PackWeight(f, w, shape, {}, "model.layers.3.mlp.up_proj.weight");
      ADD_FAILURE() << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("up_proj"), std::string::npos) << e.what();
    }
  };
  expect_error(PackFormat::kNvfp4, std::vector<float>(24, 1.0f), {2, 12}, "multiple of 16");
  expect_error(PackFormat::kMxfp4, std::vector<float>(32, 1.0f), {2, 16}, "multiple of 32");
  expect_error(PackFormat::kInt4Awq, std::vector<float>(3 * 128, 1.0f), {3, 128}, "even out");
  std::vector<float> bad(32, 1.0f);
  bad[7] = std::nanf("");
  expect_error(PackFormat::kFp8, bad, {2, 16}, "non-finite");
  expect_error(PackFormat::kInt8, std::vector<float>(4, 1.0f), {4}, "rank >= 2");
  PackInputs in;
  in.amax = {1.0f, 2.0f};
  EXPECT_THROW(PackWeight(PackFormat::kInt8, std::vector<float>(12, 1.0f), std::vector<int64_t>{3, 4}, in), Error);
}

// ------------------------------------------------------------------------------------------------
// decode(encode(w)) == qdq(w), bit for bit, where ModelOpt's two paths agree.

TEST(Encode, Nvfp4DecodeEqualsQdqBitForBit) {
  for (uint32_t seed = 0; seed < 8; ++seed) {
    const std::vector<int64_t> shape = {33, 64};
    auto w = Adversarial(33, 64, seed, /*exact_zeros=*/true);
    w[7] = -0.0f;
    const auto dec = UnpackWeight(PackWeight(PackFormat::kNvfp4, w, shape));
    const auto qdq = QdqOwn(PackFormat::kNvfp4, w, shape);
    for (size_t i = 0; i < w.size(); ++i) {
      // Tiny blocks are where the paths differ (see Nvfp4ExportClampsBlockScale...); skip them here.
      float bmax = 0;
      for (size_t k = i / 16 * 16; k < i / 16 * 16 + 16; ++k) bmax = std::max(bmax, std::fabs(w[k]));
      float gmax = 0;
      for (float v : w) gmax = std::max(gmax, std::fabs(v));
      if (bmax != 0 && bmax / (6 * (gmax / 2688.0f)) < 0x1p-9f) continue;
      if (bmax != 0 && DecodeE4M3(Nvfp4ExportBlockScale(bmax, gmax / 2688.0f)) * (gmax / 2688.0f) < 1e-5f) continue;
      ASSERT_TRUE(SameBits(dec[i], qdq[i])) << "seed " << seed << " i " << i << " w " << w[i] << ": " << dec[i]
                                            << " vs " << qdq[i];
    }
  }
}

TEST(Encode, Nvfp4ThreeDimensionalExpertsAndCalibratedGlobalAmax) {
  auto w = RandomTensor(3 * 8 * 32, 21);
  const std::vector<int64_t> shape = {3, 8, 32};
  PackInputs in;
  in.global_amax = 10.0f;  // a calibrated `_amax` larger than the weight max
  const auto dec = UnpackWeight(PackWeight(PackFormat::kNvfp4, w, shape, in));
  std::vector<float> qdq(w.size());
  FakeQuant(WeightSpecFor(PackFormat::kNvfp4), w, shape, std::vector<float>{10.0f}, qdq);
  for (size_t i = 0; i < w.size(); ++i) ASSERT_TRUE(SameBits(dec[i], qdq[i])) << i;
}

TEST(Encode, Mxfp8DecodeEqualsQdqBitForBit) {
  for (uint32_t seed = 0; seed < 8; ++seed) {
    const std::vector<int64_t> shape = {17, 96};
    auto w = Adversarial(17, 96, seed, /*exact_zeros=*/true);
    const auto dec = UnpackWeight(PackWeight(PackFormat::kMxfp8, w, shape));
    const auto qdq = QdqOwn(PackFormat::kMxfp8, w, shape);
    for (size_t i = 0; i < w.size(); ++i) ASSERT_TRUE(SameBits(dec[i], qdq[i])) << seed << " " << i;
  }
}

TEST(Encode, Mxfp4DecodeEqualsQdqBitForBitAwayFromTiesAndZeros) {
  for (uint32_t seed = 0; seed < 8; ++seed) {
    const std::vector<int64_t> shape = {9, 128};
    auto w = Adversarial(9, 128, seed, /*exact_zeros=*/false);
    const auto dec = UnpackWeight(PackWeight(PackFormat::kMxfp4, w, shape));
    const auto qdq = QdqOwn(PackFormat::kMxfp4, w, shape);
    for (size_t i = 0; i < w.size(); ++i) ASSERT_TRUE(SameBits(dec[i], qdq[i])) << seed << " " << i;
  }
}

// ------------------------------------------------------------------------------------------------
// One test per documented export-vs-fake-quant difference.

TEST(ExportDiffers, Mxfp4ExportRoundsTiesTowardSmallerMagnitude) {
  // spec §13 Q5: block max 6 -> e = 0; the ties 0.75, 1.75, 3.5 go down in export, to even in fake quant.
  std::vector<float> w(32, 0.0f);
  w[0] = 6.0f;
  w[1] = 0.75f;
  w[2] = 1.75f;
  w[3] = -3.5f;
  w[4] = 1.25f;  // ties at 0.25/1.25/2.5/5 agree (RNE goes down there too)
  w[5] = 2.5f;
  const std::vector<int64_t> shape = {1, 32};
  const auto dec = UnpackWeight(PackWeight(PackFormat::kMxfp4, w, shape));
  const auto qdq = QdqOwn(PackFormat::kMxfp4, w, shape);
  EXPECT_EQ(dec[1], 0.5f);
  EXPECT_EQ(qdq[1], 1.0f);
  EXPECT_EQ(dec[2], 1.5f);
  EXPECT_EQ(qdq[2], 2.0f);
  EXPECT_EQ(dec[3], -3.0f);
  EXPECT_EQ(qdq[3], -4.0f);
  EXPECT_EQ(dec[4], qdq[4]);
  EXPECT_EQ(dec[5], qdq[5]);
}

TEST(ExportDiffers, Mxfp4ExportWritesExactZerosWithTheSignBit) {
  // spec §13 Q5: sign bit = (2 - sign(x)) // 2 with sign(0) = 0, so +0.0 and -0.0 both become code 0x8.
  std::vector<float> w(32, 0.0f);
  w[0] = 6.0f;
  w[2] = -0.0f;
  w[3] = 1e-3f;   // rounds to +0: sign bit clear
  w[4] = -1e-3f;  // rounds to -0: sign bit set in both paths
  const PackedWeight p = PackWeight(PackFormat::kMxfp4, w, std::vector<int64_t>{1, 32});
  EXPECT_EQ(p.weight[0] >> 4, 0x8);       // element 1 (+0.0) -> code 8
  EXPECT_EQ(p.weight[1] & 0xF, 0x8);      // element 2 (-0.0) -> code 8
  EXPECT_EQ(p.weight[1] >> 4, 0x0);       // element 3 -> +0
  EXPECT_EQ(p.weight[2] & 0xF, 0x8);      // element 4 -> -0
  const auto dec = UnpackWeight(p);
  const auto qdq = QdqOwn(PackFormat::kMxfp4, w, {1, 32});
  EXPECT_TRUE(std::signbit(dec[1]));
  EXPECT_FALSE(std::signbit(qdq[1]));
  EXPECT_TRUE(std::signbit(dec[4]) && std::signbit(qdq[4]));
  // An all-zero block: export scale 2^-127 (code 0), fake quant scale 1; values all zero either way.
  const PackedWeight z = PackWeight(PackFormat::kMxfp4, std::vector<float>(32, 0.0f), std::vector<int64_t>{1, 32});
  EXPECT_EQ(z.scale_bytes[0], 0);
  EXPECT_EQ(z.weight[0], 0x88);
}

TEST(ExportDiffers, MxExportExponentUsesFloatLog2) {
  // r = amax/448 = nextafter(2^20): exact ceil(log2 r) = 21 (fake quant, bit pattern), but
  // float(log2(r)) = 20.0 exactly, so the export exponent is 20 (torch.log2 + ceil).
  const float amax = std::nextafter(448.0f * 1048576.0f, kInf);
  ASSERT_EQ(amax / 448.0f, std::nextafter(1048576.0f, kInf));
  EXPECT_EQ(CeilLog2Clamped(amax / 448.0f), 21);
  EXPECT_EQ(CeilOfFloatLog2(amax / 448.0f), 20);
  std::vector<float> w(32, 0.0f);
  w[0] = amax;
  w[1] = 2621.44f;  // 0.0025 * 2^20: an E4M3 subnormal after scaling, where the grids differ
  const PackedWeight p = PackWeight(PackFormat::kMxfp8, w, std::vector<int64_t>{1, 32});
  EXPECT_EQ(p.scale_bytes[0], 127 + 20);
  const auto dec = UnpackWeight(p);
  const auto qdq = QdqOwn(PackFormat::kMxfp8, w, {1, 32});
  EXPECT_EQ(dec[0], 448.0f * 1048576.0f);  // clamped to 448 * 2^20
  EXPECT_EQ(qdq[0], 448.0f * 1048576.0f);  // 224 * 2^21
  EXPECT_NE(dec[1], qdq[1]);               // finer grid in export
  // Away from powers of two both exponents agree.
  EXPECT_EQ(CeilOfFloatLog2(3.0f), CeilLog2Clamped(3.0f));
}

TEST(ExportDiffers, Fp8ExportDoesNotSaturate) {
  // spec §13 Q6: with a calibrated amax below the weight max, w/scale > 464 casts to NaN in export;
  // fake quant saturates to +-448.
  std::vector<float> w = {1.0f, 2.0f, -2.2f, 0.5f};
  PackInputs in;
  in.amax = {1.0f};  // scale 1/448; 2.0 -> 896 -> NaN; 1.0 -> 448
  const PackedWeight p = PackWeight(PackFormat::kFp8, w, std::vector<int64_t>{2, 2}, in);
  EXPECT_EQ(p.weight[0], 0x7E);
  EXPECT_EQ(p.weight[1], 0x7F);
  EXPECT_EQ(p.weight[2], 0xFF);
  std::vector<float> qdq(4);
  FakeQuant(WeightSpecFor(PackFormat::kFp8), w, std::vector<int64_t>{2, 2}, in.amax, qdq);
  EXPECT_EQ(qdq[1], 1.0f);
  EXPECT_EQ(qdq[2], -1.0f);
  EXPECT_TRUE(std::isnan(UnpackWeight(p)[1]));
  // 464 itself is a tie that rounds to 448 (not NaN) in PyTorch's cast.
  in.amax = {448.0f};
  EXPECT_EQ(PackWeight(PackFormat::kFp8, std::vector<float>{464.0f, 464.5f}, std::vector<int64_t>{1, 2}, in).weight,
            (ByteBuffer{0x7E, 0x7F}));
}

TEST(ExportDiffers, Fp8Int8Int4ScaleArithmeticDiffersByUlps) {
  // spec §13 Q14: fake quant computes y = code(x * (M/amax)) * (1/(M/amax)); export stores
  // scale = amax/M and codes code(x / scale). The scales differ in the last bit for some amax, so decoded
  // values differ by ulps, and a code can differ only where x*(M/amax) and x/(amax/M) straddle a
  // rounding boundary.
  int value_diffs = 0, code_diffs = 0, total = 0;
  for (uint32_t seed = 0; seed < 16; ++seed) {
    auto w = RandomTensor(2 * 256, 100 + seed, 0.37f + seed);
    const std::vector<int64_t> shape = {2, 256};
    for (PackFormat f : {PackFormat::kFp8, PackFormat::kInt8, PackFormat::kInt4Awq}) {
      const auto dec = UnpackWeight(PackWeight(f, w, shape));
      const auto qdq = QdqOwn(f, w, shape);
      for (size_t i = 0; i < w.size(); ++i) {
        ++total;
        if (SameBits(dec[i], qdq[i])) continue;
        ++value_diffs;
        const float rel = std::fabs(dec[i] - qdq[i]) / std::max(std::fabs(qdq[i]), 1e-30f);
        if (rel > 0x1p-20f) ++code_diffs;  // a different code (adjacent grid point)
      }
    }
  }
  EXPECT_GT(value_diffs, 0);               // the difference is real...
  EXPECT_LE(code_diffs, total / 1000 + 1);  // ...and almost always only in the scale's last bits
}

TEST(ExportDiffers, TinyAmaxFakeQuantZeroesButExportKeeps) {
  // amax <= 2^-24: integer fake quant outputs 0 and FP8 fake quant uses amax = 1; export_amax keeps the
  // tiny amax, so the exported codes still resolve the values.
  std::vector<float> w = {1e-8f, -5e-9f, 2e-9f, 0.0f};
  const std::vector<int64_t> shape = {2, 2};
  const auto d8 = UnpackWeight(PackWeight(PackFormat::kInt8, w, shape));
  const auto q8 = QdqOwn(PackFormat::kInt8, w, shape);
  EXPECT_EQ(q8[0], 0.0f);
  EXPECT_NEAR(d8[0], 1e-8f, 1e-10f);
  const auto df = UnpackWeight(PackWeight(PackFormat::kFp8, w, shape));
  const auto qf = QdqOwn(PackFormat::kFp8, w, shape);
  EXPECT_EQ(qf[0], 0.0f);
  EXPECT_NEAR(df[0], 1e-8f, 1e-9f);
}

TEST(ExportDiffers, Nvfp4ExportClampsBlockScaleFakeQuantResetsTinyScalesToOne) {
  // §5.5 vs §5.3. (a) A block whose ratio b/(6*ws2) is below 2^-10 rounds to FP8 zero in fake quant, and
  // the s < 1e-5 rule then sets s = 1, so the block quantizes to 0; export clamps the ratio to 2^-9.
  const std::vector<int64_t> shape = {1, 32};
  std::vector<float> w(32, 0.0f);
  w[0] = 1000.0f;  // ws2 = 1000/2688
  for (int k = 16; k < 32; ++k) w[k] = 1e-4f * static_cast<float>(k - 15);  // block max 1.6e-3
  const PackedWeight p = PackWeight(PackFormat::kNvfp4, w, shape);
  EXPECT_EQ(p.scale_bytes[1], 0x01);  // 2^-9, the clamp
  const auto dec = UnpackWeight(p);
  const auto qdq = QdqOwn(PackFormat::kNvfp4, w, shape);
  EXPECT_EQ(qdq[31], 0.0f);
  EXPECT_NEAR(dec[31], w[31], w[31] * 0.2f);
  // (b) The ratio is representable but e4m3(ratio) * ws2 < 1e-5: fake quant resets s to 1 (zeros),
  // export keeps weight_scale = e4m3(ratio).
  w[0] = 0.02f;  // ws2 = 7.4e-6
  for (int k = 16; k < 32; ++k) w[k] = 1e-6f * static_cast<float>(k - 15);
  const auto dec2 = UnpackWeight(PackWeight(PackFormat::kNvfp4, w, shape));
  const auto qdq2 = QdqOwn(PackFormat::kNvfp4, w, shape);
  EXPECT_EQ(qdq2[31], 0.0f);
  EXPECT_NEAR(dec2[31], w[31], w[31] * 0.2f);
  // The first block is identical in both paths.
  for (int k = 0; k < 16; ++k) EXPECT_TRUE(SameBits(dec2[k], qdq2[k])) << k;
}

TEST(ExportDiffers, Nvfp4StaticScaleFormulasRoundDifferently) {
  // Static NVFP4: fake quant s = e4m3(b/6 * 448/amax8) * (1/(448/amax8)) with amax8 = G/6; export
  // weight_scale = e4m3(clamp(b/6 * 448 / (G/6))) and weight_scale_2 = G/2688. The decoded scale
  // e4m3 * ws2 equals the fake-quant scale up to its last bits, and the E2M1 codes agree.
  QuantSpec spec;
  spec.num_bits = NumBits::Float(2, 1);
  spec.block = BlockSpec{{{-1, 16}}, false, NumBits::Float(4, 3), false};
  int diffs = 0;
  for (uint32_t seed = 0; seed < 16; ++seed) {
    auto w = RandomTensor(4 * 64, 77 + seed, 0.1f + 0.37f * seed);
    const std::vector<int64_t> shape = {4, 64};
    PackInputs in;
    in.amax = ComputeAmax(spec, w, shape);
    in.nvfp4_static = true;
    const auto dec = UnpackWeight(PackWeight(PackFormat::kNvfp4, w, shape, in));
    std::vector<float> qdq(w.size());
    FakeQuant(spec, w, shape, in.amax, qdq);
    for (size_t i = 0; i < w.size(); ++i) {
      if (SameBits(dec[i], qdq[i])) continue;
      ++diffs;
      EXPECT_NEAR(dec[i], qdq[i], std::fabs(qdq[i]) * 0x1p-20f) << seed << " " << i;
    }
  }
  EXPECT_GT(diffs, 0);  // the formulas really do round differently for some global amax
}

TEST(ExportDiffers, Nvfp4ZeroGlobalAmaxIsSanitized) {
  // ModelOpt divides by weight_scale_2 = 0/2688 for an all-zero weight and writes NaN scales; qforge
  // applies export_amax (0 -> maxbound 6) first, so the export is finite and decodes to zeros.
  const PackedWeight p = PackWeight(PackFormat::kNvfp4, std::vector<float>(16, 0.0f), std::vector<int64_t>{1, 16});
  EXPECT_EQ(*p.weight_scale_2, 6.0f / 2688.0f);
  EXPECT_EQ(p.scale_bytes[0], EncodeE4M3(1.0f));
  for (float v : UnpackWeight(p)) EXPECT_EQ(Bits(v), Bits(0.0f));
}

}  // namespace
}  // namespace qforge
