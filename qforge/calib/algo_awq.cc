// The awq_lite, awq_clip and awq_full calibration algorithms (spec §6.7), with ModelOpt 0.47's semantics; the
// per-Linear math is calib/awq.h.
//
// First max calibration (the KV and other activation amax, as ModelOpt's cache pass collects them). Then one pass
// over the data on the unquantized forward (every quantizer off, as ModelOpt runs its passes) gathers, per
// distinct Linear input (q/k/v and gate/up share theirs), the mean over batches of each batch's mean |x_j|, the
// per-channel max |x_j| (for a calibrated input quantizer) and the Gram matrices the searches' losses need
// (calib/awq.h: G = Σ_b X_bᵀ X_b / n_b, and for per-block clipping the blocks' Gram matrices of about
// max_tokens_per_batch tokens of each batch). Then for every Linear with an enabled weight quantizer:
//   awq_lite  for each alpha of the grid, s = AwqScale(a, w, alpha), the error of (x / s) · Q(W · s)ᵀ against
//             x · Wᵀ summed over batches (ModelOpt's search pass, from G); the first minimum's s then smooths
//             the Linear: its input gets pre_quant_scale 1 / s, W · s is written back in the checkpoint's dtype,
//             the weight amax is calibrated again, and a calibrated input gets the per-tensor amax
//             max_j a_j^max / s_j. A Linear no token reached (a routed expert) is max-calibrated with
//             pre_quant_scale 1.
//   awq_clip  per candidate ratio r (min_clip_ratio, +shrink_step, ..., 1) the weight quantized with amax A·r
//             (rounded to the weight's dtype, as ModelOpt holds it); NVFP4 with dynamic blocks (and per-tensor
//             weights) clip the per-tensor amax on the whole output's error, static blocks (INT4) each block
//             on its partial outputs over the subsampled tokens; inputs scaled by the pre_quant_scale awq_lite
//             set. The best ratio per group sets the weight amax; a calibrated input gets max_j of its smoothed
//             per-channel max (ModelOpt's awq_clip max-calibrates the smoothed input again).
//   awq_full  awq_lite, then awq_clip.
// Finally, what ModelOpt's export does before writing (calib/pre_quant_scale.h): NVFP4-AWQ o_proj / down_proj
// scales folded into v_proj / up_proj where the architecture allows it, the routed experts' scales averaged
// per role, siblings that read one input given one scale; the weights those steps change are calibrated
// again (plain max, as ModelOpt's export does).
// Whole model: the pass over every batch through the whole model; layer by layer (get_qdq_activations_from_
// prev_layer false, ModelOpt's default for awq): over the layer's kept inputs. Both give the same result.
// Memory: one f32 Gram matrix [in, in] per distinct Linear input of the layer (of the model, whole-model), on the
// host; the statistics are host math (a device backend's Linear inputs are downloaded for them).
//
// Differences from ModelOpt, on purpose: the losses come from Gram matrices, not from outputs rounded to the
// model's dtype (equal in exact arithmetic; with f32 compute the results agree with ModelOpt's to fp32 noise);
// its search pass runs with the KV-cache quantizers applied (calibrated by the cache pass), which the
// statistics pass does not; its whole-model awq_clip pass runs through the smoothed model, qforge's clip uses
// the original model's inputs scaled by the pre_quant_scale (as ModelOpt's layerwise mode); Linears whose
// input quantizer has an axis other than none / -1 are left out of the search with pre_quant_scale 1 and
// their input quantizer unchanged (ModelOpt collapses it to per tensor); a routed expert no token reached
// keeps its max amax in awq_clip (ModelOpt leaves its weight quantizer disabled).
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <memory>

#include "qforge/base/error.h"
#include "qforge/calib/algorithm.h"
#include "qforge/calib/awq.h"
#include "qforge/calib/layerwise.h"
#include "qforge/calib/local_hessian.h"
#include "qforge/calib/max_calib.h"
#include "qforge/calib/pre_quant_scale.h"
#include "qforge/calib/smoothquant.h"
#include "qforge/numerics/qdq.h"
#include "qforge/tensor/tensor.h"

