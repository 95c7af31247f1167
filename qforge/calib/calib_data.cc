// Calibration sample construction.
#include "qforge/calib/calib_data.h"

#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/log.h"

namespace qforge {

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
                         int64_t num_samples, int64_t seq_len) {
  QF_CHECK(!files.empty(), "no calibration text given (--calib FILE...)");
  std::vector<int32_t> ids;
  const int64_t wanted = num_samples * seq_len;
  for (const auto& f : files) {
    if (static_cast<int64_t>(ids.size()) >= wanted) break;  // enough text already
    std::string text = ReadFileToString(f);
    std::vector<int32_t> part;
    try {
      part = tokenizer.Encode(text, /*add_bos=*/false);
    } catch (const Error& e) {
      QF_FAIL("calibration file '{}': {}", f.string(), e.what());
    }
    ids.insert(ids.end(), part.begin(), part.end());
  }
  CalibData d = CutCalibSamples(ids, num_samples, seq_len);
  for (const auto& w : d.warnings) LogWarning("{}", w);
  return d;
}

}  // namespace qforge
