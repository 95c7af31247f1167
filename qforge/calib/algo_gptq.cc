// The `gptq` calibration algorithm (spec §6.9): max calibration (with the promotion of static NVFP4 weights);
// a Hessian forward with the activation quantizers applied and the weights unquantized, accumulating every
// quantized Linear's H = (2 / tokens) Σ x xᵀ of its input after the input quantizer (calib/local_hessian.h's
// capture, whole rows); then GPTQ's blockwise update of each weight with the max step's fixed scales
// (calib/gptq.h). The updated weights, rounded to the checkpoint's dtype as ModelOpt writes them back, become
// Model overrides: the export packs them, layerwise checkpoints store them. qforge extensions: act_order, and
// scale_algorithm mse or local_hessian (the fixed scales from that weight search after the max step instead of
// max's).
// Whole model: one Hessian forward over every batch after max calibration (every layer from the original
// activations, as ModelOpt's non-layerwise mode). Layer by layer (the recipes' mode): each layer's Hessians
// come from its kept inputs after its max step, and get_qdq_activations_from_prev_layer (true by default for
// gptq) gives the next layer the outputs of this one quantized with its updated weights.
#include <map>
#include <memory>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/progress.h"
#include "qforge/calib/algorithm.h"
#include "qforge/calib/gptq.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/local_hessian.h"
#include "qforge/calib/max_calib.h"
#include "qforge/calib/weight_search.h"

namespace qforge {
namespace {

struct GptqSummary {
  int updated = 0, identity = 0, no_tokens = 0;
  int64_t dead_columns = 0;
  double error_sum = 0, error_max = 0;
  std::string worst;
  void Add(const std::string& name, const GptqStats& s, bool had_tokens) {
    ++updated;
    identity += s.identity_fallback ? 1 : 0;
    no_tokens += had_tokens ? 0 : 1;
    dead_columns += s.dead_columns;
    error_sum += s.relative_error;
    if (s.relative_error >= error_max) {
      error_max = s.relative_error;
      worst = name;
    }
  }
  std::string Note(const config::GptqCalibConfig& g, bool act_order) const {
    return fmt::format("gptq: {} weights updated (perc_damp {}, block_size {}{}); Hessian-weighted relative error "
                       "mean {:.3e}, max {:.3e} ({}); {} with a Hessian that was not positive definite (identity, "
                       "plain rounding), {} that no token reached, {} dead input columns (the export's weight error "
                       "below is against the updated weights)",
                       updated, g.perc_damp, g.block_size, act_order ? ", act_order" : "",
                       updated > 0 ? error_sum / updated : 0.0, error_max, worst.empty() ? "-" : worst, identity,
                       no_tokens, dead_columns);
  }
};

class GptqAlgorithm final : public CalibAlgorithm {
 public:
  GptqAlgorithm(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo)
      : quantize_config_(config), algo_(algo), g_(*algo.As<config::GptqCalibConfig>()) {
    options_.perc_damp = g_.perc_damp;
    options_.block_size = g_.block_size;
    options_.act_order = g_.act_order;
    // scale_algorithm (qforge extension): max, or mse's or local_hessian's weight search after the max step.
    if (g_.scale_algorithm && g_.scale_algorithm->config) {
      const config::AlgorithmConfig& sa = *g_.scale_algorithm->config;
      QF_CHECK(sa.method() == "max" || sa.method() == "mse" || sa.method() == "local_hessian",
               "algorithm.scale_algorithm: gptq takes its fixed weight scales from 'max', 'mse' or 'local_hessian', "
               "not '{}'", sa.method());
      if (const auto* mse = sa.As<config::MseCalibConfig>()) {
        mse_ = mse;
        search_.fp8_scale_sweep = mse->fp8_scale_sweep;
        search_.multipliers = MseMultipliers(mse->start_multiplier, mse->stop_multiplier, mse->step_size);
      }
      if (const auto* lh = sa.As<config::LocalHessianCalibConfig>()) {
        lh_ = lh;
        search_.fp8_scale_sweep = lh->fp8_scale_sweep;
        search_.multipliers = MseMultipliers(lh->start_multiplier, lh->stop_multiplier, lh->step_size);
      }
    }
  }

