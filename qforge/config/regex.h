// Regular expressions with Python `re` semantics for config patterns (PCRE2 is confined to config/).
//
// Shared-state patterns (spec §8) are applied with `re.fullmatch`; Regex compiles the pattern once,
// reports an invalid pattern as qforge::Error naming it, and offers FullMatch (anchored at both ends)
// returning the capture groups.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace qforge::config {

class Regex {
 public:
  // Compiles `pattern`; throws Error("invalid regex '<pattern>' ...: <reason> at offset N") on failure.
  explicit Regex(std::string pattern);
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  const std::string& pattern() const { return pattern_; }

  // Like Python re.fullmatch: nullopt if no match; else the capture groups 1..N, each nullopt when the
  // group did not participate (Python's None).
  std::optional<std::vector<std::optional<std::string>>> FullMatch(std::string_view subject) const;

  // Replaces every (non-overlapping) match with `replacement` ($1 refers to group 1).
  std::string ReplaceAll(std::string_view subject, std::string_view replacement) const;

  // Why `pattern` does not compile, or "" if it does.
  static std::string CompileError(const std::string& pattern);

 private:
  struct Impl;
  std::string pattern_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace qforge::config
