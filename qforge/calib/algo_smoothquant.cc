// The `smoothquant` calibration algorithm (spec §6.6): max calibration with per-input-channel amax on the
// inputs it smooths, then per Linear with an INT8 weight and an INT8 input
//   s_j = w_j^(1-alpha) / a_j^alpha   (w_j = max_i |W_ij| over output rows, a_j = the input amax of channel j),
// channels with a_j <= 2^-31 (when some s_j is that small) set to 1, s clamped to [1e-4, 1e4];
// the input gets pre_quant_scale s (x * s before its quantizer) and a per-tensor amax max_j(a_j * s_j); the
// weight's columns are divided by s (W[:, j] / s_j) and its amax calibrated again from the smoothed weight
// (after the siblings' re-smoothing below).
// Then, as ModelOpt's export does before writing (preprocess_linear_fusion), siblings that read one input
// (q/k/v, gate/up, each expert's w1/w3) get the mean of their pre_quant_scale, their weights re-smoothed to it
// (W * s_old / s_new): a runtime fuses them into one GEMM and scales
// the shared input once. ModelOpt finds those groups with a dummy forward and skips a group whose first
// member is unquantized (Qwen2-MoE's shared expert, whose input the disabled router reads first); qforge
// groups by the default shared-state patterns, so that group is re-smoothed too and exports consistently.
//
// The per-Linear math, with ModelOpt's roundings in the checkpoint's dtype, is calib/smoothquant.h.
//
// Which inputs: ModelOpt makes every enabled per-tensor input quantizer per-channel for the statistics but
// smooths only the INT8 ones; qforge changes only the ones it smooths (an INT8 input of a Linear with an
// INT8 weight), so the others keep their per-tensor max amax instead of a per-channel one that no export
// format can write.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <set>

#include "qforge/base/error.h"
#include "qforge/calib/algorithm.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/max_calib.h"
#include "qforge/calib/pre_quant_scale.h"
#include "qforge/calib/smoothquant.h"

namespace qforge {
namespace {

bool IsInt8(const Quantizer* q) {
  if (q == nullptr || !q->enabled() || q->sequential()) return false;
  const QuantSpec s = q->spec();
  return s.num_bits == NumBits::Int(8) && !s.block && !s.dynamic;
}

struct SmoothSummary {
  int smoothed = 0, no_amax = 0, groups = 0;
  float s_min = INFINITY, s_max = 0;
  std::set<std::string> skipped_formats;
  int skipped = 0;
};

class SmoothQuantAlgorithm final : public CalibAlgorithm {
 public:
  SmoothQuantAlgorithm(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo)
      : quantize_config_(config), algo_(algo), alpha_(algo.As<config::SmoothQuantCalibConfig>()->alpha) {}

  const config::AlgorithmConfig& config() const override { return algo_; }
  // Statistics from data (ModelOpt asserts a forward loop); the weights change.
  CalibNeeds Needs(const QuantState&) const override { return CalibNeeds{true, true}; }

  CalibrateReport Run(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                      const CalibrateOptions& options) override {
    SmoothSummary summary;
    MaxRefinement refine;
    refine.mutates_weights = true;
    refine.prepare = [&](QuantState& s, int layer) { Prepare(fm.model(), s, layer, &summary); };
    refine.layer = [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore&) {
      Smooth(f.model(), s, layer, &summary);
    };
    refine.whole = [&](ForwardModel& f, QuantState& s, const CalibData&) {
      for (int layer = -1; layer < f.model().num_layers(); ++layer) Smooth(f.model(), s, layer, &summary);
    };
    CalibrateReport report = RunMaxCalibration(*this, quantize_config_, fm, state, data, options, BaseOptions(), refine);
    report.max.notes.push_back(Note(summary));
    return report;
  }

  CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) override {
    // The decoder layers (weights, pre_quant_scale, amax) come from the checkpoint; the head is calibrated
    // again from the final hidden states, and smoothed again.
    SmoothSummary summary;
    return RestoreMaxCalibration(
        *this, fm, state, dir, BaseOptions(),
        [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore&) { Smooth(f.model(), s, layer, &summary); },
        [&](QuantState& s, int layer) { Prepare(fm.model(), s, layer, &summary); });
  }

 private:
  // ModelOpt's smoothquant runs max_calibrate with its defaults: the default shared-state groups.
  static MaxCalibOptions BaseOptions() {
    MaxCalibOptions mo;
    mo.shared_patterns = config::ResolveSharedPatterns(std::nullopt);
    return mo;
  }

