// Text helpers for the tokenizer: UTF-8 validation and iteration, the GPT-2 byte-to-unicode map, and a
// PCRE2 regex (UTF + UCP, JIT when available) with HF tokenizers' find-all semantics.
//
// Internal to qforge/model (the tokenizer's implementation); PCRE2 itself stays out of this header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace qforge::tok {

// Byte offset of the first byte that does not begin a well-formed UTF-8 sequence (overlongs, surrogates
// and code points above U+10FFFF are ill-formed), or npos when `text` is valid UTF-8.
size_t FindInvalidUtf8(std::string_view text);

// Length in bytes of the UTF-8 sequence that starts with `lead` (1 for a stray continuation byte, so
// iteration over arbitrary bytes always advances). Callers iterate validated text.
inline size_t Utf8SeqLen(unsigned char lead) {
  if (lead < 0x80) return 1;
  if ((lead >> 5) == 0x6) return 2;
  if ((lead >> 4) == 0xE) return 3;
  if ((lead >> 3) == 0x1E) return 4;
  return 1;
}

// Decodes the code point at `text[pos]` (text must be valid UTF-8 there).
char32_t DecodeUtf8At(std::string_view text, size_t pos);

// Appends the UTF-8 encoding of `cp` to `out`.
void AppendUtf8(char32_t cp, std::string& out);

// Rust's String::from_utf8_lossy: each maximal ill-formed subpart becomes U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// char::is_whitespace (the Unicode White_Space property).
bool IsUnicodeWhitespace(char32_t cp);

// GPT-2's reversible byte <-> printable-unicode map used by ByteLevel pre-tokenizer and decoder:
// printable Latin-1 bytes map to themselves, the other 68 to U+0100.. in byte order.
struct ByteLevelMap {
  std::string byte_to_utf8[256];  // UTF-8 of the code point each byte maps to
  // code point -> byte, or -1 for code points outside the map (only U+0000..U+0143 can be mapped)
  int16_t cp_to_byte[0x144];
  static const ByteLevelMap& Get();
};

// A compiled PCRE2 pattern (8-bit, PCRE2_UTF | PCRE2_UCP; PCRE2_LITERAL for literal strings). Patterns are
// written for HF tokenizers' Oniguruma: \w / \W are rewritten to Oniguruma's Unicode classes first.
// Thread-safe for matching: match data and JIT stacks are per call / per thread.
class Regex {
 public:
  // Throws qforge::Error naming `where` (file and JSON path) and PCRE2's message on a bad pattern.
  static std::shared_ptr<const Regex> Compile(std::string_view pattern, bool literal, std::string_view where);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls fn(begin, end) (byte offsets) for every non-overlapping match in `text`, left to right, as
  // Rust's find_iter does: after an empty match the search resumes one character later. `text` must be
  // valid UTF-8 (not re-checked).
  void ForEachMatch(std::string_view text, const std::function<void(size_t, size_t)>& fn) const;

  // Whether the pattern matches at exactly `pos` (anchored there).
  bool MatchesAt(std::string_view text, size_t pos) const;

  const std::string& pattern() const { return pattern_; }

 private:
  Regex() = default;
  std::string pattern_;
  void* code_ = nullptr;  // pcre2_code_8*
  bool jit_ = false;
};

}  // namespace qforge::tok
