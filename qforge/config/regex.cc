// PCRE2-backed Regex. fullmatch is done by compiling "(?:pattern)\z" with PCRE2_ANCHORED.
#include "qforge/config/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "qforge/base/error.h"

namespace qforge::config {
namespace {

struct Compiled {
  pcre2_code* code = nullptr;
  std::string error;
};

Compiled Compile(const std::string& pattern, bool full) {
  // Python-only syntax that PCRE2 spells differently: \Z (end of string) is PCRE2's \z.
  std::string p;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      if (pattern[i + 1] == 'Z') {
        p += "\\z";
      } else {
        p += pattern.substr(i, 2);
      }
      ++i;
    } else {
      p += pattern[i];
    }
  }
  std::string src = full ? "(?:" + p + ")\\z" : p;
  int err = 0;
  PCRE2_SIZE off = 0;
  Compiled c;
  c.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(src.data()), src.size(),
                         (full ? PCRE2_ANCHORED : 0) | PCRE2_UTF, &err, &off, nullptr);
  if (!c.code) {
    // Validate the user's text alone so the offset refers to it.
    pcre2_code* plain = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(p.data()), p.size(), PCRE2_UTF, &err,
                                      &off, nullptr);
    if (plain) pcre2_code_free(plain);
    PCRE2_UCHAR buf[256];
    pcre2_get_error_message(err, buf, sizeof(buf));
    c.error = fmt::format("{} at offset {}", reinterpret_cast<const char*>(buf), static_cast<size_t>(off));
  }
  return c;
}

}  // namespace

struct Regex::Impl {
  pcre2_code* full = nullptr;
  pcre2_code* search = nullptr;
  ~Impl() {
    if (full) pcre2_code_free(full);
    if (search) pcre2_code_free(search);
  }
};

Regex::Regex(std::string pattern) : pattern_(std::move(pattern)), impl_(std::make_unique<Impl>()) {
  Compiled f = Compile(pattern_, true);
  QF_CHECK(f.code, "invalid regex '{}': {}", pattern_, f.error);
  impl_->full = f.code;
  Compiled s = Compile(pattern_, false);
  QF_CHECK(s.code, "invalid regex '{}': {}", pattern_, s.error);
  impl_->search = s.code;
}

Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

std::string Regex::CompileError(const std::string& pattern) {
  Compiled c = Compile(pattern, true);
  if (c.code) {
    pcre2_code_free(c.code);
    return "";
  }
  return c.error;
}

std::optional<std::vector<std::optional<std::string>>> Regex::FullMatch(std::string_view subject) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->full, nullptr);
  int rc = pcre2_match(impl_->full, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0, md,
                       nullptr);
  if (rc < 0) {
    pcre2_match_data_free(md);
    return std::nullopt;
  }
  uint32_t groups = 0;
  pcre2_pattern_info(impl_->full, PCRE2_INFO_CAPTURECOUNT, &groups);
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  std::vector<std::optional<std::string>> out;
  for (uint32_t g = 1; g <= groups; ++g) {
    if (static_cast<int>(g) < rc && ov[2 * g] != PCRE2_UNSET) {
      out.emplace_back(std::string(subject.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g])));
    } else {
      out.emplace_back(std::nullopt);
    }
  }
  pcre2_match_data_free(md);
  return out;
}

std::string Regex::ReplaceAll(std::string_view subject, std::string_view replacement) const {
  std::string out(subject.size() * 2 + 64, '\0');
  PCRE2_SIZE out_len = out.size();
  int rc = pcre2_substitute(impl_->search, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0,
                            PCRE2_SUBSTITUTE_GLOBAL | PCRE2_SUBSTITUTE_OVERFLOW_LENGTH, nullptr, nullptr,
                            reinterpret_cast<PCRE2_SPTR>(replacement.data()), replacement.size(),
                            reinterpret_cast<PCRE2_UCHAR*>(out.data()), &out_len);
  if (rc == PCRE2_ERROR_NOMEMORY) {
    out.resize(out_len);
    rc = pcre2_substitute(impl_->search, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0,
                          PCRE2_SUBSTITUTE_GLOBAL, nullptr, nullptr,
                          reinterpret_cast<PCRE2_SPTR>(replacement.data()), replacement.size(),
                          reinterpret_cast<PCRE2_UCHAR*>(out.data()), &out_len);
  }
  QF_ASSERT(rc >= 0, "pcre2_substitute failed for '{}'", pattern_);
  out.resize(out_len);
  return out;
}

}  // namespace qforge::config
