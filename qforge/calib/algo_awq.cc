// The awq_lite, awq_clip and awq_full calibration algorithms (spec §6.7), with ModelOpt 0.47's semantics; the
// per-Linear math is calib/awq.h.
//
// First max calibration (the KV and other activation amax, as ModelOpt's cache pass collects them). Then, for
// every Linear with an enabled weight quantizer, on the unquantized forward (every quantizer off, as ModelOpt
// runs both of its passes):
//   awq_lite  a cache pass: a_j = the mean over batches of each batch's mean |x_j| (and, for a calibrated
//             input quantizer, the per-channel max |x_j|); a search pass: for each alpha of the grid,
//             s = AwqScale(a, w, alpha), the batch's output (x / s) · Q(W · s)ᵀ against x · Wᵀ, squared error
//             summed over batches; the first minimum's s then smooths the Linear: its input gets
//             pre_quant_scale 1 / s, W · s is written back in the checkpoint's dtype, the weight amax is
//             calibrated again, and a calibrated input gets the per-tensor amax max_j a_j^max / s_j. A Linear
//             no token reached (a routed expert) is max-calibrated with pre_quant_scale 1.
//   awq_clip  one pass with the (smoothed) weights: per candidate ratio r (min_clip_ratio, +shrink_step, ...,
//             1) the weight quantized with amax A·r; NVFP4 with dynamic blocks (and per-tensor weights) clip
//             the per-tensor amax on the whole output's squared error; static blocks (INT4) clip each block
//             on its partial output over about max_tokens_per_batch tokens of each batch. The best ratio per
//             group sets the weight amax. A calibrated input gets the max of its smoothed input again.
//   awq_full  awq_lite, then awq_clip.
// Finally, what ModelOpt's export does before writing (calib/pre_quant_scale.h): NVFP4-AWQ o_proj / down_proj
// scales folded into v_proj / up_proj where the architecture allows it, the routed experts' scales averaged
// per role, siblings that read one input given one scale; the weights those steps change are calibrated
// again (plain max, as ModelOpt's export does).
// Whole model: every pass over every batch through the whole model. Layer by layer (get_qdq_activations_from_
// prev_layer false, ModelOpt's default for awq): each pass over the layer's kept inputs.
//
// Differences from ModelOpt, on purpose: its search pass runs with the KV-cache quantizers applied (they were
// calibrated by the cache pass), which qforge's search pass does not (the Linears' inputs after attention
// differ by the KV quantization only); Linears whose input quantizer has an axis other than none / -1 are
// left out of the search with pre_quant_scale 1 and their input quantizer unchanged (ModelOpt collapses it to
// per tensor); a routed expert no token reached keeps its max amax in awq_clip (ModelOpt leaves its weight
// quantizer disabled).
#include <cblas.h>
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

enum class Stage : uint8_t { kCache, kSearch, kClip };

struct AwqParams {
  bool lite = false, clip = false;
  std::vector<float> alphas;       // awq_lite's grid
  std::vector<double> ratios;      // awq_clip's candidates
  int64_t max_tokens_per_batch = 64;
  std::string method;
};

// A candidate weight of a search: the quantized weight (dtype values) and, for awq_lite, the input's scale.
struct Candidate {
  std::vector<float> pin;  // [cols] 1 / s in the weight's dtype (awq_lite)
  std::vector<float> wq;   // [rows, cols]
};

// One Linear under AWQ.
struct AwqModule {
  int module = -1;
  int64_t rows = 0, cols = 0;
  int64_t block = 0;  // weight block along the input axis (0: none)
  DType wdtype = DType::kF32;
  bool lite = true;           // takes part in awq_lite's search
  bool input_calibrated = false;  // its enabled input quantizer has a data-driven amax
  std::vector<float> weight_scale, act_scale, chan_amax;  // [cols]
  int64_t cache_steps = 0, search_steps = 0;
  std::vector<float> lite_loss;  // per alpha
  // awq_clip
  bool clip = false, per_tensor_clip = false;
  std::vector<float> w_amax;       // the weight amax before clipping (AmaxShape order)
  std::vector<int64_t> amax_shape;
  std::vector<std::vector<float>> clip_loss;  // per ratio: [1] or [rows * blocks]
  int64_t clip_calls = 0;
  float clip_input_amax = 0;
  bool clip_input_seen = false;
  std::vector<Candidate> candidates;  // per alpha or ratio, built on first use
  std::vector<float> bias;            // [rows] or empty
};

