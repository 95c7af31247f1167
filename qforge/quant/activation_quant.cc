// Activation quantization points from a QuantState.
#include "qforge/quant/activation_quant.h"

#include "qforge/base/error.h"

namespace qforge {
namespace {

std::optional<ActivationQuant> FromQuantizer(const Quantizer* q) {
  if (q != nullptr && !q->enabled() && !q->pre_quant_scale.empty()) {  // AWQ W4A16: the scaling alone
    ActivationQuant a;
    a.name = q->slot.name;
    a.pre_quant_scale = q->pre_quant_scale;
    a.quantize = false;
    return a;
  }
  if (q == nullptr || !q->enabled()) return std::nullopt;
  QF_CHECK(!q->sequential(), "quantizer '{}': sequential activation quantizers are not supported", q->slot.name);
  ActivationQuant a;
  a.spec = q->spec();
  a.amax = q->amax;
  a.global_amax = q->global_amax;
  a.name = q->slot.name;
  const bool needs_amax = !a.spec.dynamic && !a.spec.IsMx() && !a.spec.IsNvfp4Dynamic() && !a.spec.use_constant_amax &&
                          !a.spec.constant_amax;
  a.missing_amax = needs_amax && !q->has_amax;
  a.pre_quant_scale = q->pre_quant_scale;
  return a;
}

}  // namespace

ActivationQuantTable::ActivationQuantTable(size_t n) : inputs_(n), outputs_(n), probs_(n), bmm_(n) {}

ActivationQuantTable ActivationQuantTable::FromState(const Model& model, const QuantState& state) {
  ActivationQuantTable h(model.modules().size());
  for (size_t m = 0; m < model.modules().size(); ++m) {
    const int mi = static_cast<int>(m);
    if (auto a = FromQuantizer(state.Get(mi, QuantizerRole::kInput))) h.SetInput(mi, *a);
    if (auto a = FromQuantizer(state.Get(mi, QuantizerRole::kOutput))) h.SetOutput(mi, *a);
    if (auto a = FromQuantizer(state.Get(mi, QuantizerRole::kQBmm))) h.SetBmm(mi, BmmInput::kQ, *a);
    if (auto a = FromQuantizer(state.Get(mi, QuantizerRole::kKBmm))) h.SetBmm(mi, BmmInput::kK, *a);
    if (auto a = FromQuantizer(state.Get(mi, QuantizerRole::kVBmm))) h.SetBmm(mi, BmmInput::kV, *a);
    if (auto a = FromQuantizer(state.Get(mi, QuantizerRole::kPBmm))) h.SetProbs(mi, *a);
  }
  return h;
}

int ActivationQuantTable::num_points() const {
  int n = 0;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    n += inputs_[i].has_value() + outputs_[i].has_value() + probs_[i].has_value();
    for (const auto& b : bmm_[i]) n += b.has_value();
  }
  return n;
}

}  // namespace qforge
