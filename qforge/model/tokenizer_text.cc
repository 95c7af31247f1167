// UTF-8 helpers, the GPT-2 byte map and the PCRE2 wrapper used by the tokenizer.
#include "qforge/model/tokenizer_text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstring>

#include "qforge/base/error.h"
#include "qforge/base/utf8.h"

namespace qforge::tok {

size_t FindInvalidUtf8(std::string_view text) { return qforge::FindInvalidUtf8(text); }

char32_t DecodeUtf8At(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data()) + pos;
  const size_t len = Utf8SeqLen(s[0]);
  if (len == 1) return s[0];
  char32_t cp = s[0] & (0x7F >> len);
  for (size_t k = 1; k < len; ++k) cp = (cp << 6) | (s[k] & 0x3F);
  return cp;
}

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string Utf8Lossy(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  size_t i = 0;
  while (i < bytes.size()) {
    const size_t bad = FindInvalidUtf8(bytes.substr(i));
    if (bad == std::string_view::npos) {
      out.append(bytes.substr(i));
      break;
    }
    out.append(bytes.substr(i, bad));
    i += bad;
    // Length of the maximal subpart: the longest prefix of a well-formed sequence (at least one byte).
    const auto* s = reinterpret_cast<const unsigned char*>(bytes.data());
    const unsigned char c = s[i];
    size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;
      if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;
    }
    size_t skip = 1;
    if (len > 0 && i + 1 < bytes.size() && s[i + 1] >= lo && s[i + 1] <= hi) {
      skip = 2;
      while (skip < len && i + skip < bytes.size() && (s[i + skip] & 0xC0) == 0x80) ++skip;
    }
    out.append("\xEF\xBF\xBD");
    i += skip;
  }
  return out;
}

bool IsUnicodeWhitespace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

const ByteLevelMap& ByteLevelMap::Get() {
  static const ByteLevelMap map = [] {
    ByteLevelMap m;
    std::memset(m.cp_to_byte, 0xFF, sizeof(m.cp_to_byte));  // -1
    auto printable = [](int b) {
      return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    };
    int next = 0;
    for (int b = 0; b < 256; ++b) {
      const char32_t cp = printable(b) ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
      AppendUtf8(cp, m.byte_to_utf8[b]);
      m.cp_to_byte[cp] = static_cast<int16_t>(b);
    }
    return m;
  }();
  return map;
}

namespace {

pcre2_code_8* Code(void* p) { return static_cast<pcre2_code_8*>(p); }

// One JIT stack per thread, grown up to 4 MiB, so long runs (e.g. `\s+(?!\S)` over pages of blanks)
// cannot hit the 32 KiB default.
struct JitContext {
  pcre2_match_context_8* ctx = nullptr;
  pcre2_jit_stack_8* stack = nullptr;
  JitContext() {
    ctx = pcre2_match_context_create_8(nullptr);
    stack = pcre2_jit_stack_create_8(32 * 1024, 4 * 1024 * 1024, nullptr);
    pcre2_jit_stack_assign_8(ctx, nullptr, stack);
  }
  ~JitContext() {
    pcre2_jit_stack_free_8(stack);
    pcre2_match_context_free_8(ctx);
  }
};

pcre2_match_context_8* ThreadMatchContext() {
  thread_local JitContext jc;
  return jc.ctx;
}

struct MatchData {
  pcre2_match_data_8* md;
  explicit MatchData(const pcre2_code_8* code) : md(pcre2_match_data_create_from_pattern_8(code, nullptr)) {
    QF_ASSERT(md != nullptr, "pcre2_match_data_create failed");
  }
  ~MatchData() { pcre2_match_data_free_8(md); }
};

std::string PcreMessage(int code) {
  PCRE2_UCHAR8 buf[256];
  pcre2_get_error_message_8(code, buf, sizeof(buf));
  return reinterpret_cast<const char*>(buf);
}

}  // namespace

