// ModelOpt's pre-export handling of smoothed inputs (pre_quant_scale.h).
#include "qforge/calib/pre_quant_scale.h"

#include <algorithm>
#include <map>
#include <string>

#include "qforge/base/error.h"
#include "qforge/calib/smoothquant.h"
#include "qforge/config/algorithm_config.h"
#include "qforge/quant/shared_state.h"
#include "qforge/tensor/tensor.h"

namespace qforge {
namespace {

void AddChanged(PreQuantScaleGroups& g, int m) {
  if (std::find(g.changed.begin(), g.changed.end(), m) == g.changed.end()) g.changed.push_back(m);
}

// ModelOpt's nvfp4_awq: an NVFP4 (E4M3-scaled) weight whose enabled NVFP4 input has a pre_quant_scale.
bool IsNvfp4Awq(const QuantState& state, int m) {
  const Quantizer* w = state.Get(m, QuantizerRole::kWeight);
  const Quantizer* in = state.Get(m, QuantizerRole::kInput);
  if (w == nullptr || !w->enabled() || w->sequential() || in == nullptr || !in->enabled() || in->sequential() ||
      in->pre_quant_scale.empty()) {
    return false;
  }
  const QuantSpec ws = w->spec();
  return ws.num_bits.IsFloat(2, 1) && ws.block && ws.block->scale_bits && ws.block->scale_bits->IsFloat(4, 3);
}

// Folds `source`'s input pre_quant_scale into `producer`'s output rows.
void Fold(Model& model, QuantState& state, int producer, int source, PreQuantScaleGroups& g) {
  if (producer < 0 || source < 0 || !IsNvfp4Awq(state, source)) return;
  Quantizer& in = *state.Get(source, QuantizerRole::kInput);
  const ModuleInfo& p = model.modules()[static_cast<size_t>(producer)];
  if (static_cast<int64_t>(in.pre_quant_scale.size()) != p.out_features || !p.bias_tensor.empty()) {
    ++g.fold_skipped;
    return;
  }
  const DType dtype = model.CheckpointWeightDType(producer);
  Tensor w = model.LinearWeight(producer).Clone();
  std::span<float> v = w.mutable_span<float>();
  for (int64_t r = 0; r < p.out_features; ++r) {
    for (int64_t c = 0; c < p.in_features; ++c) v[r * p.in_features + c] *= in.pre_quant_scale[r];
  }
  RoundToDType(dtype, v);  // torch: a product of two dtype tensors
  model.SetLinearWeight(producer, std::move(w));
  in.pre_quant_scale.clear();
  in.pre_quant_scale_fused = true;
  ++g.folded;
  AddChanged(g, producer);
}

// Re-smooths the members of `ms` (each with a pre_quant_scale) to the mean of theirs.
void ResmoothToMean(Model& model, QuantState& state, const std::vector<int>& ms, PreQuantScaleGroups& g) {
  std::vector<const std::vector<float>*> scales;
  for (int m : ms) scales.push_back(&state.Get(m, QuantizerRole::kInput)->pre_quant_scale);
  const std::vector<float> mean = MeanPreQuantScale(scales, model.CheckpointWeightDType(ms[0]));
  for (int m : ms) {
    Quantizer& in = *state.Get(m, QuantizerRole::kInput);
    if (in.pre_quant_scale == mean) continue;
    Tensor w = model.LinearWeight(m).Clone();
    ResmoothWeight(w.mutable_span<float>(), model.modules()[static_cast<size_t>(m)].in_features, in.pre_quant_scale,
                   mean, model.CheckpointWeightDType(m));
    model.SetLinearWeight(m, std::move(w));
    in.pre_quant_scale = mean;
    AddChanged(g, m);
  }
}

bool HasPreQuantScale(const QuantState& state, int m) {
  const Quantizer* in = state.Get(m, QuantizerRole::kInput);
  return in != nullptr && !in->pre_quant_scale.empty();
}

}  // namespace

void PreQuantScaleGroups::Merge(const PreQuantScaleGroups& o) {
  folded += o.folded;
  fold_skipped += o.fold_skipped;
  expert_groups += o.expert_groups;
  sibling_groups += o.sibling_groups;
  for (int m : o.changed) AddChanged(*this, m);
}

PreQuantScaleGroups FoldPreQuantScalesIntoProducers(Model& model, QuantState& state, int layer) {
  PreQuantScaleGroups g;
  if (layer < 0 || !model.arch().prequant_fold) return g;
  const Model::LayerModules& L = model.layer_modules(layer);
  Fold(model, state, L.v, L.o, g);
  if (!L.moe) Fold(model, state, L.mlp[1], L.mlp[2], g);  // roles in order gate, up, down
  for (const auto& e : L.experts) Fold(model, state, e[1], e[2], g);
  return g;
}

PreQuantScaleGroups ResmoothExpertPreQuantScales(Model& model, QuantState& state, int layer) {
  PreQuantScaleGroups g;
  if (layer < 0) return g;
  const Model::LayerModules& L = model.layer_modules(layer);
  if (L.experts.empty()) return g;
  for (int role = 0; role < 3; ++role) {
    std::vector<int> ms;
    for (const auto& e : L.experts) ms.push_back(e[static_cast<size_t>(role)]);
    if (!HasPreQuantScale(state, ms[0])) continue;  // ModelOpt: the first expert decides
    for (int m : ms) {
      QF_CHECK(HasPreQuantScale(state, m), "'{}' has no pre_quant_scale, but '{}' (the same Linear of another "
               "expert) has one: the experts' inputs cannot be given one smoothing",
               model.modules()[static_cast<size_t>(m)].name, model.modules()[static_cast<size_t>(ms[0])].name);
    }
    ResmoothToMean(model, state, ms, g);
    ++g.expert_groups;
  }
  return g;
}

PreQuantScaleGroups ResmoothSharedInputs(Model& model, QuantState& state, const std::vector<int>& modules) {
  PreQuantScaleGroups g;
  std::vector<std::string> names;
  std::map<std::string, int> by_name;
  for (int m : modules) {
    if (!HasPreQuantScale(state, m)) continue;
    names.push_back(model.modules()[static_cast<size_t>(m)].name);
    by_name[names.back()] = m;
  }
  for (const SharedGroup& sg : FindSharedGroups(CompilePatterns(config::DefaultSharedPatterns()), names, {})) {
    std::vector<int> ms;
    for (const auto& n : sg.members) ms.push_back(by_name.at(n));
    ResmoothToMean(model, state, ms, g);
    ++g.sibling_groups;
  }
  return g;
}

}  // namespace qforge
