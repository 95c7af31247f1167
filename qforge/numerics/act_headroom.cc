// nvfp4_act_headroom's block-amax histogram (act_headroom.h).
#include "qforge/numerics/act_headroom.h"

#include <algorithm>
#include <cmath>

#include "qforge/base/error.h"

namespace qforge {

void ValidateActHeadroomParams(const ActHeadroomParams& p) {
  QF_CHECK(p.rho > 0 && p.rho < 28672.0,
           "rho must be in (0, 28672) (the FP8 E4M3 normal range 448 / 2^-6), got {}; a larger rho gives more headroom "
           "above the calibrated range but less room below it", p.rho);
  QF_CHECK(p.anchor_percentile > 0 && p.anchor_percentile <= 100.0, "anchor_percentile must be in (0, 100], got {}",
           p.anchor_percentile);
  QF_CHECK(p.upper_percentile > 0 && p.upper_percentile <= 100.0, "upper_percentile must be in (0, 100], got {}",
           p.upper_percentile);
}

int BlockAmaxHistogram::Bin(float block_amax) {
  // (log2(v) - min) / (max - min) * bins, each step in fp32, then floor and clamp.
  const float frac = (std::log2(block_amax) - kLog2Min) / (kLog2Max - kLog2Min);
  const float scaled = frac * static_cast<float>(kBins);
  const double idx = std::floor(static_cast<double>(scaled));
  return static_cast<int>(std::clamp(idx, 0.0, static_cast<double>(kBins - 1)));
}

void BlockAmaxHistogram::Add(std::span<const float> block_amax) {
  for (float v : block_amax) {
    seen_ = true;
    running_max_ = std::max(running_max_, v);
    if (v > 0) {
      ++counts_[static_cast<size_t>(Bin(v))];
      any_count_ = true;
    }
  }
}

void BlockAmaxHistogram::AddRows(const float* x, int64_t rows, int64_t cols, int64_t block) {
  const int64_t blocks = (cols + block - 1) / block;
  std::vector<float> amax(static_cast<size_t>(blocks));
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * cols;
    for (int64_t b = 0; b < blocks; ++b) {
      float m = 0;
      for (int64_t j = b * block; j < std::min(cols, (b + 1) * block); ++j) m = std::max(m, std::fabs(row[j]));
      amax[static_cast<size_t>(b)] = m;
    }
    Add(amax);
  }
}

void BlockAmaxHistogram::Merge(const BlockAmaxHistogram& o) {
  if (!o.seen_) return;
  for (int i = 0; i < kBins; ++i) counts_[static_cast<size_t>(i)] += o.counts_[static_cast<size_t>(i)];
  running_max_ = seen_ ? std::max(running_max_, o.running_max_) : o.running_max_;
  seen_ = true;
  any_count_ = any_count_ || o.any_count_;
}

std::optional<double> BlockAmaxHistogram::Percentile(double percentile, double floor_value) const {
  if (!any_count_) return std::nullopt;
  int floor_bin = 0;
  if (floor_value > 0) floor_bin = Bin(static_cast<float>(floor_value));  // ModelOpt: a float32 tensor
  int64_t total = 0;
  for (int i = floor_bin; i < kBins; ++i) total += counts_[static_cast<size_t>(i)];
  if (total <= 0) return std::nullopt;
  // torch: target = percentile / 100 * total (fp32), then the first bin whose cumulative count >= target
  // (searchsorted, left), clamped to the last bin.
  const float target = static_cast<float>(percentile / 100.0) * static_cast<float>(total);
  int bin = kBins - 1;
  int64_t cdf = 0;
  for (int i = 0; i < kBins; ++i) {
    if (i >= floor_bin) cdf += counts_[static_cast<size_t>(i)];
    if (static_cast<double>(cdf) >= static_cast<double>(target)) {
      bin = i;
      break;
    }
  }
  const double log2_val = static_cast<double>(kLog2Min) +
                          (bin + 0.5) / kBins * (static_cast<double>(kLog2Max) - static_cast<double>(kLog2Min));
  return std::pow(2.0, log2_val);
}

std::optional<BlockAmaxHistogram::Result> BlockAmaxHistogram::Compute(const ActHeadroomParams& p) const {
  if (!any_count_) {
    // ModelOpt: no histogram (every block amax was 0, or nothing seen) returns None.
    return std::nullopt;
  }
  Result r;
  const std::optional<double> upper =
      p.upper_percentile >= 100.0 ? std::optional<double>(running_max_) : Percentile(p.upper_percentile);
  std::optional<double> anchor;
  if (upper && *upper != 0) anchor = Percentile(p.anchor_percentile, *upper / kAnchorFloorRatio);
  if (!upper || *upper <= 0 || !anchor || *anchor <= 0) {
    r.amax = running_max_;
    r.fell_back = true;
    return r;
  }
  r.upper = *upper;
  r.anchor = *anchor;
  const double headroom = p.rho * *anchor;
  if (headroom <= *upper) {
    r.amax = static_cast<float>(*upper);
    r.no_headroom = true;
  } else {
    r.amax = static_cast<float>(headroom);
  }
  return r;
}

}  // namespace qforge
