// The `max` calibration algorithm.
#include "qforge/calib/max_calib.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <map>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/progress.h"
#include "qforge/base/strings.h"
#include "qforge/numerics/qdq.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

namespace {

// Weight amax of every enabled weight quantizer that needs it; `device` (not null) computes on the forward's
// device copies where they are exact.
// `only` (set): just those modules.
void WeightAmaxPass(Model& model, QuantState& state, std::optional<int> layer, const HostQuantKernels* kernels,
                    ForwardModel* device, bool keep_resident,
                    std::optional<std::span<const int>> only = std::nullopt) {
  const auto& modules = model.modules();
  for (auto& q : state.quantizers()) {
    if (q.role != QuantizerRole::kWeight || !q.enabled()) continue;
    const ModuleInfo& info = modules[static_cast<size_t>(q.module)];
    if (layer && info.layer != *layer) continue;
    if (only && std::find(only->begin(), only->end(), q.module) == only->end()) continue;
    QF_CHECK(!q.sequential(), "quantizer '{}': sequential (multi-stage) weight quantizers are not supported yet",
             q.slot.name);
    QF_CHECK(info.kind == ModuleKind::kLinear,
             "quantizer '{}': quantizing {} weights is not supported (only Linear weights); disable it in the "
             "config",
             q.slot.name, info.class_key);
    if (!q.NeedsCalibration() && !q.attrs().IsConstantAmax()) continue;  // MX / dynamic: no amax
    const QuantSpec spec = q.spec();
    const std::vector<int64_t> wshape = {info.out_features, info.in_features};
    std::optional<std::vector<float>> amax;
    if (device != nullptr) amax = device->WeightAmax(q.module, spec, q.slot.name, 4096, keep_resident);
    if (!amax) {
      const Tensor w = model.LinearWeight(q.module);
      amax = ComputeAmax(spec, w.span<float>(), w.shape(), q.slot.name, kernels);
    }
    auto shape = AmaxShape(spec, wshape);
    q.amax.clear();
    q.has_amax = false;
    q.MergeAmax(*amax, shape.value_or(std::vector<int64_t>{}));
  }
}


}  // namespace

void CalibrateWeightAmax(Model& model, QuantState& state, std::optional<int> layer,
                         const HostQuantKernels* kernels) {
  WeightAmaxPass(model, state, layer, kernels, nullptr, true);
}

void CalibrateWeightAmaxOf(Model& model, QuantState& state, std::span<const int> modules,
                           const HostQuantKernels* kernels) {
  WeightAmaxPass(model, state, std::nullopt, kernels, nullptr, true, modules);
}

void CalibrateWeightAmax(ForwardModel& fm, QuantState& state, std::optional<int> layer, bool keep_resident) {
  Backend& be = fm.backend();
  WeightAmaxPass(fm.model(), state, layer, be.host_kernels(), be.host_accessible() ? nullptr : &fm, keep_resident);
}

bool IsActHeadroomQuantizer(const Quantizer& q) {
  if (q.role != QuantizerRole::kInput || !q.NeedsCalibration()) return false;
  const QuantSpec spec = q.spec();
  return spec.IsNvfp4Dynamic() && !spec.dynamic;
}

MaxCalibHooks::MaxCalibHooks(QuantState& state, const MaxCalibOptions& options)
    : state_(state), act_headroom_(options.act_headroom), moe_ratio_(options.moe_calib_experts_ratio) {
  if (act_headroom_) {
    ValidateActHeadroomParams(*act_headroom_);
    headroom_.assign(state.quantizers().size(), 0);
    hist_.assign(state.quantizers().size(), std::nullopt);
    for (size_t i = 0; i < state.quantizers().size(); ++i) {
      const Quantizer& q = state.quantizers()[i];
      if (!IsActHeadroomQuantizer(q)) continue;
      QF_CHECK(!q.sequential(),
               "nvfp4_act_headroom does not support sequential (multi-stage) activation quantizers, but '{}' is one "
               "wrapping an NVFP4 dynamic-block quantizer; give these modules a single activation quantizer, or "
               "calibrate with 'max'",
               q.slot.name);
      headroom_[i] = 1;
    }
  }
  for (const auto& q : state.quantizers()) {
    if (!Traits(q.role).is_activation || !q.NeedsCalibration()) continue;
    std::optional<std::vector<int64_t>> shape;
    try {
      shape = AmaxShape(q.spec(), std::vector<int64_t>{2, 2, 2, 64});
    } catch (const Error&) {  // a spec this shape does not suit: not known to be per tensor
    }
    if (!shape || !shape->empty()) {
      row_local_ = false;
      return;
    }
  }
}

