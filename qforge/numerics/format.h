// Element formats: one constexpr traits table drives names, ExMy parsing, sizes, codecs and tests.
//
// Every per-format fact lives in a row of kFormatTable (house style rule 2); VisitFormat is the only
// switch over Format (rule 6). Float rows cite their bit layout in numerics/layout.h; integer rows are
// two's complement (INT4 codes use the low nibble). Format names are identifiers that may reach disk:
// append rows, never rename or renumber them (rule 4).
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <type_traits>
#include <utility>

#include "qforge/base/error.h"
#include "qforge/numerics/layout.h"

namespace qforge {

enum class Format : uint8_t {
  kE4M3 = 0,  // FP8 E4M3 "fn"      (4,3)
  kE5M2 = 1,  // FP8 E5M2           (5,2)
  kE2M1 = 2,  // FP4 E2M1           (2,1)  NVFP4 / MXFP4 elements
  kE3M2 = 3,  // FP6 E3M2           (3,2)  MXFP6
  kE2M3 = 4,  // FP6 E2M3           (2,3)  MXFP6
  kE8M0 = 5,  // E8M0 power of two  (8,0)  MX block scales
  kInt8 = 6,  // signed 8-bit integer      INT8 / MXINT8 elements
  kInt4 = 7,  // signed 4-bit integer      INT4 (AWQ) elements
};
inline constexpr int kNumFormats = 8;

enum class FormatKind : uint8_t { kFloat, kScale, kInt };

// Reference codec signatures. Encode: fp32 -> code (RNE, saturating: the fake-quant convention; see
// layout.h for the non-saturating PyTorch variant). Decode: code -> exact fp32.
using EncodeFn = uint32_t (*)(float);
using DecodeFn = float (*)(uint32_t);

struct FormatTraits {
  Format format;
  std::string_view name;  // "e4m3", "e2m1", "int8", ...
  FormatKind kind;
  int bits;               // storage bits of one code
  int exponent_bits;      // floats: E of ExMy (0 for ints)
  int mantissa_bits;      // floats: M of ExMy (0 for ints)
  int bias;               // floats: exponent bias
  float max_finite;       // largest finite magnitude (448, 57344, 6, 28, 7.5, 2^127, 127, 7)
  float min_value;        // most negative finite value (-max for floats, -128 / -8 for ints, 2^-127 E8M0)
  bool has_inf;
  bool has_nan;
  bool has_negative_zero;
  EncodeFn encode;
  DecodeFn decode;
};

namespace format_detail {
inline uint32_t EncE4M3(float x) { return EncodeE4M3(x, Overflow::kSaturate); }
inline float DecE4M3(uint32_t c) { return DecodeE4M3(static_cast<uint8_t>(c)); }
inline uint32_t EncE5M2(float x) { return EncodeE5M2(x, Overflow::kSaturate); }
inline float DecE5M2(uint32_t c) { return DecodeE5M2(static_cast<uint8_t>(c)); }
inline uint32_t EncE2M1(float x) { return EncodeE2M1(x); }
inline float DecE2M1(uint32_t c) { return DecodeE2M1(static_cast<uint8_t>(c)); }
inline uint32_t EncE3M2(float x) { return EncodeE3M2(x); }
inline float DecE3M2(uint32_t c) { return DecodeE3M2(static_cast<uint8_t>(c)); }
inline uint32_t EncE2M3(float x) { return EncodeE2M3(x); }
inline float DecE2M3(uint32_t c) { return DecodeE2M3(static_cast<uint8_t>(c)); }
inline uint32_t EncE8M0(float x) { return EncodeE8M0Ceil(x); }
inline float DecE8M0(uint32_t c) { return DecodeE8M0(static_cast<uint8_t>(c)); }
// Integers: RNE to the nearest integer, saturated to [min, max]; NaN encodes to 0.
template <int kMin, int kMax, uint32_t kMask>
uint32_t EncInt(float x) {
  if (x != x) return 0;
  float r = x >= static_cast<float>(kMax) ? static_cast<float>(kMax)
          : x <= static_cast<float>(kMin) ? static_cast<float>(kMin)
                                          : x;
  // RNE via the 1.5*2^23 trick (|r| <= 128, so exact).
  const float magic = 12582912.0f;
  r = (r + magic) - magic;
  return static_cast<uint32_t>(static_cast<int32_t>(r)) & kMask;
}
template <int kBits>
float DecInt(uint32_t c) {
  const int32_t v = static_cast<int32_t>(c << (32 - kBits)) >> (32 - kBits);
  return static_cast<float>(v);
}
}  // namespace format_detail

inline constexpr FormatTraits kFormatTable[kNumFormats] = {
    {Format::kE4M3, "e4m3", FormatKind::kFloat, 8, 4, 3, 7, 448.0f, -448.0f, false, true, true,
     format_detail::EncE4M3, format_detail::DecE4M3},
    {Format::kE5M2, "e5m2", FormatKind::kFloat, 8, 5, 2, 15, 57344.0f, -57344.0f, true, true, true,
     format_detail::EncE5M2, format_detail::DecE5M2},
    {Format::kE2M1, "e2m1", FormatKind::kFloat, 4, 2, 1, 1, 6.0f, -6.0f, false, false, true,
     format_detail::EncE2M1, format_detail::DecE2M1},
    {Format::kE3M2, "e3m2", FormatKind::kFloat, 6, 3, 2, 3, 28.0f, -28.0f, false, false, true,
     format_detail::EncE3M2, format_detail::DecE3M2},
    {Format::kE2M3, "e2m3", FormatKind::kFloat, 6, 2, 3, 1, 7.5f, -7.5f, false, false, true,
     format_detail::EncE2M3, format_detail::DecE2M3},
    {Format::kE8M0, "e8m0", FormatKind::kScale, 8, 8, 0, 127, 1.7014118346046923e38f, 5.877471754111438e-39f,
     false, true, false, format_detail::EncE8M0, format_detail::DecE8M0},
    {Format::kInt8, "int8", FormatKind::kInt, 8, 0, 0, 0, 127.0f, -128.0f, false, false, false,
     format_detail::EncInt<-128, 127, 0xFFu>, format_detail::DecInt<8>},
    {Format::kInt4, "int4", FormatKind::kInt, 4, 0, 0, 0, 7.0f, -8.0f, false, false, false,
     format_detail::EncInt<-8, 7, 0xFu>, format_detail::DecInt<4>},
};

constexpr const FormatTraits& GetTraits(Format f) { return kFormatTable[static_cast<int>(f)]; }
static_assert([] {
  for (int i = 0; i < kNumFormats; ++i)
    if (static_cast<int>(kFormatTable[i].format) != i) return false;
  return true;
}(), "kFormatTable rows must be in Format order");

// The only switch over Format: calls fn(std::integral_constant<Format, F>{}) so kernels can be
// `template <Format F>` (house style rule 6).
template <typename Fn>
decltype(auto) VisitFormat(Format f, Fn&& fn) {
  switch (f) {
    case Format::kE4M3: return fn(std::integral_constant<Format, Format::kE4M3>{});
    case Format::kE5M2: return fn(std::integral_constant<Format, Format::kE5M2>{});
    case Format::kE2M1: return fn(std::integral_constant<Format, Format::kE2M1>{});
    case Format::kE3M2: return fn(std::integral_constant<Format, Format::kE3M2>{});
    case Format::kE2M3: return fn(std::integral_constant<Format, Format::kE2M3>{});
    case Format::kE8M0: return fn(std::integral_constant<Format, Format::kE8M0>{});
    case Format::kInt8: return fn(std::integral_constant<Format, Format::kInt8>{});
    case Format::kInt4: return fn(std::integral_constant<Format, Format::kInt4>{});
  }
  QF_ASSERT(false, "bad Format {}", static_cast<int>(f));
  return fn(std::integral_constant<Format, Format::kE4M3>{});
}

// Layout parameters of a float element format (E4M3, E5M2, E2M1, E3M2, E2M3); QF_ASSERT otherwise.
const MinifloatParams& MinifloatParamsOf(Format f);

// "e4m3" / "E4M3" -> (4, 3); nullopt if the text is not ^[Ee](\d+)[Mm](\d+)$.
std::optional<std::pair<int, int>> ParseExMy(std::string_view text);
// (E, M) -> the float/scale format with those bits (table lookup); nullopt if none.
std::optional<Format> FormatFromExMy(int exponent_bits, int mantissa_bits);
// Name -> format ("e4m3", "int8", case-insensitive); nullopt if unknown.
std::optional<Format> FormatFromName(std::string_view name);
// Comma-separated list of all format names, for help texts and errors.
std::string_view AllFormatNames();

}  // namespace qforge
