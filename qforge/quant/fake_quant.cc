// Fake-quantized forwards.
#include "qforge/quant/fake_quant.h"

#include "qforge/base/error.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

void Apply(const ActivationQuant& q, float* x, std::vector<int64_t> shape, const char* what) {
  QF_CHECK(!q.missing_amax, "quantizer '{}' has no calibrated amax", q.name);
  const int64_t n = NumElements(shape);
  std::span<float> s(x, static_cast<size_t>(n));
  FakeQuant(q.spec, s, shape, q.amax, s, q.global_amax, what);
}

std::optional<ActivationQuant> FromQuantizer(const Quantizer* q) {
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
  return a;
}

}  // namespace

FakeQuantHooks::FakeQuantHooks(size_t n) : inputs_(n), outputs_(n), probs_(n), bmm_(n) {}

FakeQuantHooks FakeQuantHooks::FromState(const Model& model, const QuantState& state) {
  FakeQuantHooks h(model.modules().size());
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

int FakeQuantHooks::num_points() const {
  int n = 0;
  for (size_t i = 0; i < inputs_.size(); ++i) {
    n += inputs_[i].has_value() + outputs_[i].has_value() + probs_[i].has_value();
    for (const auto& b : bmm_[i]) n += b.has_value();
  }
  return n;
}

void FakeQuantHooks::OnLinearInput(int module, float* x, int64_t rows, int64_t cols) {
  const auto& q = inputs_[static_cast<size_t>(module)];
  if (q) Apply(*q, x, {rows, cols}, "linear input");
}

void FakeQuantHooks::OnLinearOutput(int module, float* y, int64_t rows, int64_t cols) {
  const auto& q = outputs_[static_cast<size_t>(module)];
  if (q) Apply(*q, y, {rows, cols}, "linear output");
}

void FakeQuantHooks::OnAttentionBmm(int module, BmmInput which, float* x, int64_t batch, int64_t heads, int64_t seq,
                                    int64_t head_dim) {
  const auto& q = bmm_[static_cast<size_t>(module)][static_cast<size_t>(which)];
  if (q) Apply(*q, x, {batch, heads, seq, head_dim}, "attention bmm input");
}

void FakeQuantHooks::OnAttentionProbs(int module, float* probs, int64_t batch, int64_t heads, int64_t seq) {
  const auto& q = probs_[static_cast<size_t>(module)];
  if (q) Apply(*q, probs, {batch, heads, seq, seq}, "attention probabilities");
}

}  // namespace qforge