void MaxCalibHooks::Collect(Backend& be, int module, QuantizerRole role, const float* x, std::vector<int64_t> shape,
                            AmaxCache* cache) {
  Quantizer* q = state_.Get(module, role);
  if (q == nullptr || !q->NeedsCalibration()) return;
  QF_CHECK(!q->sequential(), "quantizer '{}': sequential activation quantizers are not supported", q->slot.name);
  const QuantSpec spec = q->spec();
  if (!headroom_.empty() && headroom_[static_cast<size_t>(q - state_.quantizers().data())]) {
    QF_ASSERT(shape.size() == 2, "{}: a Linear input is [rows, cols]", q->slot.name);
    return CollectHistogram(be, *q, spec, x, shape[0], shape[1], cache);
  }
  if (Fold(be, *q, spec, x, shape, cache)) return;
  const auto merge = [&](const std::vector<float>& amax) {
    q->MergeAmax(amax, AmaxShape(spec, shape).value_or(std::vector<int64_t>{}));
  };
  if (cache == nullptr) return merge(be.QuantAmax(spec, x, shape, q->slot.name));
  auto& values = cache->values;
  auto it = std::find_if(values.begin(), values.end(), [&](const auto& d) { return d.first == spec; });
  if (it == values.end()) it = values.emplace(values.end(), spec, be.QuantAmax(spec, x, shape, q->slot.name));
  merge(it->second);
}

void MaxCalibHooks::CollectHistogram(Backend& be, Quantizer& q, const QuantSpec& spec, const float* x, int64_t rows,
                                     int64_t cols, AmaxCache* cache) {
  const size_t qi = static_cast<size_t>(&q - state_.quantizers().data());
  if (!hist_[qi]) hist_[qi].emplace();
  if (cache != nullptr) {
    for (const auto& [s, h] : cache->histograms) {
      if (s == spec) return hist_[qi]->Merge(h);  // x already taken by another module of this call
    }
  }
  // Per-16-block amax along the input features (spec §6.5) on the host. A device's activations come down
  // for it: a device kernel for the histogram is not written yet.
  std::vector<float> host;
  const float* hx = x;
  if (!be.host_accessible()) {
    host.resize(static_cast<size_t>(rows * cols));
    be.Download(host.data(), x, rows * cols * static_cast<int64_t>(sizeof(float)));
    hx = host.data();
  }
  for (int64_t i = 0; i < rows * cols; ++i) {
    QF_CHECK(std::isfinite(hx[i]), "quantizer '{}': its calibration activations hold {} (element {}); "
             "nvfp4_act_headroom needs finite values", q.slot.name, hx[i], i);
  }
  BlockAmaxHistogram h;
  h.AddRows(hx, rows, cols, 16);
  hist_[qi]->Merge(h);
  if (cache != nullptr) cache->histograms.emplace_back(spec, std::move(h));
}