namespace qforge {
namespace {

struct AwqParams {
  bool lite = false, clip = false;
  std::vector<float> alphas;       // awq_lite's grid
  std::vector<double> ratios;      // awq_clip's candidates
  int64_t max_tokens_per_batch = 64;
  std::string method;
};

// The statistics of one Linear input (shared by the Linears that read it).
struct InputStats {
  int64_t cols = 0;
  int64_t steps = 0;                    // batches (calls) with tokens
  std::vector<float> act_sum;           // [cols] Σ_b dtype(mean_t |x_tj|)
  std::vector<float> chan_amax;         // [cols] max |x_j| (when a reader's input is calibrated)
  std::vector<float> gram;              // [cols, cols] Σ_b X_bᵀ X_b / n_b, upper triangle
  std::map<int64_t, std::vector<float>> block_gram;  // per block size: [nb, block, block], subsampled tokens
};

// One Linear under AWQ.
struct AwqModule {
  int module = -1;
  int64_t rows = 0, cols = 0;
  int64_t block = 0;  // weight block along the input axis (0: none)
  DType wdtype = DType::kF32;
  DType act = DType::kF32;        // the forward's activations (the compute dtype)
  bool lite = true;               // takes part in awq_lite's search
  bool input_calibrated = false;  // its enabled input quantizer has a data-driven amax
  bool clip = false, per_tensor_clip = false;
  std::vector<float> weight_scale;  // [cols] awq_lite's salience of the weight
  std::shared_ptr<InputStats> stats;
};

DType ActDType(const Backend& be) { return be.compute_dtype() == ComputeDType::kBF16 ? DType::kBF16 : DType::kF32; }

// The quantized weight of `q` for w [rows, cols], with `amax` (empty: max calibration of w itself, as
// ModelOpt's weight quantizer without an amax computes it), rounded to dtype.
std::vector<float> QuantizeWeight(const Quantizer& q, std::span<const float> w, int64_t rows, int64_t cols,
                                  std::vector<float> amax, DType dtype, const HostQuantKernels* kernels) {
  const QuantSpec spec = q.spec();
  const std::vector<int64_t> shape = {rows, cols};
  if (amax.empty()) amax = ComputeAmax(spec, w, shape, q.slot.name, kernels);
  std::vector<float> out(w.size());
  FakeQuant(spec, w, shape, amax, out, std::nullopt, q.slot.name, kernels);
  RoundToDType(dtype, out);
  return out;
}

// The weight amax clipped by ratio r: ModelOpt holds a weight's amax in the weight's dtype, so A · r (an f32
// product) is rounded to it, for the search's candidates and for the result.
std::vector<float> ClipAmax(std::vector<float> amax, double r, DType dtype) {
  for (float& v : amax) v *= static_cast<float>(r);
  RoundToDType(dtype, amax);
  return amax;
}

// The statistics pass: read-only hooks that fill each AWQ Linear's InputStats (one per distinct input).
class AwqStatsHooks final : public ForwardHooks {
 public:
  AwqStatsHooks(std::map<int, AwqModule>& modules, const AwqParams& params, DType act)
      : modules_(modules), params_(params), act_(act) {}
  bool ModifiesActivations() const override { return false; }

