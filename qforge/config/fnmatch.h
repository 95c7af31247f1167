// Shell-style glob matching with Python `fnmatch.fnmatchcase` semantics (POSIX: case-sensitive).
//
// `*` matches any run of characters including '.', `?` one character, `[seq]` one character in seq
// (ranges a-z allowed), `[!seq]` one character not in seq; a `[` without a closing `]` is literal;
// `]` right after `[` or `[!` is part of the set. `**` behaves like `*`. There is no brace expansion.
#pragma once

#include <string_view>

namespace qforge::config {

// True iff the whole `name` matches `pattern`.
bool FnMatch(std::string_view name, std::string_view pattern);

}  // namespace qforge::config
