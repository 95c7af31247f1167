// The `nvfp4_act_headroom` calibration algorithm (spec §6.5): NVFP4 dynamic-block input quantizers take
// their global amax from the distribution of their per-16-block amax (numerics/act_headroom.h), which leaves
// headroom above the calibrated range, while the weights are calibrated by `weight_scale_algorithm` (max by
// default, or mse / local_hessian with their own options). That algorithm runs as usual, whole model or
// layer by layer under this config's `layerwise` block; its max pass collects the histograms in the same
// forward that collects every other amax (MaxCalibOptions::act_headroom).
#include <fmt/format.h>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/calib/algorithm.h"
#include "qforge/config/algorithm_config.h"
#include "qforge/config/conformance.h"
#include "qforge/config/json_util.h"
#include "qforge/numerics/act_headroom.h"

namespace qforge {
namespace {

class ActHeadroomAlgorithm final : public CalibAlgorithm {
 public:
  ActHeadroomAlgorithm(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo)
      : algo_(algo), cfg_(*algo.As<config::Nvfp4ActHeadroomCalibConfig>()) {
    if (cfg_.weight_scale_algorithm && cfg_.weight_scale_algorithm->config) {
      weights_config_ = cfg_.weight_scale_algorithm->config;
    } else {  // null: max, so that choosing this activation policy never changes how weights calibrate
      weights_config_ = std::make_shared<const config::AlgorithmConfig>(
          config::ParseAlgorithmConfig("max", config::Json::object(), "algorithm.weight_scale_algorithm"));
    }
    weights_ = MakeCalibAlgorithm(config, *weights_config_);
    Wrapper w;
    w.config = &algo_;
    w.act_headroom = ActHeadroomParams{cfg_.anchor_percentile, cfg_.upper_percentile, cfg_.rho};
    weights_->set_wrapper(w);
  }

  const config::AlgorithmConfig& config() const override { return algo_; }

  CalibNeeds Needs(const QuantState& state) const override { return weights_->Needs(state); }

  CalibrateReport Run(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                      const CalibrateOptions& options) override {
    int matched = 0;
    for (const auto& q : state.quantizers()) matched += IsActHeadroomQuantizer(q);
    if (matched == 0) {
      LogWarning("nvfp4_act_headroom: no NVFP4 dynamic-block input quantizer matched, so this is plain max "
                 "calibration of the activations; check that the recipe enables NVFP4 activation quantizers");
    } else {
      LogInfo("nvfp4_act_headroom: calibrating {} NVFP4 activation quantizer(s) (anchor_percentile={}, "
              "upper_percentile={}, rho={}); weights by {}",
              matched, cfg_.anchor_percentile, cfg_.upper_percentile, cfg_.rho, weights_config_->method());
    }
    return weights_->Run(fm, state, data, options);
  }

  CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) override {
    return weights_->Restore(fm, state, dir);
  }

 private:
  const config::AlgorithmConfig& algo_;
  const config::Nvfp4ActHeadroomCalibConfig& cfg_;
  std::shared_ptr<const config::AlgorithmConfig> weights_config_;
  std::unique_ptr<CalibAlgorithm> weights_;
};

// Conformance op `nvfp4_act_headroom_calibrator` (ModelOpt's calibrator tests): `ctor` holds rho,
// anchor_percentile, upper_percentile (validated as the calibrator does); `activation` is a [rows, cols]
// tensor of `fill` with `overrides` ({row, cols: [from, to), value}); the result's `amax` is the
// calibrated global amax, and a warning is logged when rho * anchor leaves no headroom.
config::Json OpHeadroomCalibrator(const config::Json& input, const config::Json&) {
  const config::Json ctor = input.value("ctor", config::Json::object());
  ActHeadroomParams p;
  p.rho = ctor.value("rho", p.rho);
  p.anchor_percentile = ctor.value("anchor_percentile", p.anchor_percentile);
  p.upper_percentile = ctor.value("upper_percentile", p.upper_percentile);
  ValidateActHeadroomParams(p);
  config::Json out = config::Json::object();
  if (!input.contains("activation")) return out;
  const config::Json& a = input["activation"];
  const int64_t rows = a.at("shape").at(0).get<int64_t>(), cols = a.at("shape").at(1).get<int64_t>();
  std::vector<float> x(static_cast<size_t>(rows * cols), a.value("fill", 0.f));
  for (const auto& o : a.value("overrides", config::Json::array())) {
    const int64_t r = o.at("row").get<int64_t>(), c0 = o.at("cols").at(0).get<int64_t>(),
                  c1 = o.at("cols").at(1).get<int64_t>();
    for (int64_t c = c0; c < c1; ++c) x[static_cast<size_t>(r * cols + c)] = o.at("value").get<float>();
  }
  BlockAmaxHistogram h;
  h.AddRows(x.data(), rows, cols, 16);
  const auto r = h.Compute(p);
  if (!r) {
    out["amax"] = nullptr;
    return out;
  }
  if (r->no_headroom) {
    LogWarning("nvfp4_act_headroom: per-block amax range {:.1f} leaves no headroom at rho={}", r->upper / r->anchor,
               p.rho);
  }
  out["amax"] = r->amax;
  return out;
}

}  // namespace

void RegisterActHeadroomConformanceOp(config::ConformanceRegistry& registry) {
  registry.Register("nvfp4_act_headroom_calibrator", OpHeadroomCalibrator);
}

std::unique_ptr<CalibAlgorithm> MakeActHeadroomAlgorithm(const config::QuantizeConfig& config,
                                                         const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<ActHeadroomAlgorithm, config::Nvfp4ActHeadroomCalibConfig>(config, algo);
}

}  // namespace qforge