  void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override {
    const int m[1] = {module};
    OnLinearInputs(be, m, x, rows, cols);
  }
  void OnLinearInputs(Backend& be, std::span<const int> readers, float* x, int64_t rows, int64_t cols) override {
    std::vector<AwqModule*> ms;
    for (int m : readers) {
      if (auto it = modules_.find(m); it != modules_.end()) ms.push_back(&it->second);
    }
    if (ms.empty() || rows == 0) return;
    std::span<const float> xs;
    if (be.host_accessible()) {
      xs = {x, static_cast<size_t>(rows * cols)};
    } else {  // the statistics are host math (a device pass of its own is left to do)
      host_.resize(static_cast<size_t>(rows * cols));
      be.Download(host_.data(), x, static_cast<int64_t>(host_.size() * sizeof(float)));
      xs = host_;
    }
    // The readers of one input share its statistics; the first reader's (module order) holds them.
    std::shared_ptr<InputStats>& st = stats_[ms[0]->module];
    if (!st) {
      st = std::make_shared<InputStats>();
      st->cols = cols;
      st->act_sum.assign(static_cast<size_t>(cols), 0.0f);
      st->gram.assign(static_cast<size_t>(cols * cols), 0.0f);
    }
    bool chan = false;
    std::vector<int64_t> blocks;
    for (AwqModule* am : ms) {
      am->stats = st;
      chan = chan || am->input_calibrated;
      if (am->clip && !am->per_tensor_clip && std::find(blocks.begin(), blocks.end(), am->block) == blocks.end()) {
        blocks.push_back(am->block);
      }
    }
    AccumulateAwqActScale(xs, rows, cols, act_, st->act_sum);
    AccumulateGram(xs, rows, cols, 1.0f / static_cast<float>(rows), st->gram);
    ++st->steps;
    if (chan) {
      if (st->chan_amax.empty()) st->chan_amax.assign(static_cast<size_t>(cols), 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < cols; ++j) st->chan_amax[j] = std::max(st->chan_amax[j], std::fabs(xs[r * cols + j]));
      }
    }
    if (!blocks.empty()) {  // awq_clip's per-block losses: about max_tokens_per_batch tokens of the batch
      const std::vector<int64_t> keep = AwqClipTokenRows(rows, params_.max_tokens_per_batch);
      std::vector<float> xt(keep.size() * static_cast<size_t>(cols));
      for (size_t t = 0; t < keep.size(); ++t) {
        std::copy_n(xs.data() + keep[t] * cols, cols, xt.data() + t * static_cast<size_t>(cols));
      }
      for (int64_t b : blocks) {
        std::vector<float>& g = st->block_gram[b];
        if (g.empty()) g.assign(static_cast<size_t>((cols + b - 1) / b * b * b), 0.0f);
        AccumulateBlockGram(xt, static_cast<int64_t>(keep.size()), cols, b, 1.0f / static_cast<float>(keep.size()), g);
      }
    }
  }

 private:
  std::map<int, AwqModule>& modules_;
  const AwqParams& params_;
  DType act_;
  std::map<int, std::shared_ptr<InputStats>> stats_;
  std::vector<float> host_;
};

// The weight block along the input axis of an AWQ weight quantizer (ModelOpt's _get_awq_quantizer_block_size:
// block_sizes[-1], else block_sizes[1]); 0 without blocks.
int64_t AwqBlockSize(const Quantizer& q) {
  const QuantSpec spec = q.spec();
  if (!spec.block) return 0;
  for (int axis : {-1, 1}) {
    for (const auto& [a, size] : spec.block->sizes) {
      if (a == axis && size) return *size;
    }
  }
  QF_FAIL("awq: quantizer '{}' has block sizes but none along the input axis (-1); AWQ needs blocks along it",
          q.slot.name);
}

struct AwqSummary {
  int smoothed = 0, max_fallback = 0, excluded = 0, clipped = 0, clip_untouched = 0;
  double alpha_sum = 0, ratio_sum = 0;
  int ratio_groups = 0;
  float s_min = INFINITY, s_max = 0;
  PreQuantScaleGroups groups;
  std::vector<std::string> fallback_names;
};

class AwqAlgorithm final : public CalibAlgorithm {
 public:
  AwqAlgorithm(const config::QuantizeConfig& config, const config::AlgorithmConfig& algo)
      : quantize_config_(config), algo_(algo) {
    params_.method = std::string(algo.method());
    if (const auto* c = algo.As<config::AwqLiteCalibConfig>()) {
      params_.lite = true;
      params_.alphas = AwqAlphaGrid(c->alpha_step);
      alpha_step_ = c->alpha_step;
    } else if (const auto* c = algo.As<config::AwqClipCalibConfig>()) {
      params_.clip = true;
      params_.ratios = AwqClipRatios(c->min_clip_ratio, c->shrink_step);
      params_.max_tokens_per_batch = c->max_tokens_per_batch;
    } else if (const auto* c = algo.As<config::AwqFullCalibConfig>()) {
      params_.lite = params_.clip = true;
      params_.alphas = AwqAlphaGrid(c->alpha_step);
      alpha_step_ = c->alpha_step;
      params_.ratios = AwqClipRatios(c->min_clip_ratio, c->shrink_step);
      params_.max_tokens_per_batch = c->max_tokens_per_batch;
    } else {
      QF_ASSERT(false, "AwqAlgorithm built for method '{}'", algo.method());
    }
  }

  const config::AlgorithmConfig& config() const override { return algo_; }
  // Statistics from data (ModelOpt asserts a forward loop); the weights change.
  CalibNeeds Needs(const QuantState&) const override { return CalibNeeds{true, true}; }

