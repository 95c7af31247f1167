// Python fnmatch semantics, implemented as a backtracking matcher over the pattern (no regex).
#include "qforge/config/fnmatch.h"

#include <cstddef>

namespace qforge::config {
namespace {

// Tries to match a bracket set starting at pattern[p] == '['. On success returns true and sets *end to
// the index after ']' and *matched to whether `c` is in the set. Returns false if the set is unterminated
// (then '[' is a literal character, as in Python).
bool MatchSet(std::string_view pattern, size_t p, char c, size_t* end, bool* matched) {
  size_t i = p + 1;
  bool negate = false;
  if (i < pattern.size() && pattern[i] == '!') {
    negate = true;
    ++i;
  }
  size_t first = i;
  // ']' directly after '[' or '[!' is a member, not the terminator.
  if (i < pattern.size() && pattern[i] == ']') ++i;
  while (i < pattern.size() && pattern[i] != ']') ++i;
  if (i >= pattern.size()) return false;
  bool in = false;
  for (size_t k = first; k < i; ++k) {
    if (k + 2 < i && pattern[k + 1] == '-') {
      if (pattern[k] <= c && c <= pattern[k + 2]) in = true;
      k += 2;
    } else if (pattern[k] == c) {
      in = true;
    }
  }
  *end = i + 1;
  *matched = negate ? !in : in;
  return true;
}

}  // namespace

bool FnMatch(std::string_view name, std::string_view pattern) {
  size_t n = 0, p = 0;
  size_t star_p = std::string_view::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pattern.size()) {
      char pc = pattern[p];
      if (pc == '*') {
        while (p < pattern.size() && pattern[p] == '*') ++p;
        star_p = p;
        star_n = n;
        continue;
      }
      if (pc == '?') {
        ++p;
        ++n;
        continue;
      }
      if (pc == '[') {
        size_t end;
        bool matched;
        if (MatchSet(pattern, p, name[n], &end, &matched)) {
          if (matched) {
            p = end;
            ++n;
            continue;
          }
        } else if (name[n] == '[') {
          ++p;
          ++n;
          continue;
        }
      } else if (pc == name[n]) {
        ++p;
        ++n;
        continue;
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace qforge::config