uint32_t* MaxCalibHooks::FoldSlot(Backend& be, const Quantizer& q, const QuantSpec& spec,
                                  const std::vector<int64_t>& shape) {
  if (be.host_accessible()) return nullptr;  // the CPU reads its amax directly (and names a bad element)
  const int64_t n = NumElements(shape);
  // One max|x| per tensor, as QuantAmax computes it: not MX, unsigned or pinned amax.
  if (n <= 0 || spec.IsMx() || spec.is_unsigned || spec.use_constant_amax || spec.constant_amax) return nullptr;
  try {
    const auto amax_shape = AmaxShape(spec, shape);
    if (!amax_shape || !amax_shape->empty()) return nullptr;
  } catch (const Error&) {
    return nullptr;  // QuantAmax names the problem
  }
  auto& all = state_.quantizers();
  if (slots_.empty()) {
    slots_ = be.Alloc(static_cast<int64_t>(all.size() * sizeof(uint32_t)));
    be.Zero(slots_.data(), slots_.bytes());
    sources_.assign(all.size(), {});
  }
  return slots_.as<uint32_t>() + (&q - all.data());
}

bool MaxCalibHooks::Fold(Backend& be, Quantizer& q, const QuantSpec& spec, const float* x,
                         const std::vector<int64_t>& shape, AmaxCache* cache) {
  uint32_t* slot = FoldSlot(be, q, spec, shape);
  if (slot == nullptr) return false;
  const int qi = static_cast<int>(&q - state_.quantizers().data());
  int src = -1;  // the slot holding max|x| of this call
  if (cache != nullptr) {
    auto it = std::find_if(cache->slots.begin(), cache->slots.end(), [&](const auto& d) { return d.first == spec; });
    if (it != cache->slots.end()) src = it->second;  // x already folded by another module of this call
  }
  if (src < 0) {
    be.AmaxFold(x, NumElements(shape), slot);
    src = qi;
    if (cache != nullptr) cache->slots.emplace_back(spec, qi);
  }
  MarkFolded(qi, src);
  return true;
}

void MaxCalibHooks::MarkFolded(int qi, int src) {
  auto& s = sources_[static_cast<size_t>(qi)];
  if (std::find(s.begin(), s.end(), src) == s.end()) s.push_back(src);
  folded_ = true;
}

ForwardHooks::InputTap MaxCalibHooks::LinearInputTap(Backend& be, int module, int64_t rows, int64_t cols) {
  Quantizer* q = state_.Get(module, QuantizerRole::kInput);
  if (q == nullptr || !q->NeedsCalibration()) return {false, nullptr};
  if (q->sequential()) return {};  // OnLinearInput names it
  if (!headroom_.empty() && headroom_[static_cast<size_t>(q - state_.quantizers().data())]) return {};
  uint32_t* slot = FoldSlot(be, *q, q->spec(), {rows, cols});
  if (slot == nullptr) return {};
  // The caller folds into the slot: recorded as this quantizer's own source, as Fold does.
  const int qi = static_cast<int>(q - state_.quantizers().data());
  MarkFolded(qi, qi);
  return {true, slot};
}

void MaxCalibHooks::Flush(Backend& be) {
  auto& all = state_.quantizers();
  for (size_t i = 0; i < hist_.size(); ++i) {
    if (!hist_[i]) continue;
    const std::optional<BlockAmaxHistogram::Result> r = hist_[i]->Compute(*act_headroom_);
    QF_CHECK(r.has_value(), "quantizer '{}': nvfp4_act_headroom saw only zero activations, so no block amax "
             "distribution defines its global scale", all[i].slot.name);
    if (r->no_headroom) {
      LogWarning("nvfp4_act_headroom: '{}': per-block amax range {:.1f} leaves no headroom at rho={}; the scale is the "
              "top of the calibrated range{}",
              all[i].slot.name, r->upper / r->anchor, act_headroom_->rho,
              r->upper / r->anchor > 28672.0 ? " (the range exceeds FP8's scale range: no rho can clear it)" : "");
    }
    all[i].amax.clear();
    all[i].has_amax = false;
    all[i].MergeAmax({r->amax}, {});
    hist_[i].reset();
  }
  if (!folded_) return;
  std::vector<uint32_t> bits(all.size());
  be.Download(bits.data(), slots_.data(), slots_.bytes());
  for (size_t i = 0; i < all.size(); ++i) {
    if (sources_[i].empty()) continue;
    uint32_t m = 0;
    for (int s : sources_[i]) m = std::max(m, bits[static_cast<size_t>(s)]);
    QF_CHECK(m < 0x7F800000u, "quantizer '{}': its calibration activations hold {}; max calibration needs finite values",
             all[i].slot.name, m == 0x7F800000u ? "an infinity" : "a NaN");
    all[i].MergeAmax({std::bit_cast<float>(m)}, {});
    sources_[i].clear();
  }
  be.Zero(slots_.data(), slots_.bytes());
  folded_ = false;
}