  CalibrateReport Run(ForwardModel& fm, QuantState& state, const std::function<CalibData()>& data,
                      const CalibrateOptions& options) override {
    AwqSummary summary;
    MaxRefinement refine;
    refine.reads_inputs = true;
    refine.mutates_weights = true;
    refine.layer = [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore& inputs) {
      Calibrate(f, s, {layer}, [&](ForwardHooks& h) { CaptureLayer(f, layer, inputs, h); }, &summary);
    };
    refine.whole = [&](ForwardModel& f, QuantState& s, const CalibData& calib) {
      QF_CHECK(!calib.samples.empty(), "{} needs calibration data: no calibration samples", params_.method);
      std::vector<int> layers;
      for (int l = -1; l < f.model().num_layers(); ++l) layers.push_back(l);
      const bool head = HasAwqModule(f.model(), s, -1);
      Calibrate(
          f, s, layers,
          [&](ForwardHooks& h) {
            CaptureForward(f, calib, options.batch_size, h, head, options.show_progress, params_.method);
          },
          &summary);
    };
    CalibrateReport report = RunMaxCalibration(*this, quantize_config_, fm, state, data, options, BaseOptions(), refine);
    report.max.notes.push_back(Note(summary));
    return report;
  }

  CalibrateReport Restore(ForwardModel& fm, QuantState& state, const std::filesystem::path& dir) override {
    // The decoder layers (weights, pre_quant_scale, amax) come from the checkpoint; the head is calibrated again
    // from the final hidden states.
    AwqSummary summary;
    return RestoreMaxCalibration(*this, fm, state, dir, BaseOptions(),
                                 [&](ForwardModel& f, QuantState& s, int layer, const ActivationStore& inputs) {
                                   Calibrate(f, s, {layer}, [&](ForwardHooks& h) { CaptureLayer(f, layer, inputs, h); },
                                             &summary);
                                 });
  }

 private:
  // ModelOpt's awq calibrates its activations with max_calibrate's defaults: the default shared-state groups.
  static MaxCalibOptions BaseOptions() {
    MaxCalibOptions mo;
    mo.shared_patterns = config::ResolveSharedPatterns(std::nullopt);
    return mo;
  }

  static bool HasAwqModule(const Model& model, const QuantState& state, int layer) {
    for (int m : model.linear_modules(layer)) {
      const Quantizer* w = state.Get(m, QuantizerRole::kWeight);
      if (w != nullptr && w->enabled()) return true;
    }
    return false;
  }

  // AWQ of the Linears of `layers`, with `pass` running one forward over the data with the given hooks.
  void Calibrate(ForwardModel& fm, QuantState& state, const std::vector<int>& layers,
                 const std::function<void(ForwardHooks&)>& pass, AwqSummary* summary) const {
    Model& model = fm.model();
    const HostQuantKernels* kernels = fm.backend().host_kernels();
    std::map<int, AwqModule> modules;
    for (int layer : layers) {
      for (int m : model.linear_modules(layer)) {
        const Quantizer* w = state.Get(m, QuantizerRole::kWeight);
        if (w == nullptr || !w->enabled()) continue;
        QF_CHECK(!w->sequential(), "{}: quantizer '{}' is sequential (W4A8 AWQ's INT4 then FP8); qforge cannot export "
                 "sequential weight quantizers yet, so AWQ refuses them", params_.method, w->slot.name);
        const ModuleInfo& info = model.modules()[static_cast<size_t>(m)];
        AwqModule am;
        am.module = m;
        am.rows = info.out_features;
        am.cols = info.in_features;
        am.block = AwqBlockSize(*w);
        am.wdtype = model.CheckpointWeightDType(m);
        am.act = ActDType(fm.backend());
        const Quantizer* in = state.Get(m, QuantizerRole::kInput);
        QF_CHECK(in == nullptr || in->pre_quant_scale.empty(), "{}: '{}' already has a pre_quant_scale (from an "
                 "earlier algorithm); AWQ smooths unsmoothed inputs", params_.method, info.name);
        if (in != nullptr && in->enabled()) {
          QF_CHECK(!in->sequential(), "{}: input quantizer '{}' is sequential; AWQ smooths single-stage inputs",
                   params_.method, in->slot.name);
          am.input_calibrated = in->NeedsCalibration() && !in->attrs().axis.has_value();
          if (in->attrs().axis.has_value()) {
            const auto& axis = in->attrs().axis->dims;
            am.lite = axis.size() == 1 && axis[0] == -1;
          }
        }
        am.lite = am.lite && params_.lite;
        if (am.lite) {
          const Tensor wt = model.LinearWeight(m);
          am.weight_scale = AwqWeightScale(wt.span<float>(), am.rows, am.cols, am.block, am.wdtype);
        }
        const QuantSpec spec = w->spec();
        am.clip = params_.clip && spec.block.has_value() && w->NeedsCalibration();  // ModelOpt: block weights only
        am.per_tensor_clip = am.clip && spec.block->dynamic && !spec.axis;
        modules.emplace(m, std::move(am));
      }
    }
    if (modules.empty()) return;
    {
      AwqStatsHooks hooks(modules, params_, ActDType(fm.backend()));
      pass(hooks);
    }
    for (auto& [m, am] : modules) {
      if (params_.lite) Lite(model, state, am, kernels, summary);
      if (params_.clip) Clip(model, state, am, kernels, summary);
    }
    for (int layer : layers) {
      PreQuantScaleGroups g = FoldPreQuantScalesIntoProducers(model, state, layer);
      g.Merge(ResmoothExpertPreQuantScales(model, state, layer));
      g.Merge(ResmoothSharedInputs(model, state, model.linear_modules(layer)));
      CalibrateWeightAmaxOf(model, state, g.changed, kernels);
      summary->groups.Merge(g);
    }
  }