// y [m, n] = x [m, k] · w [n, k]ᵀ (+ bias), rounded to `dtype`.
void HostLinear(const float* x, int64_t m, const float* w, int64_t n, int64_t k, const std::vector<float>& bias,
                DType dtype, std::vector<float>& y) {
  y.resize(static_cast<size_t>(m * n));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
              1.0f, x, static_cast<int>(k), w, static_cast<int>(k), 0.0f, y.data(), static_cast<int>(n));
  if (!bias.empty()) {
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t c = 0; c < n; ++c) y[r * n + c] += bias[c];
    }
  }
  RoundToDType(dtype, y);
}

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

class AwqHooks final : public ForwardHooks {
 public:
  AwqHooks(ForwardModel& fm, const QuantState& state, std::map<int, AwqModule>& modules, Stage stage,
           const AwqParams& params)
      : fm_(fm), state_(state), modules_(modules), stage_(stage), params_(params), act_(ActDType(fm.backend())) {
    if (stage_ != Stage::kClip) return;
    for (auto& [m, am] : modules_) {  // the smoothed inputs the forward applies
      const Quantizer* in = state.Get(m, QuantizerRole::kInput);
      if (in != nullptr && !in->pre_quant_scale.empty()) {
        pqs_[m] = fm.backend().AllocCopy(in->pre_quant_scale.data(),
                                         static_cast<int64_t>(in->pre_quant_scale.size() * sizeof(float)));
      }
    }
  }
  // awq_clip's pass scales the inputs of smoothed Linears (their weights are smoothed); the others only read.
  bool ModifiesActivations() const override { return stage_ == Stage::kClip; }

  void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override {
    auto it = modules_.find(module);
    if (it == modules_.end() || rows == 0) return;
    AwqModule& am = it->second;
    if (auto p = pqs_.find(module); p != pqs_.end()) be.ScaleColumns(x, p->second.as<const float>(), rows, cols);
    std::span<const float> xs;
    if (be.host_accessible()) {
      xs = {x, static_cast<size_t>(rows * cols)};
    } else {
      host_.resize(static_cast<size_t>(rows * cols));
      be.Download(host_.data(), x, static_cast<int64_t>(host_.size() * sizeof(float)));
      xs = host_;
    }
    switch (stage_) {
      case Stage::kCache: Cache(am, xs, rows); break;
      case Stage::kSearch: Search(am, xs, rows); break;
      case Stage::kClip: Clip(am, xs, rows); break;
    }
  }

