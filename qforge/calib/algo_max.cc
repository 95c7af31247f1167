// The `max` calibration algorithm (spec §6.2): weight amax from the weights, activation amax from the
// calibration forward (whole model: max_calib.h MaxCalibrate; layer by layer: layerwise.h), MoE expert
// sync, shared weight global amax and static NVFP4 promotion.
#include "qforge/base/error.h"
#include "qforge/calib/algorithm.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/max_calib.h"

namespace qforge {
namespace {

class MaxAlgorithm final : public CalibAlgorithm {
 public:
  MaxAlgorithm(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo)
      : quantize_config_(config), algo_(algo), max_(*algo.As<config::MaxCalibConfig>()) {
  }

  const config::AlgorithmConfig& config() const override { return algo_; }

  CalibNeeds Needs(const QuantState& state) const override {
    CalibNeeds n;
    n.forward = NeedsCalibrationData(state);
    n.mutates_weights = false;
    return n;
  }

  CalibrateReport Run(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                      const CalibrateOptions& options) override {
    return RunMaxCalibration(*this, quantize_config_, fm, state, data, options, BaseOptions());
  }

  CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) override {
    return RestoreMaxCalibration(*this, fm, state, dir, BaseOptions());
  }

 private:
  // The config's fields as the max drivers take them.
  MaxCalibOptions BaseOptions() const {
    MaxCalibOptions mo;
    mo.shared_patterns = config::ResolveSharedPatterns(max_.shared_states);
    mo.sync_expert_weight_amax = max_.sync_expert_weight_amax;
    return mo;
  }

  const config::QuantizeConfig& quantize_config_;
  const config::AlgorithmConfig& algo_;
  const config::MaxCalibConfig& max_;
};

}  // namespace

std::unique_ptr<CalibAlgorithm> MakeMaxAlgorithm(const config::QuantizeConfig& config,
                                                 const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<MaxAlgorithm, config::MaxCalibConfig>(config, algo);
}

}  // namespace qforge
