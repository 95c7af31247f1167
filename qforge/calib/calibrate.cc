// Calibration algorithm dispatch.
#include "qforge/calib/calibrate.h"

#include "qforge/base/error.h"
#include "qforge/base/strings.h"

namespace qforge {

bool NeedsCalibrationData(const QuantState& state) {
  for (const auto& q : state.quantizers()) {
    if (Traits(q.role).is_activation && q.NeedsCalibration()) return true;
  }
  return false;
}

CalibrateReport Calibrate(Model& model, QuantState& state, const config::QuantizeConfig& config,
                          const std::function<CalibData()>& data, const CalibrateOptions& options) {
  CalibrateReport report;
  const auto& algos = config.algorithm.configs;
  if (algos.empty()) {  // algorithm: null -> no calibration; weights still get their amax for export
    CalibrateWeightAmax(model, state);
    FinalizeSharedStateAndPromote(model, state, {}, nullptr);
    return report;
  }
  QF_CHECK(algos.size() == 1, "algorithm: a list of {} algorithms is not supported yet (give one)", algos.size());
  const config::AlgorithmConfig& algo = algos[0];
  const std::string& method = algo.method();
  QF_CHECK(!algo.layerwise().enable,
           "algorithm '{}': layerwise calibration (layerwise.enable) is not supported by this version of qforge",
           method);
  const auto* max = algo.As<config::MaxCalibConfig>();
  QF_CHECK(max != nullptr,
           "algorithm '{}' is not implemented yet; qforge calibrates with 'max' (use a recipe or --qformat "
           "whose algorithm is max)",
           method);
  QF_CHECK(!max->moe_calib_experts_ratio.has_value(),
           "algorithm 'max': moe_calib_experts_ratio is not supported yet");
  MaxCalibOptions mo;
  mo.batch_size = options.batch_size;
  mo.show_progress = options.show_progress;
  mo.shared_patterns = config::ResolveSharedPatterns(max->shared_states);
  mo.sync_expert_weight_amax = max->sync_expert_weight_amax;
  CalibData calib;
  if (NeedsCalibrationData(state)) {
    calib = data();
    report.used_data = true;
  }
  report.max = MaxCalibrate(model, state, calib, mo);
  report.methods.push_back(method);
  return report;
}

}  // namespace qforge