  // awq_lite's search and smoothing of one Linear.
  void Lite(Model& model, QuantState& state, const AwqModule& am, const HostQuantKernels* kernels,
            AwqSummary* summary) const {
    const ModuleInfo& info = model.modules()[static_cast<size_t>(am.module)];
    Quantizer* in = state.Get(am.module, QuantizerRole::kInput);
    const Quantizer& wq = *state.Get(am.module, QuantizerRole::kWeight);
    const InputStats* st = am.stats.get();
    std::vector<float> act;
    bool usable = am.lite && st != nullptr && st->steps > 0;
    if (usable) {
      act = st->act_sum;
      for (float& v : act) v /= static_cast<float>(st->steps);
      for (float v : act) usable = usable && !std::isnan(v);
      for (float v : am.weight_scale) usable = usable && !std::isnan(v);
    }
    if (usable) {
      const Tensor w0 = model.LinearWeight(am.module);
      const std::span<const float> w = w0.span<float>();
      // Candidate alpha: the input gets 1 / s and the weight quantizer s (both in the weight's dtype, as ModelOpt
      // sets them); the Linear's weight change is D = Q(dtype(W · s)) · diag(1 / s) − W.
      size_t best = 0;
      double best_loss = 0;
      std::vector<float> d(w.size());
      for (size_t a = 0; a < params_.alphas.size(); ++a) {
        const std::vector<float> s = AwqScale(act, am.weight_scale, params_.alphas[a]);
        std::vector<float> sw(s), pin(s.size());
        RoundToDType(am.wdtype, sw);
        for (size_t j = 0; j < s.size(); ++j) pin[j] = 1.0f / s[j];
        RoundToDType(am.wdtype, pin);
        std::vector<float> ws(w.begin(), w.end());
        for (int64_t r = 0; r < am.rows; ++r) {
          for (int64_t j = 0; j < am.cols; ++j) ws[r * am.cols + j] *= sw[j];
        }
        RoundToDType(am.wdtype, ws);
        const std::vector<float> q = QuantizeWeight(wq, ws, am.rows, am.cols, {}, am.wdtype, kernels);
        for (int64_t r = 0; r < am.rows; ++r) {
          for (int64_t j = 0; j < am.cols; ++j) d[r * am.cols + j] = q[r * am.cols + j] * pin[j] - w[r * am.cols + j];
        }
        const double loss = AwqGramLoss(d, am.rows, am.cols, st->gram);
        if (a == 0 || loss < best_loss) {  // the first minimum
          best = a;
          best_loss = loss;
        }
      }
      const std::vector<float> s = AwqScale(act, am.weight_scale, params_.alphas[best]);
      std::vector<float> pqs(s.size());
      for (size_t j = 0; j < s.size(); ++j) pqs[j] = 1.0f / s[j];  // ModelOpt: 1.0 / best_scale, f32
      Tensor wn = w0.Clone();
      const SmoothedInput sm = ApplyPreQuantScale(pqs, am.input_calibrated ? st->chan_amax : std::vector<float>{},
                                                  wn.mutable_span<float>(), am.rows, am.cols, am.wdtype);
      model.SetLinearWeight(am.module, std::move(wn));
      if (in != nullptr) {
        if (am.input_calibrated && !st->chan_amax.empty()) {
          in->ResetAmax();
          in->MergeAmax({sm.input_amax}, {});
        }
        in->pre_quant_scale = sm.pre_quant_scale;
      }
      ++summary->smoothed;
      summary->alpha_sum += params_.alphas[best];
      for (float v : sm.pre_quant_scale) {
        summary->s_min = std::min(summary->s_min, v);
        summary->s_max = std::max(summary->s_max, v);
      }
    } else {
      // No token reached it (a routed expert), NaN statistics, or an input axis AWQ cannot smooth: max
      // calibration of the weight (below) and a neutral pre_quant_scale, so that its group exports one format.
      if (in != nullptr) in->pre_quant_scale.assign(static_cast<size_t>(am.cols), 1.0f);
      if (!am.lite) {
        ++summary->excluded;
      } else {
        ++summary->max_fallback;
        if (summary->fallback_names.size() < 3) summary->fallback_names.push_back(info.name);
      }
    }
    const int m = am.module;
    CalibrateWeightAmaxOf(model, state, std::span<const int>(&m, 1), kernels);
  }