  const config::AlgorithmConfig& config() const override { return algo_; }

  // The Hessians come from data whatever the activation quantizers need; the weights change.
  CalibNeeds Needs(const QuantState&) const override { return CalibNeeds{true, true}; }

  CalibrateReport Run(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                      const CalibrateOptions& options) override {
    Model& model = fm.model();
    GptqSummary summary;
    WeightSearchOptions search = search_;
    if (!fm.backend().host_accessible()) {  // mse's FP8 sweep on the device, as mse runs it
      search.device_sweep = [&fm](int module, std::span<const float> scales) { return fm.SweepNvfp4Weight(module, scales); };
    }
    WeightSearchStats scale_stats;
    int with_hessian = 0;
    MaxRefinement refine;
    refine.reads_inputs = true;
    refine.mutates_weights = true;
    refine.layer = [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore& inputs) {
      scale_stats.Merge(ScalesOfLayer(f, s, layer, inputs, search, &with_hessian));
      RefineLayer(f, s, layer, inputs, &summary);
    };
    refine.whole = [&](ForwardModel& f, QuantState& s, const CalibData& calib) {
      QF_CHECK(!calib.samples.empty(), "gptq needs calibration data: no calibration samples");
      if (lh_ != nullptr) {  // local_hessian's own capture (inputs before their quantizer) over every batch
        scale_stats.Merge(LocalHessianRefineWhole(f, s, calib, options.batch_size, lh_->block_size, search,
                                                  options.show_progress, "gptq scale_algorithm local_hessian",
                                                  &with_hessian));
      } else if (mse_ != nullptr) {
        for (int layer = -1; layer < model.num_layers(); ++layer) {
          scale_stats.Merge(SearchLayerWeightAmax(model, s, layer, search, f.backend().host_kernels()));
        }
      }
      HessianCaptureHooks hooks(f, s, UpdatedLinears(model, s, std::nullopt), 0, FakeQuantHooks::FromState(model, s),
                                /*after_quant=*/true);
      CaptureForward(f, calib, options.batch_size, hooks, HeadUpdated(model, s), options.show_progress, "gptq");
      for (int layer = -1; layer < model.num_layers(); ++layer) Update(model, s, layer, hooks, &summary, f);
    };
    CalibrateReport report = RunMaxCalibration(*this, quantize_config_, fm, state, data, options, BaseOptions(), refine);
    if (mse_ != nullptr) report.max.notes.push_back(scale_stats.Summary("gptq scale_algorithm mse", search_));
    if (lh_ != nullptr) {
      report.max.notes.push_back(scale_stats.Summary("gptq scale_algorithm local_hessian", search_) +
                                 fmt::format("; {} with a Hessian-weighted loss (block {}), the others plain MSE",
                                             with_hessian, lh_->block_size));
    }
    report.max.notes.push_back(summary.Note(g_, options_.act_order));
    return report;
  }

  CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) override {
    GptqSummary summary;
    // The decoder layers' weights come from the checkpoint; the head is calibrated again from the final hidden
    // states, so its update runs again too.
    return RestoreMaxCalibration(*this, fm, state, dir, BaseOptions(),
                                 [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore& inputs) {
                                   int with_hessian = 0;
                                   (void)ScalesOfLayer(f, s, layer, inputs, search_, &with_hessian);
                                   RefineLayer(f, s, layer, inputs, &summary);
                                 });
  }

 private:
  // ModelOpt's gptq runs max_calibrate with its defaults: the default shared-state groups (an mse or
  // local_hessian scale_algorithm's own shared_states where it gives them).
  MaxCalibOptions BaseOptions() const {
    MaxCalibOptions mo;
    mo.shared_patterns = config::ResolveSharedPatterns(mse_ != nullptr ? mse_->shared_states
                                                       : lh_ != nullptr ? lh_->shared_states
                                                                        : std::nullopt);
    return mo;
  }

