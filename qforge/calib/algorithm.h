// Calibration algorithms by method name (spec §6.0). Each implemented method lives in its own file under
// calib/ (algo_max.cc, ...), whose factory is one row of the registry in algorithm.cc, and says what it
// needs from the drivers. Calibrate and RestoreFromLayerwiseCheckpoint (calibrate.h) look the method up
// here; a method with a config class (config/algorithm_config.h) but no row is refused by name.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/calib/calibrate.h"
#include "qforge/calib/layerwise.h"

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
  // Set by an algorithm that runs this one as its weight algorithm (nvfp4_act_headroom's
  // weight_scale_algorithm): its config's layerwise block and method apply, and its activation policy
  // (MaxCalibOptions::act_headroom) goes to the max drivers.
  struct Wrapper {
    const config::AlgorithmConfig* config = nullptr;
    std::optional<ActHeadroomParams> act_headroom;
  };
  void set_wrapper(Wrapper w) { wrapper_ = std::move(w); }
  const Wrapper& wrapper() const { return wrapper_; }
  virtual CalibNeeds Needs(const QuantState& state) const = 0;
  // Calibrates `state` on `fm`, whole model or layer by layer (options.layerwise over the config's
  // layerwise block). `data` is called at most once, only if Needs(state).forward.
  virtual CalibrateReport Run(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                              const CalibrateOptions& options) = 0;
  // Fills `state` from a finished layerwise checkpoint directory this algorithm wrote, without calibrating.
  virtual CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) = 0;

 private:
  Wrapper wrapper_;
};

// The drivers of the algorithms that are max calibration followed by a refinement (max: none; mse: the weight
// search; local_hessian: its capture and search), whole model or layer by layer, and the restore of a
// finished layerwise checkpoint. The report names `algo`'s method.
struct MaxRefinement {
  // Layer by layer: LayerwiseOptions::refine_layer (every decoder layer, then the head, -1) and its
  // refine_reads_inputs. Also the head's step on restore.
  LayerwiseOptions::RefineLayer layer;
  // Before the max step: LayerwiseOptions::prepare_layer layer by layer; for every layer and the head (-1)
  // before MaxCalibrate on the whole model.
  LayerwiseOptions::PrepareLayer prepare;
  bool reads_inputs = false;
  bool mutates_weights = false;  // LayerwiseOptions::refine_mutates_weights
  // Whole model: after MaxCalibrate, with its calibration data (empty without a forward). The time of either
  // step is counted in the report's weight_amax_seconds.
  std::function<void(ForwardModel&, QuantState&, const CalibData&)> whole;
  bool empty() const { return !layer && !whole && !prepare; }
};
// `base`: the config's fields as the max drivers take them. Only without a refinement is the staged export
// (options.weights_final) fed, since a refinement changes weight amax after the max step.
CalibrateReport RunMaxCalibration(const CalibAlgorithm& algo, const config::QuantizeConfig& config, ForwardModel& fm,
                                  QuantState& state, const std::function<CalibData()>& data,
                                  const CalibrateOptions& options, MaxCalibOptions base,
                                  const MaxRefinement& refine = {});
CalibrateReport RestoreMaxCalibration(const CalibAlgorithm& algo, ForwardModel& fm, QuantState& state,
                                      const std::filesystem::path& dir, const MaxCalibOptions& base,
                                      const LayerwiseOptions::RefineLayer& refine_head = {},
                                      const LayerwiseOptions::PrepareLayer& prepare_head = {});

// The algorithm for `algo` (an entry of `config.algorithm`), or qforge::Error naming the method and the
// implemented ones.
std::unique_ptr<CalibAlgorithm> MakeCalibAlgorithm(const config::QuantizeConfig& config,
                                                   const config::AlgorithmConfig& algo);
// The methods MakeCalibAlgorithm knows, in registry order.
std::vector<std::string_view> ImplementedCalibMethods();

// The body of every factory below: algorithm class `A`, built from (config, algo), for config class `C`
// (a mismatch is a bug of the registry).
template <class A, class C>
std::unique_ptr<CalibAlgorithm> MakeAlgorithmOf(const config::QuantizeConfig& config,
                                                const config::AlgorithmConfig& algo) {
  QF_ASSERT(algo.As<C>() != nullptr, "the {} factory called for method '{}'", C::kTraits.method, algo.method());
  return std::make_unique<A>(config, algo);
}

// Factories, one per algorithm file (the registry's rows).
std::unique_ptr<CalibAlgorithm> MakeMaxAlgorithm(const config::QuantizeConfig& config,
                                                 const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeMseAlgorithm(const config::QuantizeConfig& config,
                                                 const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeLocalHessianAlgorithm(const config::QuantizeConfig& config,
                                                          const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeActHeadroomAlgorithm(const config::QuantizeConfig& config,
                                                         const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeGptqAlgorithm(const config::QuantizeConfig& config,
                                                  const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeSmoothQuantAlgorithm(const config::QuantizeConfig& config,
                                                         const config::AlgorithmConfig& algo);
// awq_lite, awq_clip and awq_full (algo_awq.cc).
std::unique_ptr<CalibAlgorithm> MakeAwqLiteAlgorithm(const config::QuantizeConfig& config,
                                                     const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeAwqClipAlgorithm(const config::QuantizeConfig& config,
                                                     const config::AlgorithmConfig& algo);
std::unique_ptr<CalibAlgorithm> MakeAwqFullAlgorithm(const config::QuantizeConfig& config,
                                                     const config::AlgorithmConfig& algo);

}  // namespace qforge