  // awq_clip's search of one Linear's weight amax (after awq_lite, on its smoothed weight and inputs).
  void Clip(Model& model, QuantState& state, const AwqModule& am, const HostQuantKernels* kernels,
            AwqSummary* summary) const {
    const InputStats* st = am.stats.get();
    Quantizer* in = state.Get(am.module, QuantizerRole::kInput);
    // The inputs the clip sees are x · pre_quant_scale (none: 1).
    std::vector<float> p(static_cast<size_t>(am.cols), 1.0f);
    if (in != nullptr && !in->pre_quant_scale.empty()) p = in->pre_quant_scale;
    if (am.input_calibrated && st != nullptr && !st->chan_amax.empty()) {
      // ModelOpt's awq_clip max-calibrates the smoothed input again: max |x · p| over its pass, which is
      // max_j dtype(max_t |x_tj| · p_j) (the product rounded to the activations' dtype keeps the order).
      std::vector<float> v(st->chan_amax);
      for (size_t j = 0; j < v.size(); ++j) v[j] *= p[j];
      RoundToDType(am.act, v);
      in->ResetAmax();
      in->MergeAmax({*std::max_element(v.begin(), v.end())}, {});
    }
    if (!am.clip) return;
    Quantizer& q = *state.Get(am.module, QuantizerRole::kWeight);
    const QuantSpec spec = q.spec();
    const Tensor w0 = model.LinearWeight(am.module);
    const std::span<const float> w = w0.span<float>();
    const std::vector<int64_t> shape = {am.rows, am.cols};
    const std::vector<float> w_amax = ComputeAmax(spec, w, shape, q.slot.name, kernels);
    const std::vector<int64_t> amax_shape = AmaxShape(spec, shape).value_or(std::vector<int64_t>{});
    const size_t groups = am.per_tensor_clip ? 1 : static_cast<size_t>(am.rows * ((am.cols + am.block - 1) / am.block));
    QF_ASSERT(w_amax.size() == groups, "awq_clip: '{}' has {} amax values for {} clip groups", q.slot.name,
              w_amax.size(), groups);
    std::vector<float> best(w_amax);
    if (st != nullptr && st->steps > 0) {
      std::vector<std::vector<float>> loss(params_.ratios.size(), std::vector<float>(groups, 0.0f));
      std::vector<float> d(w.size());
      for (size_t i = 0; i < params_.ratios.size(); ++i) {
        const std::vector<float> qw =
            QuantizeWeight(q, w, am.rows, am.cols, ClipAmax(w_amax, params_.ratios[i], am.wdtype), am.wdtype, kernels);
        for (int64_t r = 0; r < am.rows; ++r) {
          for (int64_t j = 0; j < am.cols; ++j) d[r * am.cols + j] = (qw[r * am.cols + j] - w[r * am.cols + j]) * p[j];
        }
        if (am.per_tensor_clip) {
          loss[i][0] = static_cast<float>(AwqGramLoss(d, am.rows, am.cols, st->gram));
        } else {
          AccumulateAwqBlockGramLoss(d, am.rows, am.cols, am.block, st->block_gram.at(am.block), loss[i]);
        }
      }
      for (size_t g = 0; g < groups; ++g) {
        float best_loss = std::numeric_limits<float>::infinity();
        size_t best_i = params_.ratios.size() - 1;  // 1.0 (all losses NaN: no clipping)
        for (size_t i = 0; i < params_.ratios.size(); ++i) {
          if (loss[i][g] < best_loss) {  // strictly smaller: the first minimum in ratio order
            best_loss = loss[i][g];
            best_i = i;
          }
        }
        best[g] = ClipAmax(std::vector<float>{w_amax[g]}, params_.ratios[best_i], am.wdtype)[0];
        summary->ratio_sum += params_.ratios[best_i];
        ++summary->ratio_groups;
      }
      ++summary->clipped;
    } else {
      ++summary->clip_untouched;
    }
    q.amax.clear();
    q.has_amax = false;
    q.global_amax.reset();
    q.MergeAmax(best, amax_shape);
  }

