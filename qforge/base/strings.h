// Small string helpers shared by every layer (joining, splitting, trimming, number parsing).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qforge {

std::vector<std::string> Split(std::string_view s, char sep);
std::string_view Trim(std::string_view s);
bool StartsWith(std::string_view s, std::string_view prefix);
bool EndsWith(std::string_view s, std::string_view suffix);
std::string ToLower(std::string_view s);

// Strict integer parse of the whole string (no trailing characters); nullopt on failure.
std::optional<int64_t> ParseInt(std::string_view s);

// Joins items with `sep`, calling fmt on each.
template <typename Range>
std::string Join(const Range& items, std::string_view sep) {
  std::string out;
  bool first = true;
  for (const auto& it : items) {
    if (!first) out += sep;
    first = false;
    out += it;
  }
  return out;
}

}  // namespace qforge
