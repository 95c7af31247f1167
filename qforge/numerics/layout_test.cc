// Exhaustive tests of the scalar codecs in layout.h: every code, every rounding boundary and tie.
#include "qforge/numerics/layout.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <limits>
#include <vector>

#include "qforge/numerics/format.h"

namespace qforge {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// Independent oracle: the value of a minifloat code computed in double from first principles.
double OracleValue(uint32_t code, int ebits, int mbits, int bias) {
  const uint32_t sign = (code >> (ebits + mbits)) & 1u;
  const uint32_t e = (code >> mbits) & ((1u << ebits) - 1u);
  const uint32_t m = code & ((1u << mbits) - 1u);
  double v = e == 0 ? std::ldexp(static_cast<double>(m) / (1 << mbits), 1 - bias)
                    : std::ldexp(1.0 + static_cast<double>(m) / (1 << mbits), static_cast<int>(e) - bias);
  return sign ? -v : v;
}

struct FloatCase {
  Format format;
  MinifloatParams params;
  int codes;
  double max_finite;
};

const FloatCase kCases[] = {
    {Format::kE4M3, kE4M3Params, 256, 448.0},  {Format::kE5M2, kE5M2Params, 256, 57344.0},
    {Format::kE3M2, kE3M2Params, 64, 28.0},    {Format::kE2M3, kE2M3Params, 64, 7.5},
    {Format::kE2M1, kE2M1Params, 16, 6.0},
};

bool IsSpecialCode(const FloatCase& c, uint32_t code) {
  const uint32_t mag = code & (static_cast<uint32_t>(c.codes / 2) - 1u);
  if (c.params.specials == Specials::kFnNan) return mag == static_cast<uint32_t>(c.codes / 2) - 1u;
  if (c.params.specials == Specials::kIeee) return (mag >> c.params.mantissa_bits) == (1u << c.params.exponent_bits) - 1u;
  return false;
}

TEST(Layout, EveryCodeDecodesToItsValueAndReencodes) {
  for (const FloatCase& c : kCases) {
    const FormatTraits& t = GetTraits(c.format);
    EXPECT_EQ(t.max_finite, static_cast<float>(c.max_finite)) << t.name;
    int finite = 0;
    for (uint32_t code = 0; code < static_cast<uint32_t>(c.codes); ++code) {
      const float v = t.decode(code);
      if (IsSpecialCode(c, code)) {
        const uint32_t mag = code & (static_cast<uint32_t>(c.codes / 2) - 1u);
        if (c.params.specials == Specials::kIeee && (mag & ((1u << c.params.mantissa_bits) - 1u)) == 0) {
          EXPECT_TRUE(std::isinf(v)) << t.name << " code " << code;
        } else {
          EXPECT_TRUE(std::isnan(v)) << t.name << " code " << code;
        }
        continue;
      }
      ++finite;
      const double want = OracleValue(code, c.params.exponent_bits, c.params.mantissa_bits, c.params.bias);
      EXPECT_EQ(static_cast<double>(v), want) << t.name << " code " << code;
      EXPECT_EQ(std::signbit(v), (code >> (c.params.exponent_bits + c.params.mantissa_bits)) != 0) << t.name;
      // Exact values re-encode to the same code, in both overflow modes.
      EXPECT_EQ(EncodeMinifloat(v, c.params, Overflow::kSaturate), code) << t.name << " value " << v;
      EXPECT_EQ(EncodeMinifloat(v, c.params, Overflow::kNonSat), code) << t.name << " value " << v;
      EXPECT_LE(std::fabs(v), t.max_finite);
    }
    // E4M3: 254 finite codes; E5M2: 248; FP6: 64; FP4: 16.
    const int want_finite = c.format == Format::kE4M3 ? 254 : c.format == Format::kE5M2 ? 248 : c.codes;
    EXPECT_EQ(finite, want_finite) << t.name;
  }
}

// All finite values of a format sorted ascending (non-negative only).
std::vector<std::pair<double, uint32_t>> PositiveGrid(const FloatCase& c) {
  std::vector<std::pair<double, uint32_t>> g;
  for (uint32_t code = 0; code < static_cast<uint32_t>(c.codes / 2); ++code) {
    if (IsSpecialCode(c, code)) continue;
    g.push_back({OracleValue(code, c.params.exponent_bits, c.params.mantissa_bits, c.params.bias), code});
  }
  return g;
}

TEST(Layout, EveryRoundingBoundaryAndTieIsRoundNearestEven) {
  for (const FloatCase& c : kCases) {
    const auto grid = PositiveGrid(c);
    for (size_t i = 0; i + 1 < grid.size(); ++i) {
      const double lo = grid[i].first, hi = grid[i + 1].first;
      const float mid = static_cast<float>((lo + hi) / 2);  // exact in fp32 for all these formats
      ASSERT_EQ(static_cast<double>(mid), (lo + hi) / 2);
      const uint32_t even = (grid[i].second & 1u) == 0 ? grid[i].second : grid[i + 1].second;
      for (float sign : {1.0f, -1.0f}) {
        const uint32_t sbit = sign < 0 ? (1u << (c.params.exponent_bits + c.params.mantissa_bits)) : 0u;
        EXPECT_EQ(EncodeMinifloat(sign * mid, c.params, Overflow::kSaturate), sbit | even)
            << GetTraits(c.format).name << " tie " << mid;
        EXPECT_EQ(EncodeMinifloat(sign * std::nextafter(mid, 0.0f), c.params, Overflow::kSaturate),
                  sbit | grid[i].second)
            << GetTraits(c.format).name << " below tie " << mid;
        EXPECT_EQ(EncodeMinifloat(sign * std::nextafter(mid, kInf), c.params, Overflow::kSaturate),
                  sbit | grid[i + 1].second)
            << GetTraits(c.format).name << " above tie " << mid;
      }
    }
  }
}

// Property test: random fp32 bit patterns (all exponents, both signs) encode to the nearest grid value,
// ties to the even code, found by brute force over the grid in double precision.
TEST(Layout, RandomFloatsEncodeToTheNearestGridValue) {
  std::mt19937 rng(1234);
  for (const FloatCase& c : kCases) {
    const auto grid = PositiveGrid(c);
    const double max_finite = grid.back().first;
    for (int trial = 0; trial < 20000; ++trial) {
      // Bias the exponent toward the format's range so most samples exercise real rounding.
      uint32_t bits = rng();
      if (trial % 4 != 0) {
        const int e = static_cast<int>(rng() % 40) - 30 + (c.format == Format::kE5M2 ? 0 : 10);
        bits = (bits & 0x807FFFFFu) | (static_cast<uint32_t>(std::clamp(e + 127, 1, 254)) << 23);
      }
      float x;
      std::memcpy(&x, &bits, 4);
      if (std::isnan(x)) continue;
      const double a = std::fabs(static_cast<double>(x));
      uint32_t want;
      if (a >= max_finite) {
        want = grid.back().second;
      } else {
        size_t i = 0;
        while (i + 1 < grid.size() && grid[i + 1].first <= a) ++i;
        if (i + 1 == grid.size() || a == grid[i].first) {
          want = grid[i].second;
        } else {
          const double lo = a - grid[i].first, hi = grid[i + 1].first - a;
          want = lo < hi ? grid[i].second : hi < lo ? grid[i + 1].second
                                                    : ((grid[i].second & 1u) == 0 ? grid[i].second : grid[i + 1].second);
        }
      }
      const uint32_t sbit = std::signbit(x) ? (1u << (c.params.exponent_bits + c.params.mantissa_bits)) : 0u;
      ASSERT_EQ(EncodeMinifloat(x, c.params, Overflow::kSaturate), sbit | want)
          << GetTraits(c.format).name << " x=" << x;
    }
  }
}

TEST(Layout, SaturationAndOverflow) {
  // E4M3: values above 448 saturate; PyTorch's cast keeps 464 (a tie to the even 448) and NaNs above it.
  EXPECT_EQ(EncodeE4M3(449.0f), 0x7E);
  EXPECT_EQ(EncodeE4M3(1e30f), 0x7E);
  EXPECT_EQ(EncodeE4M3(kInf), 0x7E);
  EXPECT_EQ(EncodeE4M3(-kInf), 0xFE);
  EXPECT_EQ(EncodeE4M3(464.0f, Overflow::kNonSat), 0x7E);
  EXPECT_EQ(EncodeE4M3(std::nextafter(464.0f, kInf), Overflow::kNonSat), 0x7F);
  EXPECT_EQ(EncodeE4M3(-480.0f, Overflow::kNonSat), 0xFF);
  EXPECT_EQ(EncodeE4M3(kInf, Overflow::kNonSat), 0x7F);
  // E5M2: overflow to inf in PyTorch mode; 61440 is the tie between 57344 and 65536 (odd -> inf).
  EXPECT_EQ(EncodeE5M2(61440.0f, Overflow::kNonSat), 0x7C);
  EXPECT_EQ(EncodeE5M2(std::nextafter(61440.0f, 0.0f), Overflow::kNonSat), 0x7B);
  EXPECT_EQ(EncodeE5M2(61440.0f, Overflow::kSaturate), 0x7B);
  EXPECT_EQ(EncodeE5M2(-kInf, Overflow::kNonSat), 0xFC);
  EXPECT_EQ(EncodeE5M2(-kInf, Overflow::kSaturate), 0xFB);
  // FP4/FP6 saturate always.
  EXPECT_EQ(EncodeE2M1(7.0f), 0x7);
  EXPECT_EQ(EncodeE2M1(-1e9f), 0xF);
  EXPECT_EQ(EncodeE3M2(1e9f), 0x1F);
  EXPECT_EQ(EncodeE2M3(-8.0f), 0x3F);
  EXPECT_EQ(DecodeE3M2(0x1F), 28.0f);
  EXPECT_EQ(DecodeE2M3(0x1F), 7.5f);
}

TEST(Layout, NanAndNegativeZero) {
  EXPECT_EQ(EncodeE4M3(kNaN), 0x7F);
  EXPECT_EQ(EncodeE4M3(-kNaN, Overflow::kNonSat), 0xFF);
  EXPECT_TRUE(std::isnan(DecodeE4M3(0x7F)));
  EXPECT_TRUE(std::isnan(DecodeE4M3(0xFF)));
  EXPECT_EQ(EncodeE5M2(kNaN), 0x7F);
  EXPECT_TRUE(std::isnan(DecodeE5M2(0x7D)));
  EXPECT_TRUE(std::isinf(DecodeE5M2(0xFC)));
  EXPECT_EQ(EncodeE2M1(kNaN), 0x7);  // no NaN in E2M1: ModelOpt's table converter gives +max
  for (auto enc : {+[](float x) { return uint32_t{EncodeE4M3(x)}; }, +[](float x) { return uint32_t{EncodeE5M2(x)}; }}) {
    EXPECT_EQ(enc(-0.0f), 0x80u);
    EXPECT_EQ(enc(0.0f), 0x00u);
  }
  EXPECT_EQ(EncodeE2M1(-0.0f), 0x8);
  EXPECT_EQ(EncodeE3M2(-0.0f), 0x20);
  EXPECT_TRUE(std::signbit(DecodeE2M1(0x8)));
  EXPECT_TRUE(std::signbit(DecodeE4M3(0x80)));
  // Tiny values round to (signed) zero; half the smallest subnormal is a tie to even = 0.
  EXPECT_EQ(EncodeE4M3(0x1p-10f), 0x00);
  EXPECT_EQ(EncodeE4M3(std::nextafter(0x1p-10f, 1.0f)), 0x01);
  EXPECT_EQ(EncodeE4M3(-1e-30f), 0x80);
  EXPECT_EQ(EncodeE4M3(1e-45f), 0x00);  // fp32 subnormal input
}

TEST(Layout, E8M0AllCodes) {
  for (int c = 0; c < 255; ++c) {
    const float v = DecodeE8M0(static_cast<uint8_t>(c));
    EXPECT_EQ(static_cast<double>(v), std::ldexp(1.0, c - 127)) << c;
    EXPECT_EQ(EncodeE8M0Ceil(v), c) << c;
    if (c < 254) {
      EXPECT_EQ(EncodeE8M0Ceil(std::nextafter(v, kInf)), c + 1) << c;  // ceil
    }
    if (c > 0 && c < 254) {
      EXPECT_EQ(EncodeE8M0Ceil(std::nextafter(v, 0.0f)), c) << c;
    }
  }
  EXPECT_TRUE(std::isnan(DecodeE8M0(0xFF)));
  EXPECT_EQ(EncodeE8M0Ceil(0.0f), 0xFF);
  EXPECT_EQ(EncodeE8M0Ceil(-1.0f), 0xFF);
  EXPECT_EQ(EncodeE8M0Ceil(kNaN), 0xFF);
  EXPECT_EQ(EncodeE8M0Ceil(1e-45f), 0);  // below 2^-127: clamped to the smallest code
}

TEST(Layout, CeilLog2ClampedMatchesExactCeil) {
  // Every exponent, with and without significand, plus subnormals.
  for (int e = -149; e <= 127; ++e) {
    const float p = Pow2(e);
    const int exact = std::max(-127, std::min(127, e));
    EXPECT_EQ(CeilLog2Clamped(p), exact) << e;
    const float above = std::nextafter(p, kInf);
    if (e < 127 && std::isfinite(above)) {
      const int want = e == 126 ? 127 : std::max(-127, std::min(127, e + 1));
      EXPECT_EQ(CeilLog2Clamped(above), want) << e;
    }
  }
  EXPECT_EQ(CeilLog2Clamped(0.0f), -127);
  EXPECT_EQ(CeilLog2Clamped(std::numeric_limits<float>::max()), 127);  // kernel's upper clamp
  EXPECT_EQ(CeilLog2Clamped(std::nextafter(0x1p-127f, 1.0f)), -126);
}

TEST(Layout, E2M1RoundingChainsAgreeWithRneExceptTies) {
  // Sweep every fp32 in [0, 8) at a fine grid plus the boundaries and their neighbours.
  const float bounds[] = {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f};
  std::vector<float> probe;
  for (float b : bounds) {
    probe.push_back(b);
    probe.push_back(std::nextafter(b, 0.0f));
    probe.push_back(std::nextafter(b, kInf));
  }
  for (int i = 0; i < 8 * 1024; ++i) probe.push_back(static_cast<float>(i) / 1024.0f);
  for (float v : probe) {
    const uint32_t rne = EncodeE2M1(v) & 7u;
    EXPECT_EQ(E2M1RoundIndexChain(v), rne) << v;
    bool is_tie = false;
    for (float b : bounds) is_tie |= v == b;
    const uint32_t down = E2M1RoundIndexTiesDown(v);
    if (is_tie) {
      EXPECT_EQ(E2M1Magnitude(down), E2M1Magnitude(E2M1RoundIndexChain(std::nextafter(v, 0.0f)))) << v;
    } else {
      EXPECT_EQ(down, rne) << v;
    }
    EXPECT_EQ(E2M1Magnitude(rne), DecodeE2M1(static_cast<uint8_t>(rne))) << v;
  }
  EXPECT_EQ(E2M1RoundIndexChain(kNaN), 7u);  // Triton's comparison chain sends NaN to 6.0
}

TEST(Layout, Pow2) {
  for (int k = -149; k <= 127; ++k) EXPECT_EQ(static_cast<double>(Pow2(k)), std::ldexp(1.0, k)) << k;
  EXPECT_EQ(Pow2(-150), 0.0f);
  EXPECT_TRUE(std::isinf(Pow2(128)));
}

// BF16/FP16 (numerics/half.h) exhaustively against double-precision oracles.
TEST(Layout, Bf16AndF16AllCodes) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float b = Bf16ToF32(static_cast<uint16_t>(h));
    if (!std::isnan(b)) {
      EXPECT_EQ(F32ToBf16Rne(b), h);
    }
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16Rne(f))));
      continue;
    }
    const uint32_t e = (h >> 10) & 0x1F, m = h & 0x3FF;
    double want = e == 0 ? std::ldexp(m, -24) : e == 31 ? INFINITY : std::ldexp(1024 + m, static_cast<int>(e) - 25);
    if (h & 0x8000) want = -want;
    EXPECT_EQ(static_cast<double>(f), want) << h;
    EXPECT_EQ(F32ToF16Rne(f), h) << h;
    // Ties between consecutive positive halfs round to even.
    if (!(h & 0x8000) && e < 30) {
      const float next = F16ToF32(static_cast<uint16_t>(h + 1));
      const double mid = (static_cast<double>(f) + next) / 2;
      const uint16_t even = (h & 1) ? static_cast<uint16_t>(h + 1) : static_cast<uint16_t>(h);
      EXPECT_EQ(F32ToF16Rne(static_cast<float>(mid)), even) << h;
    }
  }
  EXPECT_EQ(F32ToF16Rne(65520.0f), 0x7C00);
  EXPECT_EQ(F32ToF16Rne(std::nextafter(65520.0f, 0.0f)), 0x7BFF);
  EXPECT_EQ(F32ToBf16Rne(1.0f + 0x1p-8f), 0x3F80);   // tie to even
  EXPECT_EQ(F32ToBf16Rne(1.0f + 0x3p-8f), 0x3F82);   // tie to even (up)
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16Rne(kNaN))));
}

}  // namespace
}  // namespace qforge