  // The input quantizers of `layer` that will be smoothed collect per-channel amax (axis -1).
  void Prepare(const Model& model, QuantState& state, int layer, SmoothSummary* summary) {
    for (int m : model.linear_modules(layer)) {
      Quantizer* in = state.Get(m, QuantizerRole::kInput);
      if (in == nullptr || !in->enabled() || in->attrs().axis.has_value()) continue;
      if (!IsInt8(in) || !IsInt8(state.Get(m, QuantizerRole::kWeight))) {
        ++summary->skipped;
        summary->skipped_formats.insert(in->spec().num_bits == NumBits::Int(8) ? "INT8 input, weight not INT8" : "input not INT8");
        continue;
      }
      config::QuantizerAttributeConfig a = in->attrs();
      a.axis = config::AxisValue{{-1}, false};
      in->SetAttrs(std::move(a));
      smoothing_.insert(m);
    }
  }

  void Smooth(Model& model, QuantState& state, int layer, SmoothSummary* summary) {
    std::vector<int> done;
    for (int m : model.linear_modules(layer)) {
      if (!smoothing_.count(m)) continue;
      smoothing_.erase(m);
      const ModuleInfo& info = model.modules()[static_cast<size_t>(m)];
      Quantizer& in = *state.Get(m, QuantizerRole::kInput);
      // Back to per tensor whatever happens: the per-channel amax was for the statistics only.
      config::QuantizerAttributeConfig attrs = in.attrs();
      attrs.axis.reset();
      const std::vector<float> a = in.has_amax ? in.amax : std::vector<float>{};
      in.SetAttrs(std::move(attrs));
      if (a.empty()) {  // no token reached it (a routed expert): left to the export's checks, as max leaves it
        ++summary->no_amax;
        continue;
      }
      const int64_t rows = info.out_features, cols = info.in_features;
      QF_CHECK(static_cast<int64_t>(a.size()) == cols, "smoothquant: quantizer '{}' has {} per-channel amax values for "
               "{} input features", in.slot.name, a.size(), cols);
      QF_CHECK(cols > 1, "smoothquant: '{}' has only one input channel to smooth", info.name);
      Tensor w = model.LinearWeight(m).Clone();
      SmoothedInput sm = SmoothLinear(a, w.mutable_span<float>(), rows, cols, alpha_, model.CheckpointWeightDType(m),
                                      info.name);
      model.SetLinearWeight(m, std::move(w));
      in.MergeAmax({sm.input_amax}, {});
      in.pre_quant_scale = std::move(sm.pre_quant_scale);
      for (float v : in.pre_quant_scale) {
        summary->s_min = std::min(summary->s_min, v);
        summary->s_max = std::max(summary->s_max, v);
      }
      ++summary->smoothed;
      done.push_back(m);
    }
    summary->groups += ResmoothSharedInputs(model, state, done).sibling_groups;
    // The weight amax from the smoothed weights, as ModelOpt's max_calibrate of each weight quantizer alone
    // (the layer's other weights are unchanged: their amax comes out the same).
    if (!done.empty()) CalibrateWeightAmax(model, state, layer);
  }

  std::string Note(const SmoothSummary& s) const {
    std::string out = fmt::format("smoothquant (alpha {}): {} Linears smoothed", alpha_, s.smoothed);
    if (s.smoothed > 0) out += fmt::format(", pre_quant_scale in [{:.4g}, {:.4g}]", s.s_min, s.s_max);
    out += fmt::format("; {} sibling groups given one pre_quant_scale (weights re-smoothed)", s.groups);
    if (s.no_amax > 0) out += fmt::format("; {} not smoothed: no calibration token reached them", s.no_amax);
    if (s.skipped > 0) {
      std::string why;
      for (const auto& f : s.skipped_formats) why += (why.empty() ? "" : ", ") + f;
      out += fmt::format("; {} inputs not smoothed ({}): smoothquant smooths INT8 only", s.skipped, why);
    }
    return out;
  }

  const config::QuantizeConfig& quantize_config_;
  const config::AlgorithmConfig& algo_;
  const double alpha_;
  std::set<int> smoothing_;  // Linears whose input collects per-channel amax, until smoothed
};

}  // namespace

std::unique_ptr<CalibAlgorithm> MakeSmoothQuantAlgorithm(const config::QuantizeConfig& config,
                                                         const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<SmoothQuantAlgorithm, config::SmoothQuantCalibConfig>(config, algo);
}

}  // namespace qforge
