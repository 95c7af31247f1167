// Format table lookups: ExMy parsing and names.
#include "qforge/numerics/format.h"

#include <cctype>
#include <string>

namespace qforge {

const MinifloatParams& MinifloatParamsOf(Format f) {
  switch (f) {
    case Format::kE4M3: return kE4M3Params;
    case Format::kE5M2: return kE5M2Params;
    case Format::kE2M1: return kE2M1Params;
    case Format::kE3M2: return kE3M2Params;
    case Format::kE2M3: return kE2M3Params;
    default: break;
  }
  QF_ASSERT(false, "format {} is not a sign/exponent/mantissa minifloat", GetTraits(f).name);
  return kE4M3Params;
}

std::optional<std::pair<int, int>> ParseExMy(std::string_view text) {
  auto digits = [](std::string_view s, size_t& i) -> std::optional<int> {
    const size_t start = i;
    int v = 0;
    while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      if (i - start >= 4) return std::nullopt;
      v = v * 10 + (s[i] - '0');
      ++i;
    }
    if (i == start) return std::nullopt;
    return v;
  };
  if (text.size() < 4 || (text[0] != 'e' && text[0] != 'E')) return std::nullopt;
  size_t i = 1;
  auto e = digits(text, i);
  if (!e || i >= text.size() || (text[i] != 'm' && text[i] != 'M')) return std::nullopt;
  ++i;
  auto m = digits(text, i);
  if (!m || i != text.size()) return std::nullopt;
  return std::make_pair(*e, *m);
}

std::optional<Format> FormatFromExMy(int exponent_bits, int mantissa_bits) {
  for (const FormatTraits& t : kFormatTable) {
    if (t.kind != FormatKind::kInt && t.exponent_bits == exponent_bits && t.mantissa_bits == mantissa_bits)
      return t.format;
  }
  return std::nullopt;
}

std::optional<Format> FormatFromName(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const FormatTraits& t : kFormatTable)
    if (t.name == lower) return t.format;
  return std::nullopt;
}

std::string_view AllFormatNames() {
  static const std::string names = [] {
    std::string s;
    for (const FormatTraits& t : kFormatTable) {
      if (!s.empty()) s += ", ";
      s += t.name;
    }
    return s;
  }();
  return names;
}

}  // namespace qforge