  std::string Note(const AwqSummary& s) const {
    std::string out = params_.method + ":";
    if (params_.lite) {
      out += fmt::format(" {} Linears smoothed (alpha_step {}, mean alpha {:.3f}", s.smoothed, alpha_step_,
                         s.smoothed > 0 ? s.alpha_sum / s.smoothed : 0.0);
      if (s.smoothed > 0) out += fmt::format(", pre_quant_scale in [{:.4g}, {:.4g}]", s.s_min, s.s_max);
      out += ")";
      if (s.max_fallback > 0) {
        std::string names;
        for (const auto& n : s.fallback_names) names += (names.empty() ? "" : ", ") + n;
        out += fmt::format("; {} max-calibrated with pre_quant_scale 1 because no calibration token reached them "
                           "(e.g. {})", s.max_fallback, names);
      }
      if (s.excluded > 0) {
        out += fmt::format("; {} left unsmoothed (pre_quant_scale 1): their input quantizer has a per-channel axis "
                           "other than -1", s.excluded);
      }
      out += ";";
    }
    if (params_.clip) {
      out += fmt::format(" {} weights clipped (mean clip ratio {:.3f} over {} groups)", s.clipped,
                         s.ratio_groups > 0 ? s.ratio_sum / s.ratio_groups : 1.0, s.ratio_groups);
      if (s.clip_untouched > 0) out += fmt::format(", {} kept their max amax (no token)", s.clip_untouched);
      out += ";";
    }
    out += fmt::format(" {} pre_quant_scale folded into the producing Linear (ModelOpt's export fusion), {} not "
                       "foldable (grouped heads or a bias); {} expert groups and {} sibling groups given one "
                       "pre_quant_scale (weights re-smoothed)",
                       s.groups.folded, s.groups.fold_skipped, s.groups.expert_groups, s.groups.sibling_groups);
    return out;
  }

  const config::QuantizeConfig& quantize_config_;
  const config::AlgorithmConfig& algo_;
  AwqParams params_;
  double alpha_step_ = 0;
};

}  // namespace

std::unique_ptr<CalibAlgorithm> MakeAwqLiteAlgorithm(const config::QuantizeConfig& config,
                                                     const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<AwqAlgorithm, config::AwqLiteCalibConfig>(config, algo);
}
std::unique_ptr<CalibAlgorithm> MakeAwqClipAlgorithm(const config::QuantizeConfig& config,
                                                     const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<AwqAlgorithm, config::AwqClipCalibConfig>(config, algo);
}
std::unique_ptr<CalibAlgorithm> MakeAwqFullAlgorithm(const config::QuantizeConfig& config,
                                                     const config::AlgorithmConfig& algo) {
  return MakeAlgorithmOf<AwqAlgorithm, config::AwqFullCalibConfig>(config, algo);
}

}  // namespace qforge