void MaxCalibHooks::OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) {
  Collect(be, module, QuantizerRole::kInput, x, {rows, cols});
}

void MaxCalibHooks::OnLinearInputs(Backend& be, std::span<const int> modules, float* x, int64_t rows,
                                   int64_t cols) {
  AmaxCache cache;
  for (int module : modules) Collect(be, module, QuantizerRole::kInput, x, {rows, cols}, &cache);
}

bool MaxCalibHooks::WantsLinearOutput(int module) const {
  const Quantizer* q = state_.Get(module, QuantizerRole::kOutput);
  return q != nullptr && q->NeedsCalibration();
}

void MaxCalibHooks::OnLinearOutput(Backend& be, int module, float* y, int64_t rows, int64_t cols) {
  Collect(be, module, QuantizerRole::kOutput, y, {rows, cols});
}

void MaxCalibHooks::OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t batch, int64_t heads,
                                   int64_t seq, int64_t head_dim) {
  const QuantizerRole role = which == BmmInput::kQ   ? QuantizerRole::kQBmm
                             : which == BmmInput::kK ? QuantizerRole::kKBmm
                                                     : QuantizerRole::kVBmm;
  Collect(be, module, role, x, {batch, heads, seq, head_dim});
}

std::set<std::string> ModuleListNames(const Model& model) {
  std::set<std::string> out = {"model.layers"};
  for (const auto& m : model.modules()) {
    if (m.expert < 0) continue;
    // "<block>.experts.<e>.<proj>" -> "<block>.experts"
    const std::string suffix = fmt::format(".{}.", m.expert);
    const size_t pos = m.name.rfind(suffix);
    if (pos != std::string::npos) out.insert(m.name.substr(0, pos));
  }
  return out;
}

void SyncMoeExperts(const Model& model, const std::vector<int64_t>& rows, QuantState& state, bool sync_weights,
                    MaxCalibReport* report, std::optional<int> layer, bool independent) {
  const auto& modules = model.modules();
  // Group routed-expert Linears by (layer, role): gate/up/down (or w1/w3/w2) of every expert.
  std::map<std::pair<int, int>, std::vector<int>> groups;
  std::map<int, ExpertTokenCounts> counts;
  for (size_t m = 0; m < modules.size(); ++m) {
    const ModuleInfo& info = modules[m];
    if (info.kind != ModuleKind::kLinear || info.expert < 0) continue;
    if (layer && info.layer != *layer) continue;
    groups[{info.layer, static_cast<int>(info.role)}].push_back(static_cast<int>(m));
    if (info.role == LinearRole::kGate) {  // one count per expert: rows routed to its first projection
      auto& c = counts[info.layer];
      c.layer = info.layer;
      const size_t pos = info.name.rfind(fmt::format(".experts.{}.", info.expert));
      c.block = pos == std::string::npos ? "" : info.name.substr(0, pos);
      if (static_cast<int>(c.tokens.size()) <= info.expert) c.tokens.resize(static_cast<size_t>(info.expert) + 1, 0);
      c.tokens[static_cast<size_t>(info.expert)] = m < rows.size() ? rows[m] : 0;
    }
  }
  for (auto& [key, members] : groups) {
    for (QuantizerRole role : {QuantizerRole::kInput, QuantizerRole::kWeight}) {
      if (role == QuantizerRole::kWeight && (!sync_weights || independent)) continue;
      std::vector<float> merged;
      std::vector<int64_t> shape;
      bool any = false;
      for (int m : members) {
        const Quantizer* q = state.Get(m, role);
        if (q == nullptr || !q->enabled() || !q->has_amax) continue;
        if (!any) {
          merged = q->amax;
          shape = q->amax_shape;
          any = true;
        } else {
          QF_CHECK(q->amax.size() == merged.size(), "expert quantizer '{}' has an amax of another shape than its "
                   "siblings", q->slot.name);
          for (size_t i = 0; i < merged.size(); ++i) merged[i] = std::max(merged[i], q->amax[i]);
        }
      }
      if (!any) continue;
      for (int m : members) {
        Quantizer* q = state.Get(m, role);
        if (q == nullptr || !q->enabled() || !q->NeedsCalibration()) continue;
        if (independent && q->has_amax) continue;  // calibrated on its own tokens
        if (!q->has_amax && report != nullptr && role == QuantizerRole::kInput) {
          report->notes.push_back(fmt::format("{} saw no calibration token{}; its input amax is the max over its "
                                              "layer's experts",
                                              q->slot.name, independent ? " even with moe_calib_experts_ratio" : ""));
        }
        q->amax = merged;
        q->amax_shape = shape;
        q->has_amax = true;
      }
    }
  }
  if (report != nullptr) {
    for (auto& [layer, c] : counts) report->expert_tokens.push_back(std::move(c));
  }
}

