// Tests of the format traits table: names, ExMy parsing, VisitFormat and every code of every row.
#include "qforge/numerics/format.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

namespace qforge {
namespace {

TEST(Format, TableRowsAreConsistent) {
  std::set<std::string_view> names;
  for (const FormatTraits& t : kFormatTable) {
    EXPECT_TRUE(names.insert(t.name).second) << t.name;
    EXPECT_EQ(FormatFromName(t.name), t.format);
    // Every code round-trips (NaN codes excepted), and max_finite/min_value are attained.
    float max_seen = 0, min_seen = 0;
    for (uint32_t c = 0; c < (1u << t.bits); ++c) {
      const float v = t.decode(c);
      if (std::isnan(v) || std::isinf(v)) {
        EXPECT_TRUE(t.has_nan || t.has_inf) << t.name << " code " << c;
        continue;
      }
      max_seen = std::max(max_seen, v);
      min_seen = std::min(min_seen, v);
      EXPECT_EQ(t.encode(v), c) << t.name << " code " << c << " value " << v;
    }
    EXPECT_EQ(max_seen, t.max_finite) << t.name;
    if (t.kind != FormatKind::kScale) {
      EXPECT_EQ(min_seen, t.min_value) << t.name;
    }
    // Saturating encode of huge values gives the extremes.
    EXPECT_EQ(t.decode(t.encode(1e38f)), t.max_finite) << t.name;
    if (t.kind != FormatKind::kScale) {
      EXPECT_EQ(t.decode(t.encode(-1e38f)), t.min_value) << t.name;
    }
  }
}

TEST(Format, ExMyParsing) {
  EXPECT_EQ(ParseExMy("e4m3"), std::make_pair(4, 3));
  EXPECT_EQ(ParseExMy("E2M1"), std::make_pair(2, 1));
  EXPECT_EQ(ParseExMy("e8m0"), std::make_pair(8, 0));
  EXPECT_FALSE(ParseExMy("e4"));
  EXPECT_FALSE(ParseExMy("e4m3x"));
  EXPECT_FALSE(ParseExMy("x4m3"));
  EXPECT_FALSE(ParseExMy("em3"));
  EXPECT_EQ(FormatFromExMy(4, 3), Format::kE4M3);
  EXPECT_EQ(FormatFromExMy(5, 2), Format::kE5M2);
  EXPECT_EQ(FormatFromExMy(2, 1), Format::kE2M1);
  EXPECT_EQ(FormatFromExMy(3, 2), Format::kE3M2);
  EXPECT_EQ(FormatFromExMy(2, 3), Format::kE2M3);
  EXPECT_EQ(FormatFromExMy(8, 0), Format::kE8M0);
  EXPECT_FALSE(FormatFromExMy(1, 2));
  // Every float row is reachable from its own ExMy name.
  for (const FormatTraits& t : kFormatTable) {
    if (t.kind == FormatKind::kInt) continue;
    auto em = ParseExMy(t.name);
    ASSERT_TRUE(em) << t.name;
    EXPECT_EQ(FormatFromExMy(em->first, em->second), t.format);
  }
  EXPECT_EQ(FormatFromName("E4M3"), Format::kE4M3);
  EXPECT_FALSE(FormatFromName("fp8"));
  EXPECT_NE(AllFormatNames().find("e2m1"), std::string_view::npos);
}

TEST(Format, VisitFormatDispatchesStatically) {
  for (const FormatTraits& t : kFormatTable) {
    const int bits = VisitFormat(t.format, [](auto f) { return GetTraits(decltype(f)::value).bits; });
    EXPECT_EQ(bits, t.bits);
  }
}

TEST(Format, IntegerCodesAreTwosComplementWithRne) {
  const FormatTraits& i4 = GetTraits(Format::kInt4);
  EXPECT_EQ(i4.encode(-8.0f), 0x8u);
  EXPECT_EQ(i4.encode(2.5f), 0x2u);   // tie to even
  EXPECT_EQ(i4.encode(3.5f), 0x4u);   // tie to even
  EXPECT_EQ(i4.encode(-2.5f), 0xEu);  // -2
  EXPECT_EQ(i4.encode(100.0f), 0x7u);
  const FormatTraits& i8 = GetTraits(Format::kInt8);
  EXPECT_EQ(i8.encode(-128.5f), 0x80u);
  EXPECT_EQ(i8.decode(0xFF), -1.0f);
  EXPECT_EQ(i8.encode(std::nanf("")), 0u);
}

}  // namespace
}  // namespace qforge
