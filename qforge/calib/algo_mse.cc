// The `mse` calibration algorithm (spec §6.3): max calibration (activations, weights, shared state,
// promotion), then every eligible weight quantizer's amax from the MSE search of calib/weight_search.h.
// Whole model: the search runs after max calibration. Layer by layer: each layer's weights are searched
// right after the layer's max step, before its outputs are captured (so get_qdq_activations_from_prev_layer
// sees the searched scales) and before its checkpoint is written (a resumed run keeps them).
#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/progress.h"
#include "qforge/calib/algorithm.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/max_calib.h"
#include "qforge/calib/weight_search.h"

namespace qforge {
namespace {

class MseAlgorithm final : public CalibAlgorithm {
 public:
  MseAlgorithm(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo)
      : quantize_config_(config), algo_(algo), mse_(*algo.As<config::MseCalibConfig>()) {
    search_.fp8_scale_sweep = mse_.fp8_scale_sweep;
    search_.multipliers = MseMultipliers(mse_.start_multiplier, mse_.stop_multiplier, mse_.step_size);
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
    WeightSearchOptions search = search_;
    // On a device the sweep runs there, on the weights resident for the forward (uploaded for it otherwise).
    if (!fm.backend().host_accessible()) {
      search.device_sweep = [&fm](int module, std::span<const float> scales) {
        return fm.SweepNvfp4Weight(module, scales);
      };
    }
    const HostQuantKernels* kernels = fm.backend().host_kernels();
    WeightSearchStats stats;
    double search_seconds = 0;
    auto search_layer = [&](const Model& model, QuantState& s, int layer) {
      Timer t;
      stats.Merge(SearchLayerWeightAmax(model, s, layer, search, kernels));
      search_seconds += t.Seconds();
    };
    MaxRefinement refine;
    refine.layer = [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore&) {
      search_layer(f.model(), s, layer);
    };
    refine.whole = [&](ForwardModel& f, QuantState& s, const CalibData&) {
      const Model& model = f.model();
      Progress progress("mse", model.num_layers() + 1, "layers");
      for (int layer = -1; layer < model.num_layers(); ++layer) {
        search_layer(model, s, layer);
        if (options.show_progress) progress.Add(1, layer < 0 ? "head" : fmt::format("layer {}", layer));
      }
      if (options.show_progress) progress.Finish();
    };
    // No staged export: the weight amax are final only after the search.
    CalibrateReport report = RunMaxCalibration(*this, quantize_config_, fm, state, data, options, BaseOptions(), refine);
    report.max.notes.push_back(stats.Summary("mse", search_) + fmt::format(" ({:.2f}s)", search_seconds));
    return report;
  }

  CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) override {
    // The checkpoint holds the searched amax (and the promoted global amax) of every decoder layer; the
    // head is calibrated again, so searched again.
    const HostQuantKernels* kernels = fm.backend().host_kernels();
    return RestoreMaxCalibration(*this, fm, state, dir, BaseOptions(),
                                 [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore&) {
                                   (void)SearchLayerWeightAmax(f.model(), s, layer, search_, kernels);
                                 });
  }

 private:
  MaxCalibOptions BaseOptions() const {
    MaxCalibOptions mo;
    mo.shared_patterns = config::ResolveSharedPatterns(mse_.shared_states);
    return mo;
  }

  const config::QuantizeConfig& quantize_config_;
  const config::AlgorithmConfig& algo_;
  const config::MseCalibConfig& mse_;
  WeightSearchOptions search_;
};

}  // namespace

std::unique_ptr<CalibAlgorithm> MakeMseAlgorithm(const config::QuantizeConfig& config,
                                                 const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<MseAlgorithm, config::MseCalibConfig>(config, algo);
}

}  // namespace qforge