void FinalizeSharedStateAndPromote(const Model& model, QuantState& state, const std::vector<std::string>& patterns,
                                   MaxCalibReport* report) {
  const auto& modules = model.modules();
  std::vector<std::string> candidates;
  std::map<std::string, int> module_index;
  for (size_t m = 0; m < modules.size(); ++m) {
    const Quantizer* w = state.Get(static_cast<int>(m), QuantizerRole::kWeight);
    if (w == nullptr || !w->enabled()) continue;
    candidates.push_back(modules[m].name);
    module_index[modules[m].name] = static_cast<int>(m);
  }
  std::vector<SharedGroup> groups;
  if (!patterns.empty()) groups = FindSharedGroups(CompilePatterns(patterns), candidates, ModuleListNames(model));
  std::map<int, float> shared;  // module -> group global amax
  for (const auto& g : groups) {
    std::vector<std::optional<float>> member_max;
    for (const auto& name : g.members) {
      const Quantizer* w = state.Get(module_index[name], QuantizerRole::kWeight);
      if (w->has_amax && !w->amax.empty()) {
        member_max.push_back(*std::max_element(w->amax.begin(), w->amax.end()));
      } else {
        member_max.push_back(std::nullopt);
      }
    }
    auto value = PopulateGlobalAmax(member_max);
    if (!value) continue;
    for (const auto& name : g.members) shared[module_index[name]] = *value;
  }
  // Promotion of static NVFP4 weight quantizers, once: a quantizer promoted earlier (a previous layer of
  // layerwise calibration, a checkpoint) keeps its global amax, which later steps (mse's search of the
  // per-block amax) rely on.
  for (auto& q : state.quantizers()) {
    if (q.role != QuantizerRole::kWeight || !q.enabled() || q.sequential() || !q.has_amax) continue;
    if (!q.spec().IsNvfp4Static() || q.global_amax.has_value()) continue;
    auto it = shared.find(q.module);
    q.global_amax = it != shared.end() ? it->second : *std::max_element(q.amax.begin(), q.amax.end());
  }
  if (report != nullptr) report->shared_groups = std::move(groups);
}

bool NeedsCalibrationData(const QuantState& state) {
  for (const auto& q : state.quantizers()) {
    if (Traits(q.role).is_activation && q.NeedsCalibration()) return true;
  }
  return false;
}

bool HeadNeedsCalibration(const Model& model, const QuantState& state) {
  const int head = model.FindModule("lm_head");
  for (QuantizerRole r : {QuantizerRole::kInput, QuantizerRole::kOutput}) {
    const Quantizer* q = state.Get(head, r);
    if (q != nullptr && q->NeedsCalibration()) return true;
  }
  return false;
}

