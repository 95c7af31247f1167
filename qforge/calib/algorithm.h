// Calibration algorithms by method name (spec §6.0). Each implemented method lives in its own file under
// calib/ (algo_max.cc, ...), whose factory is one row of the registry in algorithm.cc, and says what it
// needs from the drivers. Calibrate and RestoreFromLayerwiseCheckpoint (calibrate.h) look the method up
// here; a method with a config class (config/algorithm_config.h) but no row is refused by name.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "qforge/calib/calibrate.h"

namespace qforge {

// What an algorithm needs for a given quantizer state.
struct CalibNeeds {
  bool forward = false;          // activation statistics from calibration forward passes (data is tokenized)
  bool mutates_weights = false;  // changes Linear weights: layerwise checkpoints keep them, no staged export
};

class CalibAlgorithm {
 public:
  virtual ~CalibAlgorithm() = default;
  virtual const config::AlgorithmConfig& config() const = 0;
  virtual CalibNeeds Needs(const QuantState& state) const = 0;
  // Calibrates `state` on `fm`, whole model or layer by layer (options.layerwise over the config's
  // layerwise block). `data` is called at most once, only if Needs(state).forward.
  virtual CalibrateReport Run(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                              const CalibrateOptions& options) = 0;
  // Fills `state` from a finished layerwise checkpoint directory this algorithm wrote, without calibrating.
  virtual CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) = 0;
};

// The algorithm for `algo` (an entry of `config.algorithm`), or qforge::Error naming the method and the
// implemented ones.
std::unique_ptr<CalibAlgorithm> MakeCalibAlgorithm(const config::QuantizeConfig& config,
                                                   const config::AlgorithmConfig& algo);
// The methods MakeCalibAlgorithm knows, in registry order.
std::vector<std::string_view> ImplementedCalibMethods();

// Factories, one per algorithm file (the registry's rows).
std::unique_ptr<CalibAlgorithm> MakeMaxAlgorithm(const config::QuantizeConfig& config,
                                                 const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeMseAlgorithm(const config::QuantizeConfig& config,
                                                 const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeLocalHessianAlgorithm(const config::QuantizeConfig& config,
                                                          const config::AlgorithmConfig& algo);

}  // namespace qforge