  // scale_algorithm on one layer (-1: the head) after its max step: mse's search, or local_hessian's on the
  // layer's inputs. Nothing for max.
  WeightSearchStats ScalesOfLayer(ForwardModel& f, QuantState& s, int layer, const ActivationStore& inputs,
                                  const WeightSearchOptions& search, int* with_hessian) const {
    if (mse_ != nullptr) return SearchLayerWeightAmax(f.model(), s, layer, search, f.backend().host_kernels());
    if (lh_ != nullptr) return LocalHessianRefineLayer(f, s, layer, inputs, lh_->block_size, search, with_hessian);
    return {};
  }

  // The Linears of `layer` (every layer: nullopt) whose weight quantizer is enabled.
  static std::vector<int> UpdatedLinears(const Model& model, const QuantState& state, std::optional<int> layer) {
    std::vector<int> out;
    for (int m : layer ? model.linear_modules(*layer) : model.linear_modules()) {
      const Quantizer* q = state.Get(m, QuantizerRole::kWeight);
      if (q != nullptr && q->enabled()) out.push_back(m);
    }
    return out;
  }

  static bool HeadUpdated(const Model& model, const QuantState& state) {
    const Quantizer* q = state.Get(model.lm_head_module(), QuantizerRole::kWeight);
    return q != nullptr && q->enabled();
  }

  // One layer's Hessian pass on its inputs (the head, -1: through the final norm and lm_head) and its update.
  void RefineLayer(ForwardModel& f, QuantState& s, int layer, const ActivationStore& inputs,
                   GptqSummary* summary) const {
    const Model& model = f.model();
    const std::vector<int> linears = UpdatedLinears(model, s, layer);
    if (linears.empty()) return;
    HessianCaptureHooks hooks(f, s, linears, 0, FakeQuantHooks::FromState(model, s), /*after_quant=*/true);
    CaptureLayer(f, layer, inputs, hooks);
    Update(f.model(), s, layer, hooks, summary, f);
  }

  // GPTQ of every updated Linear of `layer` with its captured Hessian.
  void Update(Model& model, const QuantState& state, int layer, const HessianCaptureHooks& hooks,
              GptqSummary* summary, ForwardModel& f) const {
    for (int m : UpdatedLinears(model, state, layer)) {
      const ModuleInfo& info = model.modules()[static_cast<size_t>(m)];
      const Quantizer& q = *state.Get(m, QuantizerRole::kWeight);
      QF_CHECK(!q.sequential(), "gptq: quantizer '{}' is sequential (multi-stage); GPTQ updates a weight against one "
               "quantizer", q.slot.name);
      const int64_t rows = info.out_features, cols = info.in_features;
      std::vector<float> h = hooks.NormalizedHessian(m, 2.0f);
      const bool had_tokens = !h.empty();
      // No token (a routed expert nobody chose): a zero Hessian, as ModelOpt's; the damped matrix is then not
      // positive definite, and the update is plain rounding with the fixed scales.
      if (h.empty()) h.assign(static_cast<size_t>(cols * cols), 0.0f);
      const WeightColumnQuantizer wq(q, rows, cols, f.backend().host_kernels());
      Tensor w = model.LinearWeight(m).Clone();
      const GptqStats st = GptqUpdate(w.mutable_span<float>(), rows, cols, h, wq, options_);
      // Written back in the checkpoint's dtype, as ModelOpt's module.weight.data = weight.to(dtype).
      RoundToDType(model.CheckpointWeightDType(m), w.mutable_span<float>());
      model.SetLinearWeight(m, std::move(w));
      summary->Add(info.name, st, had_tokens);
    }
  }

  const config::QuantizeConfig& quantize_config_;
  const config::AlgorithmConfig& algo_;
  const config::GptqCalibConfig& g_;
  GptqOptions options_;
  const config::MseCalibConfig* mse_ = nullptr;  // scale_algorithm mse
  const config::LocalHessianCalibConfig* lh_ = nullptr;  // scale_algorithm local_hessian
  WeightSearchOptions search_;                    // its search
};

}  // namespace

std::unique_ptr<CalibAlgorithm> MakeGptqAlgorithm(const config::QuantizeConfig& config,
                                                  const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<GptqAlgorithm, config::GptqCalibConfig>(config, algo);
}

}  // namespace qforge