void CheckActivationAmax(const Model& model, const QuantState& state, std::optional<int> layer) {
  for (const auto& q : state.quantizers()) {
    if (!Traits(q.role).is_activation || !q.NeedsCalibration() || q.has_amax) continue;
    const ModuleInfo& info = model.modules()[static_cast<size_t>(q.module)];
    if ((layer && info.layer != *layer) || info.name == "lm_head") continue;
    QF_FAIL("quantizer '{}' received no calibration data and has no amax", q.slot.name);
  }
}

std::vector<int32_t> BatchIds(const CalibData& data, int64_t b0, int64_t count) {
  std::vector<int32_t> ids;
  ids.reserve(static_cast<size_t>(count * data.seq_len));
  for (int64_t i = 0; i < count; ++i) {
    const auto& s = data.samples.at(static_cast<size_t>(b0 + i));
    ids.insert(ids.end(), s.begin(), s.end());
  }
  return ids;
}

MaxCalibReport MaxCalibrate(ForwardModel& fm, QuantState& state, const CalibData& data, const MaxCalibOptions& options) {
  Model& model = fm.model();
  MaxCalibReport report;
  Timer t;
  CalibrateWeightAmax(fm, state);
  report.weight_amax_seconds = t.Seconds();
  if (options.weights_final != nullptr) {
    // The weight-side steps of the end of calibration, on a copy (they read no activation statistics).
    QuantState weights_final = state;
    SyncMoeExperts(model, {}, weights_final, options.sync_expert_weight_amax, nullptr, std::nullopt,
                   options.moe_calib_experts_ratio.has_value());
    FinalizeSharedStateAndPromote(model, weights_final, options.shared_patterns, nullptr);
    t.Reset();
    options.weights_final->AllWeights(weights_final);
    report.on_weights_final_seconds = t.Seconds();
  }

  const bool needs_forward = NeedsCalibrationData(state);
  // ModelOpt runs the forward loop whenever calibration was requested; without a calibrating activation
  // quantizer it changes nothing, so it is skipped (skip_forward_without_activation_calib makes that explicit).
  t.Reset();
  fm.ResetRowsSeen();
  if (needs_forward) {
    QF_CHECK(!data.samples.empty(), "calibration needs data: no calibration samples");
    report.ran_forward = true;
    MaxCalibHooks hooks(state, options);
    const int64_t seq = data.seq_len;
    const int64_t n = static_cast<int64_t>(data.samples.size());
    const int64_t bs = std::max<int64_t>(1, options.batch_size);
    Progress progress("calibrate", n * seq, "tokens");
    // The head (lm_head) is run only if one of its quantizers calibrates.
    const bool head_calib = HeadNeedsCalibration(model, state);
    for (int64_t b0 = 0; b0 < n; b0 += bs) {
      const int64_t b = std::min(bs, n - b0);
      HiddenStates h = fm.Embed(BatchIds(data, b0, b), b, seq);
      for (int l = 0; l < model.num_layers(); ++l) fm.RunLayer(l, h, &hooks);
      if (head_calib) (void)fm.Logits(h, &hooks);
      ++report.batches;
      report.tokens += b * seq;
      if (options.show_progress) progress.Add(b * seq, fmt::format("batch {}/{}", report.batches, (n + bs - 1) / bs));
    }
    hooks.Flush(fm.backend());
    if (options.show_progress) progress.Finish();
  }
  report.forward_seconds = t.Seconds();

  t.Reset();
  SyncMoeExperts(model, fm.rows_seen(), state, options.sync_expert_weight_amax, &report, std::nullopt,
                 options.moe_calib_experts_ratio.has_value());
  // Any enabled activation quantizer still without amax (a module no token reached) is an error by
  // default: its export would have no scale.
  if (report.ran_forward) CheckActivationAmax(model, state);
  FinalizeSharedStateAndPromote(model, state, options.shared_patterns, &report);
  report.reduce_seconds = t.Seconds();
  return report;
}

}  // namespace qforge