 private:
  void Cache(AwqModule& am, std::span<const float> x, int64_t rows) {
    if (!am.lite) return;
    if (am.act_scale.empty()) am.act_scale.assign(static_cast<size_t>(am.cols), 0.0f);
    AccumulateAwqActScale(x, rows, am.cols, act_, am.act_scale);
    ++am.cache_steps;
    if (am.input_calibrated) {
      if (am.chan_amax.empty()) am.chan_amax.assign(static_cast<size_t>(am.cols), 0.0f);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < am.cols; ++j) am.chan_amax[j] = std::max(am.chan_amax[j], std::fabs(x[r * am.cols + j]));
      }
    }
  }

  void Search(AwqModule& am, std::span<const float> x, int64_t rows) {
    if (!am.lite) return;
    const Quantizer& wq = *state_.Get(am.module, QuantizerRole::kWeight);
    const Tensor w = fm_.model().LinearWeight(am.module);
    const std::span<const float> wv = w.span<float>();
    if (am.candidates.empty()) {  // the grid's weights, batch-independent: built once, kept for the pass
      for (float alpha : params_.alphas) {
        Candidate c;
        const std::vector<float> s = AwqScale(am.act_scale, am.weight_scale, alpha);
        c.pin.resize(s.size());
        std::vector<float> sw(s);  // the weight quantizer's pre_quant_scale s, in the weight's dtype
        RoundToDType(am.wdtype, sw);
        for (size_t j = 0; j < s.size(); ++j) c.pin[j] = 1.0f / s[j];
        RoundToDType(am.wdtype, c.pin);
        std::vector<float> ws(wv.begin(), wv.end());
        for (int64_t r = 0; r < am.rows; ++r) {
          for (int64_t j = 0; j < am.cols; ++j) ws[r * am.cols + j] *= sw[j];
        }
        RoundToDType(am.wdtype, ws);
        c.wq = QuantizeWeight(wq, ws, am.rows, am.cols, {}, am.wdtype, fm_.backend().host_kernels());
        am.candidates.push_back(std::move(c));
      }
      am.lite_loss.assign(params_.alphas.size(), 0.0f);
    }
    HostLinear(x.data(), rows, wv.data(), am.rows, am.cols, am.bias, act_, ref_);
    std::vector<float> xs(x.size());
    for (size_t a = 0; a < am.candidates.size(); ++a) {
      const Candidate& c = am.candidates[a];
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t j = 0; j < am.cols; ++j) xs[r * am.cols + j] = x[r * am.cols + j] * c.pin[j];
      }
      RoundToDType(act_, xs);
      HostLinear(xs.data(), rows, c.wq.data(), am.rows, am.cols, am.bias, act_, out_);
      am.lite_loss[a] += AwqMeanSquaredError(out_, ref_, act_);
    }
    ++am.search_steps;
  }

  void Clip(AwqModule& am, std::span<const float> x, int64_t rows) {
    if (am.input_calibrated) {
      for (float v : x) am.clip_input_amax = std::max(am.clip_input_amax, std::fabs(v));
      am.clip_input_seen = true;
    }
    if (!am.clip) return;
    const Quantizer& wq = *state_.Get(am.module, QuantizerRole::kWeight);
    const Tensor w = fm_.model().LinearWeight(am.module);
    const std::span<const float> wv = w.span<float>();
    if (am.candidates.empty()) {  // the ratios' weights, built once, kept for the pass
      for (double r : params_.ratios) {
        std::vector<float> amax = ClipAmax(am.w_amax, r, am.wdtype);
        Candidate c;
        c.wq = QuantizeWeight(wq, wv, am.rows, am.cols, amax, am.wdtype, fm_.backend().host_kernels());
        am.candidates.push_back(std::move(c));
      }
    }
    ++am.clip_calls;
    if (am.per_tensor_clip) {  // the whole output, all tokens (ModelOpt: inputs @ W.T, no bias)
      HostLinear(x.data(), rows, wv.data(), am.rows, am.cols, {}, act_, ref_);
      for (size_t i = 0; i < am.candidates.size(); ++i) {
        HostLinear(x.data(), rows, am.candidates[i].wq.data(), am.rows, am.cols, {}, act_, out_);
        am.clip_loss[i][0] += AwqMeanSquaredError(out_, ref_, act_);
      }
      return;
    }
    const std::vector<int64_t> keep = AwqClipTokenRows(rows, params_.max_tokens_per_batch);
    std::vector<float> xt(keep.size() * static_cast<size_t>(am.cols));
    for (size_t t = 0; t < keep.size(); ++t) {
      std::copy_n(x.data() + keep[t] * am.cols, am.cols, xt.data() + t * static_cast<size_t>(am.cols));
    }
    for (size_t i = 0; i < am.candidates.size(); ++i) {
      AccumulateAwqBlockClipLoss(xt, static_cast<int64_t>(keep.size()), wv, am.candidates[i].wq, am.rows, am.cols,
                                 am.block, act_, am.clip_loss[i]);
    }
  }

  ForwardModel& fm_;
  const QuantState& state_;
  std::map<int, AwqModule>& modules_;
  Stage stage_;
  const AwqParams& params_;
  DType act_;
  std::map<int, Buffer> pqs_;
  std::vector<float> host_, ref_, out_;
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
        const Tensor bias = model.LinearBias(m);
        if (bias.defined() && bias.numel() > 0) am.bias.assign(bias.span<float>().begin(), bias.span<float>().end());
        const Quantizer* in = state.Get(m, QuantizerRole::kInput);
        if (in != nullptr && in->enabled()) {
          QF_CHECK(!in->sequential(), "{}: input quantizer '{}' is sequential; AWQ smooths single-stage inputs",
                   params_.method, in->slot.name);
          am.input_calibrated = in->NeedsCalibration() && !in->attrs().axis.has_value();
          if (in->attrs().axis.has_value()) {
            const auto& axis = in->attrs().axis->dims;
            am.lite = axis.size() == 1 && axis[0] == -1;
          }
        }
        if (params_.lite) {
          QF_CHECK(in == nullptr || in->pre_quant_scale.empty(), "{}: '{}' already has a pre_quant_scale (from an "
                   "earlier algorithm); awq_lite smooths unsmoothed inputs", params_.method, info.name);
          const Tensor wt = model.LinearWeight(m);
          am.weight_scale = AwqWeightScale(wt.span<float>(), am.rows, am.cols, am.block, am.wdtype);
        } else {
          am.lite = false;
        }
        modules.emplace(m, std::move(am));
      }
    }
    if (modules.empty()) return;
    if (params_.lite) {
      {
        AwqHooks cache(fm, state, modules, Stage::kCache, params_);
        pass(cache);
      }
      for (auto& [m, am] : modules) {
        if (am.cache_steps == 0) continue;
        for (float& v : am.act_scale) v /= static_cast<float>(am.cache_steps);
      }
      {
        AwqHooks search(fm, state, modules, Stage::kSearch, params_);
        pass(search);
      }
      for (auto& [m, am] : modules) FinishLite(model, state, am, summary);
    }
    if (params_.clip) {
      for (auto& [m, am] : modules) PrepareClip(model, state, am, fm.backend().host_kernels());
      {
        AwqHooks clip(fm, state, modules, Stage::kClip, params_);
        pass(clip);
      }
      for (auto& [m, am] : modules) FinishClip(state, am, summary);
    }
    for (int layer : layers) {
      PreQuantScaleGroups g = FoldPreQuantScalesIntoProducers(model, state, layer);
      g.Merge(ResmoothExpertPreQuantScales(model, state, layer));
      g.Merge(ResmoothSharedInputs(model, state, model.linear_modules(layer)));
      CalibrateWeightAmaxOf(model, state, g.changed, fm.backend().host_kernels());
      summary->groups.Merge(g);
    }
  }

  void FinishLite(Model& model, QuantState& state, AwqModule& am, AwqSummary* summary) const {
    const ModuleInfo& info = model.modules()[static_cast<size_t>(am.module)];
    Quantizer* in = state.Get(am.module, QuantizerRole::kInput);
    bool usable = am.lite && am.cache_steps > 0 && am.search_steps > 0;
    for (float v : am.act_scale) usable = usable && !std::isnan(v);
    for (float v : am.weight_scale) usable = usable && !std::isnan(v);
    std::vector<float> pqs;
    if (usable) {
      size_t best = 0;
      for (size_t a = 1; a < am.lite_loss.size(); ++a) {
        if (am.lite_loss[a] < am.lite_loss[best]) best = a;  // the first minimum
      }
      const std::vector<float> s = AwqScale(am.act_scale, am.weight_scale, params_.alphas[best]);
      pqs.resize(s.size());
      for (size_t j = 0; j < s.size(); ++j) pqs[j] = 1.0f / s[j];  // ModelOpt: 1.0 / best_scale, f32
      Tensor w = model.LinearWeight(am.module).Clone();
      const SmoothedInput sm = ApplyPreQuantScale(pqs, am.input_calibrated ? am.chan_amax : std::vector<float>{},
                                                  w.mutable_span<float>(), am.rows, am.cols, am.wdtype);
      model.SetLinearWeight(am.module, std::move(w));
      if (in != nullptr) {
        if (am.input_calibrated && !am.chan_amax.empty()) {
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
    CalibrateWeightAmaxOf(model, state, std::span<const int>(&m, 1));
    am.candidates.clear();
  }

  void PrepareClip(Model& model, QuantState& state, AwqModule& am, const HostQuantKernels* kernels) const {
    am.candidates.clear();
    const Quantizer& q = *state.Get(am.module, QuantizerRole::kWeight);
    const QuantSpec spec = q.spec();
    am.clip = spec.block.has_value() && q.NeedsCalibration();  // ModelOpt: block-quantized weights only
    if (!am.clip) return;
    am.per_tensor_clip = spec.block->dynamic && !spec.axis;
    const Tensor w = model.LinearWeight(am.module);
    const std::vector<int64_t> shape = {am.rows, am.cols};
    am.w_amax = ComputeAmax(spec, w.span<float>(), shape, q.slot.name, kernels);
    am.amax_shape = AmaxShape(spec, shape).value_or(std::vector<int64_t>{});
    const size_t groups = am.per_tensor_clip ? 1 : static_cast<size_t>(am.rows * ((am.cols + am.block - 1) / am.block));
    QF_ASSERT(am.per_tensor_clip ? am.w_amax.size() == 1 : am.w_amax.size() == groups,
              "awq_clip: '{}' has {} amax values for {} clip groups", q.slot.name, am.w_amax.size(), groups);
    am.clip_loss.assign(params_.ratios.size(), std::vector<float>(groups, 0.0f));
  }

  void FinishClip(QuantState& state, AwqModule& am, AwqSummary* summary) const {
    if (am.input_calibrated && am.clip_input_seen) {  // ModelOpt's awq_clip max-calibrates the smoothed input
      Quantizer& in = *state.Get(am.module, QuantizerRole::kInput);
      in.ResetAmax();
      in.MergeAmax({am.clip_input_amax}, {});
    }
    if (!am.clip) return;
    Quantizer& q = *state.Get(am.module, QuantizerRole::kWeight);
    std::vector<float> best(am.w_amax);
    if (am.clip_calls > 0) {
      for (size_t g = 0; g < best.size(); ++g) {
        float best_loss = std::numeric_limits<float>::infinity();
        size_t best_i = params_.ratios.size() - 1;  // 1.0 (all losses NaN: no clipping)
        for (size_t i = 0; i < params_.ratios.size(); ++i) {
          if (am.clip_loss[i][g] < best_loss) {  // strictly smaller: the first minimum in ratio order
            best_loss = am.clip_loss[i][g];
            best_i = i;
          }
        }
        best[g] = ClipAmax(std::vector<float>{am.w_amax[g]}, params_.ratios[best_i], am.wdtype)[0];
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
    q.MergeAmax(best, am.amax_shape);
    am.candidates.clear();
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
