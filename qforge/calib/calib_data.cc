// Calibration sample construction, reading only as much text as the samples need.
#include "qforge/calib/calib_data.h"

#include <fmt/format.h>

#include <algorithm>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/read_limited.h"

namespace qforge {
namespace {

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence (a read may stop in the middle
// of a multi-byte character). Malformed tails are left whole so that the tokenizer reports them.
size_t Utf8SafePrefix(const std::string& s) {
  const size_t n = s.size();
  // The last byte that is not a continuation byte (10xxxxxx), within the longest sequence (4 bytes).
  size_t i = n;
  while (i > 0 && n - i < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) --i;
  if (i == 0 || n - i >= 4) return n;
  const auto lead = static_cast<unsigned char>(s[i - 1]);
  if (lead < 0xC0) return n;  // ASCII (or a stray continuation): nothing incomplete at the end
  const size_t len = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
  return n - (i - 1) >= len ? n : i - 1;
}

}  // namespace

std::vector<int32_t> TokenizeCalibFile(const Tokenizer& tokenizer, const std::filesystem::path& file, int64_t wanted,
                                       const CalibReadLimits& limits) {
  QF_CHECK(wanted >= 1, "calibration file '{}': wanted token count must be >= 1, got {}", file.string(), wanted);
  LimitedReader reader(file);
  std::string text;
  auto encode = [&](std::string_view t) {
    try {
      return tokenizer.Encode(t, /*add_bos=*/false);
    } catch (const Error& e) {
      QF_FAIL("calibration file '{}': {}", file.string(), e.what());
    }
  };
  const uint64_t want = static_cast<uint64_t>(wanted);
  // Bytes needed for `want` tokens at a generous bytes-per-token ratio, capped.
  const uint64_t cap = std::min<uint64_t>(
      limits.max_byte_cap, std::max<uint64_t>(limits.min_byte_cap, want * limits.max_bytes_per_token));
  uint64_t chunk = std::min<uint64_t>(cap, std::max<uint64_t>(limits.first_chunk, want * 6));
  std::vector<int32_t> previous;  // the first `want` tokens of the previous (shorter) prefix, once it had enough
  while (true) {
    const uint64_t room = cap - std::min<uint64_t>(cap, reader.bytes_read());
    QF_CHECK(room > 0,
             "calibration file '{}': its first {} bytes do not settle {} tokens (read limit {} bytes for {} tokens); "
             "is it a text file? (a device such as /dev/zero, or one endless word)",
             file.string(), reader.bytes_read(), wanted, cap, wanted);
    reader.Append(&text, static_cast<size_t>(std::min(chunk, room)));
    if (reader.eof()) {  // the whole file: exactly what whole-file tokenization gives
      std::vector<int32_t> ids = encode(text);
      if (ids.size() > want) ids.resize(static_cast<size_t>(want));
      return ids;
    }
    const size_t safe = Utf8SafePrefix(text);
    std::vector<int32_t> ids = encode(std::string_view(text).substr(0, safe));
    // The tokens near the end of a prefix may still change when more text follows (the last pre-token is
    // cut), but the pre-tokenizer and BPE are local: once two nested prefixes both hold `want` + margin
    // tokens and agree on the first `want`, the cut is far behind them.
    if (ids.size() >= want + static_cast<uint64_t>(limits.margin_tokens)) {
      ids.resize(static_cast<size_t>(want));
      if (ids == previous) return ids;
      previous = std::move(ids);
    }
    chunk = std::max<uint64_t>(reader.bytes_read() / 2, 4096);  // the next prefix is 1.5x the current one
  }
}

CalibData CutCalibSamples(const std::vector<int32_t>& ids, int64_t num_samples, int64_t seq_len) {
  QF_CHECK(seq_len >= 1, "--calib-seq-len must be >= 1, got {}", seq_len);
  QF_CHECK(num_samples >= 1, "--calib-size must be >= 1, got {}", num_samples);
  CalibData d;
  d.seq_len = seq_len;
  d.total_tokens = static_cast<int64_t>(ids.size());
  const int64_t available = d.total_tokens / seq_len;
  QF_CHECK(available >= 1, "calibration text holds {} tokens, fewer than one sample of {} tokens", d.total_tokens,
           seq_len);
  int64_t n = num_samples;
  if (available < num_samples) {
    n = available;
    d.warnings.push_back(fmt::format("calibration text holds only {} samples of {} tokens ({} tokens); using {} "
                                     "instead of the {} requested",
                                     available, seq_len, d.total_tokens, available, num_samples));
  }
  d.samples.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    d.samples.emplace_back(ids.begin() + i * seq_len, ids.begin() + (i + 1) * seq_len);
  }
  return d;
}

CalibData BuildCalibData(const Tokenizer& tokenizer, const std::vector<std::filesystem::path>& files,
                         int64_t num_samples, int64_t seq_len, const CalibReadLimits& limits) {
  QF_CHECK(!files.empty(), "no calibration text given (--calib FILE...)");
  QF_CHECK(seq_len >= 1, "--calib-seq-len must be >= 1, got {}", seq_len);
  QF_CHECK(num_samples >= 1, "--calib-size must be >= 1, got {}", num_samples);
  int64_t wanted = 0;
  QF_CHECK(!__builtin_mul_overflow(num_samples, seq_len, &wanted) && wanted <= kMaxCalibTokens,
           "--calib-size {} x --calib-seq-len {} asks for more than {} calibration tokens", num_samples, seq_len,
           kMaxCalibTokens);
  std::vector<int32_t> ids;
  for (const auto& f : files) {
    const int64_t remaining = wanted - static_cast<int64_t>(ids.size());
    if (remaining <= 0) break;  // enough text already
    std::vector<int32_t> part = TokenizeCalibFile(tokenizer, f, remaining, limits);
    ids.insert(ids.end(), part.begin(), part.end());
  }
  CalibData d = CutCalibSamples(ids, num_samples, seq_len);
  for (const auto& w : d.warnings) LogWarning("{}", w);
  return d;
}

}  // namespace qforge
