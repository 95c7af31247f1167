// Fake quantization (QDQ) during a forward: applies an ActivationQuantTable (quant/activation_quant.h) to
// Linear inputs / outputs, attention q/k/v (KV cache) and softmax probabilities in place, with the
// backend's FakeQuant op on backend memory (bit-identical to numerics FakeQuant).
#pragma once

#include <map>

#include "qforge/forward/forward_model.h"
#include "qforge/quant/activation_quant.h"

namespace qforge {

class FakeQuantHooks : public ForwardHooks {
 public:
  explicit FakeQuantHooks(ActivationQuantTable table) : table_(std::move(table)) {}
  static FakeQuantHooks FromState(const Model& model, const QuantState& state) {
    return FakeQuantHooks(ActivationQuantTable::FromState(model, state));
  }
  const ActivationQuantTable& table() const { return table_; }
  int num_points() const { return table_.num_points(); }

  bool ModifiesActivations() const override { return true; }
  void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override;
  void OnLinearOutput(Backend& be, int module, float* y, int64_t rows, int64_t cols) override;
  void OnAttentionBmm(Backend& be, int module, BmmInput which, float* x, int64_t batch, int64_t heads, int64_t seq,
                      int64_t head_dim) override;
  bool WantsAttentionProbs(int module) const override { return table_.probs(module) != nullptr; }
  void OnAttentionProbs(Backend& be, int module, float* probs, int64_t batch, int64_t heads, int64_t seq) override;

 private:
  // A Linear input's pre_quant_scale on backend `be` (uploaded on first use).
  const float* PreQuantScaleOn(Backend& be, int module, const ActivationQuant& q);
  ActivationQuantTable table_;
  std::map<int, std::pair<Backend*, Buffer>> pqs_;  // module -> its pre_quant_scale on a backend
};

}  // namespace qforge
