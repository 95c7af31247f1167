// Searches for the amax that minimizes a weight's quantization error (spec §6.3, ModelOpt's MseCalibrator
// and NVFP4MSECalibrator): every candidate amax fake-quantizes the whole tensor with FakeQuant (qdq.h), the
// squared error is summed per quantization group, and each group keeps the candidate with the smallest
// loss (the first one on ties, as torch.argmin).
//
// Candidates:
//   multiplier search  amax_k = initial_amax * m_k (fp32), one multiplier per candidate for every group,
//                      m_k = torch.linspace(start, stop, n) in fp32 with n = ceil((stop - start) / step) + 1
//                      (MseMultipliers: defaults 0.25, 4.0, 0.1 give 39 values spaced 3.75/38)
//   FP8 scale sweep    static NVFP4 only: amax_k = global_amax * (c_k / 448) for the 126 finite positive
//                      E4M3 values c_k (codes 0x01..0x7E), so every block scale lands on an FP8 code
//
// Losses are summed in double over each group's elements: the winner is the exact minimum, which equals
// torch's fp32-summed choice except between candidates whose losses agree to fp32 rounding.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "qforge/numerics/quant_kernels.h"
#include "qforge/numerics/quant_spec.h"

namespace qforge {

// torch.linspace(start, stop, ceil((stop - start) / step) + 1) in fp32 (start, stop, step > 0; checked by
// the config): the first half as fma(d, i, start), the second as fma(-d, n-1-i, stop), d = (stop - start) /
// (n - 1), exactly torch's values.
std::vector<float> MseMultipliers(double start, double stop, double step);

// The 126 sweep candidates c_k / 448 (fp32), in increasing order.
std::vector<float> Fp8ScaleCandidates();

// The loss of a candidate per quantization group: Σ (x - xq)² over the group by default. A custom metric
// gets the tensor and its fake-quantized version and writes one loss per group (AmaxShape order):
// local_hessian's dwᵀ H dw per block.
class AmaxSearchMetric {
 public:
  virtual ~AmaxSearchMetric() = default;
  virtual void GroupLosses(std::span<const float> x, std::span<const float> xq, std::span<double> losses) const = 0;
};

struct AmaxSearchResult {
  std::vector<float> amax;     // the chosen amax per group (AmaxShape order)
  std::vector<int32_t> index;  // per group: the index of the chosen candidate
};

// Multiplier search for weight `w` of `shape` under `spec` (any spec with a calibrated amax: integer, FP8,
// static NVFP4 per block, NVFP4 dynamic's global amax). `initial_amax`: the max-calibrated amax, AmaxShape
// order; `global_amax`: a static NVFP4 quantizer's promoted global amax (kept fixed). `metric` nullptr:
// squared error. Throws qforge::Error (naming `what`) for specs without an amax (MX, dynamic).
AmaxSearchResult SearchAmaxMultiplier(const QuantSpec& spec, std::span<const float> w, std::span<const int64_t> shape,
                                      std::span<const float> initial_amax, std::optional<float> global_amax,
                                      std::span<const float> multipliers, const AmaxSearchMetric* metric = nullptr,
                                      std::string_view what = "weight", const HostQuantKernels* kernels = nullptr);

// FP8 scale sweep for a static NVFP4 weight: candidates global_amax * Fp8ScaleCandidates() for every block.
// A [rows, cols] weight with 16-element row blocks and the default metric runs block by block in parallel
// (same choices); `reference` forces the generic whole-tensor search.
AmaxSearchResult SearchAmaxFp8Sweep(const QuantSpec& spec, std::span<const float> w, std::span<const int64_t> shape,
                                    std::span<const float> initial_amax, float global_amax,
                                    const AmaxSearchMetric* metric = nullptr, std::string_view what = "weight",
                                    const HostQuantKernels* kernels = nullptr, bool reference = false);

// The sweep's block scales: Nvfp4StaticBlockScale(global_amax * c_k, global_amax, FP8_NORM) for the 126
// candidates c_k (the same for every block, since each candidate is one amax for all blocks).
std::vector<float> Fp8SweepBlockScales(float global_amax, bool four_over_six);
// The sweep over the 16-element blocks along the rows of w [rows, cols] (a last partial block reads only its
// elements): index[r * ceil(cols/16) + b] = the k whose scale (0: an all-zero block; non-finite: 1) gives
// the smallest Σ (x − QDQ(x))² in double over the block, the first on ties. The reference of the backends'
// Nvfp4SweepBlocks op.
void Nvfp4SweepRowBlocks(const float* w, int64_t rows, int64_t cols, std::span<const float> scales, int32_t* index);

// Per-group squared error Σ (x - xq)² in AmaxShape order of the spec's groups for `shape` (double sums).
void GroupSquaredError(const QuantSpec& spec, std::span<const int64_t> shape, std::span<const float> x,
                       std::span<const float> xq, std::span<double> losses, std::string_view what = "weight");
// Per-group sums of per-element values (one per element of `shape`), in AmaxShape order.
void GroupSum(const QuantSpec& spec, std::span<const int64_t> shape, std::span<const double> values,
              std::span<double> losses, std::string_view what = "weight");

}  // namespace qforge
