// nvfp4_act_headroom's statistic (spec §6.5): the distribution of an activation's per-16-block amax, as a
// 512-bin histogram of log2(block amax) over [-40, 40] plus the running max, and the global amax it yields,
// amax = rho * anchor when that exceeds upper, else upper. `anchor` and `upper` are bin centres at two
// percentiles of the histogram (upper = the running max at the 100th percentile); blocks below
// upper / 1e6 are ignored for the anchor. The arithmetic follows ModelOpt's NVFP4ActHeadroomCalibrator: bin
// indices in fp32 (log2, offset, scale, floor), percentile targets against the cumulative counts, bin
// centres and the result in double, rounded to fp32 at the end. Counts are exact integers here (ModelOpt
// sums them in fp32, which rounds beyond 2^24 blocks; only a target that falls within that rounding of a
// bin edge can land one bin apart).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace qforge {

struct ActHeadroomParams {
  double anchor_percentile = 1.0;  // (0, 100]
  double upper_percentile = 99.99; // (0, 100]; >= 100: the running max
  double rho = 16384.0;            // (0, 28672)
};

// Throws qforge::Error naming the parameter outside its range (ModelOpt's calibrator does the same):
// rho in (0, 28672), anchor_percentile and upper_percentile in (0, 100].
void ValidateActHeadroomParams(const ActHeadroomParams& p);

class BlockAmaxHistogram {
 public:
  static constexpr int kBins = 512;
  static constexpr float kLog2Min = -40.f, kLog2Max = 40.f;
  static constexpr double kAnchorFloorRatio = 1e6;

  // The bin of a positive block amax (fp32 log2, clamped to [0, kBins)).
  static int Bin(float block_amax);
  // Folds per-block amax values (each >= 0 and finite; zeros count for the running max only).
  void Add(std::span<const float> block_amax);
  // Folds the blocks of x [rows, cols]: 16-element blocks along each row, a ragged tail as its own block
  // (zero padding cannot change a block's amax). Values must be finite (the caller checks).
  void AddRows(const float* x, int64_t rows, int64_t cols, int64_t block = 16);
  // Merges another histogram (the same statistic over more data).
  void Merge(const BlockAmaxHistogram& o);

  bool empty() const { return !seen_; }
  float running_max() const { return running_max_; }
  const std::array<int64_t, kBins>& counts() const { return counts_; }

  // The bin-centre value at `percentile` of the counts, ignoring bins below floor_value's bin (when
  // floor_value > 0); nullopt when no count remains.
  std::optional<double> Percentile(double percentile, double floor_value = 0) const;

  struct Result {
    float amax = 0;
    bool no_headroom = false;  // rho * anchor <= upper: amax is upper (ModelOpt warns)
    bool fell_back = false;    // the percentiles collapsed: amax is the running max
    double anchor = 0, upper = 0;
  };
  // nullopt when nothing was added (ModelOpt's calibrator then returns None).
  std::optional<Result> Compute(const ActHeadroomParams& p) const;

 private:
  std::array<int64_t, kBins> counts_{};
  float running_max_ = 0;
  bool seen_ = false;      // Add was called with at least one value
  bool any_count_ = false; // some block amax was > 0
};

}  // namespace qforge