namespace {

// Oniguruma's (HF tokenizers') Unicode \w, measured against tokenizers 0.23: Alphabetic, marks, decimal
// digits and connector punctuation; outside a bracket class also the Latin-1 numbers ¹ ² ³ ¼ ½ ¾.
// PCRE2 10.42's UCP \w is only \p{L}, \p{N} and '_'.
constexpr std::string_view kOnigWordInClass = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc})";
constexpr std::string_view kOnigWord = R"(\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\x{B2}\x{B3}\x{B9}\x{BC}-\x{BE})";

// Rewrites \w (and \W outside bracket classes) into explicit property classes with Oniguruma's meaning;
// everything else is passed through. \W inside a bracket class keeps PCRE2's meaning.
std::string OnigWordClasses(std::string_view p) {
  std::string out;
  out.reserve(p.size());
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char n = p[++i];
      if (n == 'w') {
        out += in_class ? std::string(kOnigWordInClass) : fmt::format("[{}]", kOnigWord);
      } else if (n == 'W' && !in_class) {
        out += fmt::format("[^{}]", kOnigWord);
      } else {
        out += c;
        out += n;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];  // a leading ']' is literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < p.size() && p[i + 1] == ':') {  // POSIX class [:name:]
      const size_t end = p.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(p.substr(i, end + 2 - i));
        i = end + 1;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
  }
  return out;
}

}  // namespace

std::shared_ptr<const Regex> Regex::Compile(std::string_view pattern, bool literal, std::string_view where) {
  std::shared_ptr<Regex> re(new Regex());
  re->pattern_ = std::string(pattern);
  const std::string translated = literal ? std::string(pattern) : OnigWordClasses(pattern);
  int err = 0;
  PCRE2_SIZE err_off = 0;
  // PCRE2_LITERAL admits PCRE2_UTF but not PCRE2_UCP (which only matters for classes anyway).
  const uint32_t options = PCRE2_UTF | PCRE2_NO_UTF_CHECK | (literal ? PCRE2_LITERAL : PCRE2_UCP);
  pcre2_code_8* code = pcre2_compile_8(reinterpret_cast<PCRE2_SPTR8>(translated.data()), translated.size(), options,
                                       &err, &err_off, nullptr);
  QF_CHECK(code != nullptr, "{}: cannot compile regex \"{}\" at pattern offset {}: {}", where, pattern, err_off,
           PcreMessage(err));
  re->code_ = code;
  re->jit_ = pcre2_jit_compile_8(code, PCRE2_JIT_COMPLETE) == 0;
  return re;
}

Regex::~Regex() {
  if (code_ != nullptr) pcre2_code_free_8(Code(code_));
}

void Regex::ForEachMatch(std::string_view text, const std::function<void(size_t, size_t)>& fn) const {
  MatchData data(Code(code_));
  pcre2_match_context_8* ctx = jit_ ? ThreadMatchContext() : nullptr;
  const auto* subject = reinterpret_cast<PCRE2_SPTR8>(text.data());
  size_t pos = 0;
  while (pos <= text.size()) {
    const int rc = pcre2_match_8(Code(code_), subject, text.size(), pos, PCRE2_NO_UTF_CHECK, data.md, ctx);
    if (rc == PCRE2_ERROR_NOMATCH) return;
    QF_CHECK(rc >= 0, "tokenizer regex \"{}\" failed at byte {}: {}", pattern_, pos, PcreMessage(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer_8(data.md);
    const size_t b = ov[0], e = ov[1];
    fn(b, e);
    if (e > b) {
      pos = e;
    } else {
      if (e >= text.size()) return;
      pos = e + Utf8SeqLen(static_cast<unsigned char>(text[e]));
    }
  }
}

bool Regex::MatchesAt(std::string_view text, size_t pos) const {
  MatchData data(Code(code_));
  pcre2_match_context_8* ctx = jit_ ? ThreadMatchContext() : nullptr;
  const int rc = pcre2_match_8(Code(code_), reinterpret_cast<PCRE2_SPTR8>(text.data()), text.size(), pos,
                               PCRE2_NO_UTF_CHECK | PCRE2_ANCHORED, data.md, ctx);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  QF_CHECK(rc >= 0, "tokenizer regex \"{}\" failed at byte {}: {}", pattern_, pos, PcreMessage(rc));
  return true;
}

}  // namespace qforge::tok
