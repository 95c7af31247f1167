// nvfp4_act_headroom's histogram against values worked out by hand from the formulas of spec §6.5 (bin
// index, percentile bin centres, the anchor floor, the rho / upper choice).
#include "qforge/numerics/act_headroom.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace qforge {
namespace {

// The centre of bin b: -40 + (b + 0.5) / 512 * 80, as a value.
double Centre(int b) { return std::pow(2.0, -40.0 + (b + 0.5) / 512.0 * 80.0); }

TEST(BlockAmaxHistogram, BinsAreFp32Log2Steps) {
  EXPECT_EQ(BlockAmaxHistogram::Bin(1.f), 256);                     // log2 0 -> 0.5 of the range
  EXPECT_EQ(BlockAmaxHistogram::Bin(std::ldexp(1.f, -40)), 0);      // the low edge
  EXPECT_EQ(BlockAmaxHistogram::Bin(std::ldexp(1.f, -60)), 0);      // clamped
  EXPECT_EQ(BlockAmaxHistogram::Bin(std::ldexp(1.f, 40)), 511);     // the high edge, clamped
  EXPECT_EQ(BlockAmaxHistogram::Bin(1024.f), 320);                  // log2 10: (50 / 80) * 512
  EXPECT_EQ(BlockAmaxHistogram::Bin(std::exp2(0.15625f)), 257);     // one bin width (80 / 512) above 1
  EXPECT_EQ(BlockAmaxHistogram::Bin(std::exp2(-0.001f)), 255);     // below a bin edge
  // One ulp below 1: log2 is -8.6e-8, and -8.6e-8 + 40 rounds to 40 in fp32 (as in torch): bin 256.
  EXPECT_EQ(BlockAmaxHistogram::Bin(std::nextafter(1.f, 0.f)), 256);
}

TEST(BlockAmaxHistogram, AnchorTimesRhoWhenItClearsTheUpperPercentile) {
  BlockAmaxHistogram h;
  std::vector<float> v(1000, 1.f);
  v.insert(v.end(), 10, 1024.f);
  v.insert(v.end(), 5, 0.f);  // zeros: no count
  h.Add(v);
  EXPECT_EQ(h.counts()[256], 1000);
  EXPECT_EQ(h.counts()[320], 10);
  EXPECT_EQ(h.running_max(), 1024.f);
  // 1% of 1010 = 10.1 -> bin 256; 99.99% = 1009.899 -> bin 320.
  ASSERT_TRUE(h.Percentile(1.0).has_value());
  EXPECT_DOUBLE_EQ(*h.Percentile(1.0), Centre(256));
  EXPECT_DOUBLE_EQ(*h.Percentile(99.99), Centre(320));
  const auto r = h.Compute({});
  ASSERT_TRUE(r.has_value());
  EXPECT_FALSE(r->no_headroom);
  EXPECT_FALSE(r->fell_back);
  EXPECT_EQ(r->amax, static_cast<float>(16384.0 * Centre(256)));
  // A small rho leaves no headroom: the upper percentile's centre.
  const auto low = h.Compute({1.0, 99.99, 100.0});
  ASSERT_TRUE(low.has_value());
  EXPECT_TRUE(low->no_headroom);
  EXPECT_EQ(low->amax, static_cast<float>(Centre(320)));
  // upper_percentile 100: the running max itself.
  const auto top = h.Compute({1.0, 100.0, 100.0});
  ASSERT_TRUE(top.has_value());
  EXPECT_EQ(top->amax, 1024.f);
}

TEST(BlockAmaxHistogram, BlocksFarBelowTheUpperValueDoNotAnchor) {
  BlockAmaxHistogram h;
  std::vector<float> v(500, std::ldexp(1.f, -30));  // below upper / 1e6
  v.insert(v.end(), 1000, 1.f);
  v.insert(v.end(), 10, 1024.f);
  h.Add(v);
  const double upper = Centre(BlockAmaxHistogram::Bin(1024.f));
  // Without the floor the 1% anchor would be the 2^-30 bin; with it, 1% of the 1010 blocks left.
  EXPECT_DOUBLE_EQ(*h.Percentile(1.0), Centre(BlockAmaxHistogram::Bin(std::ldexp(1.f, -30))));
  EXPECT_DOUBLE_EQ(*h.Percentile(1.0, upper / 1e6), Centre(256));
  // upper is the 99.99th percentile of all 1510 counts: target 1509.849 -> the 1024 bin.
  const auto r = h.Compute({});
  ASSERT_TRUE(r.has_value());
  EXPECT_DOUBLE_EQ(r->upper, upper);
  EXPECT_DOUBLE_EQ(r->anchor, Centre(256));
}

TEST(BlockAmaxHistogram, RowsMakeSixteenWideBlocksAndARaggedTail) {
  // cols 20: blocks [0, 16) and [16, 20) per row.
  std::vector<float> x(2 * 20, 0.f);
  x[3] = -2.f;       // row 0, block 0
  x[17] = 8.f;       // row 0, block 1 (the tail)
  x[20 + 5] = 0.5f;  // row 1, block 0; row 1's tail is all zeros
  BlockAmaxHistogram h;
  h.AddRows(x.data(), 2, 20);
  EXPECT_EQ(h.running_max(), 8.f);
  EXPECT_EQ(h.counts()[BlockAmaxHistogram::Bin(2.f)], 1);
  EXPECT_EQ(h.counts()[BlockAmaxHistogram::Bin(8.f)], 1);
  EXPECT_EQ(h.counts()[BlockAmaxHistogram::Bin(0.5f)], 1);
  int64_t total = 0;
  for (int64_t c : h.counts()) total += c;
  EXPECT_EQ(total, 3);  // the zero block counts for the running max only
  BlockAmaxHistogram twice;
  twice.Merge(h);
  twice.Merge(h);
  EXPECT_EQ(twice.counts()[BlockAmaxHistogram::Bin(8.f)], 2);
  EXPECT_EQ(twice.running_max(), 8.f);
}

TEST(BlockAmaxHistogram, AllZeroOrNothingHasNoResult) {
  BlockAmaxHistogram h;
  EXPECT_FALSE(h.Compute({}).has_value());
  h.Add(std::vector<float>(4, 0.f));
  EXPECT_FALSE(h.Compute({}).has_value());
  EXPECT_EQ(h.running_max(), 0.f);
}

}  // namespace
}  // namespace qforge
