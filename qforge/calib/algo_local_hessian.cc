// The `local_hessian` calibration algorithm (spec §6.4): max calibration; a capture forward with the
// activation quantizers applied and the weights unquantized, accumulating every quantized Linear's
// per-input-block Hessians (calib/local_hessian.h); then mse's weight search (calib/weight_search.h) with the
// loss dwᵀ (H_j / tokens) dw per output row and input block. Linears whose in_features is not a multiple of
// block_size, and Linears no token reached, fall back to the plain squared error.
// Whole model: one capture forward over every batch after max calibration. Layer by layer: each layer's
// capture runs on its kept inputs after the layer's max step, then its outputs are computed (an extra pass).
#include <memory>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/progress.h"
#include "qforge/calib/algorithm.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/local_hessian.h"
#include "qforge/calib/max_calib.h"
#include "qforge/calib/weight_search.h"

namespace qforge {
namespace {

class LocalHessianAlgorithm final : public CalibAlgorithm {
 public:
  LocalHessianAlgorithm(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo)
      : quantize_config_(config), algo_(algo), lh_(*algo.As<config::LocalHessianCalibConfig>()) {
    search_.fp8_scale_sweep = lh_.fp8_scale_sweep;
    search_.multipliers = MseMultipliers(lh_.start_multiplier, lh_.stop_multiplier, lh_.step_size);
  }

  const config::AlgorithmConfig& config() const override { return algo_; }

  // The Hessians come from data whatever the activation quantizers need.
  CalibNeeds Needs(const QuantState&) const override { return CalibNeeds{true, false}; }

  CalibrateReport Run(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                      const CalibrateOptions& options) override {
    WeightSearchStats stats;
    int with_hessian = 0;
    MaxRefinement refine;
    refine.reads_inputs = true;
    refine.layer = [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore& inputs) {
      stats.Merge(LocalHessianRefineLayer(f, s, layer, inputs, lh_.block_size, search_, &with_hessian));
    };
    refine.whole = [&](ForwardModel& f, QuantState& s, const CalibData& calib) {
      QF_CHECK(!calib.samples.empty(), "local_hessian needs calibration data: no calibration samples");
      stats.Merge(LocalHessianRefineWhole(f, s, calib, options.batch_size, lh_.block_size, search_,
                                          options.show_progress, "local_hessian", &with_hessian));
    };
    CalibrateReport report = RunMaxCalibration(*this, quantize_config_, fm, state, data, options, BaseOptions(), refine);
    report.max.notes.push_back(stats.Summary("local_hessian", search_) +
                               fmt::format("; {} with a Hessian-weighted loss (block {}), the others plain MSE",
                                           with_hessian, lh_.block_size));
    return report;
  }

  CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) override {
    int with_hessian = 0;
    // The decoder layers come from the checkpoint; the head is calibrated again from the final hidden states,
    // so its Hessians are captured again too.
    return RestoreMaxCalibration(*this, fm, state, dir, BaseOptions(),
                                 [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore& inputs) {
                                   (void)LocalHessianRefineLayer(f, s, layer, inputs, lh_.block_size, search_,
                                                                 &with_hessian);
                                 });
  }

 private:
  MaxCalibOptions BaseOptions() const {
    MaxCalibOptions mo;
    mo.shared_patterns = config::ResolveSharedPatterns(lh_.shared_states);
    return mo;
  }

  const config::QuantizeConfig& quantize_config_;
  const config::AlgorithmConfig& algo_;
  const config::LocalHessianCalibConfig& lh_;
  WeightSearchOptions search_;
};

}  // namespace

std::unique_ptr<CalibAlgorithm> MakeLocalHessianAlgorithm(const config::QuantizeConfig& config,
                                                          const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<LocalHessianAlgorithm, config::LocalHessianCalibConfig>(config, algo);
}

}  // namespace qforge
