// Fake quantization (QDQ) of a model's forward: activation hooks and weight replacement, from a calibrated
// QuantState or from an exported checkpoint's scales.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "qforge/model/model.h"
#include "qforge/numerics/quant_spec.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

// One activation quantization point: its spec and amax (numerics' FakeQuant meaning: a scalar or the
// AmaxShape layout; for NVFP4 dynamic the optional global amax; ignored for dynamic specs).
struct ActivationQuant {
  QuantSpec spec;
  std::vector<float> amax;
  std::optional<float> global_amax;  // static NVFP4 only
  std::string name;                  // quantizer name, for errors
  bool missing_amax = false;         // needs a calibrated amax it does not have yet: an error when used
};

// Applies QDQ to Linear inputs/outputs and attention q/k/v (KV cache) in place during a forward.
class FakeQuantHooks : public ForwardHooks {
 public:
  explicit FakeQuantHooks(size_t num_modules);
  // Every enabled activation quantizer of `state` (inputs, outputs, q/k/v/p bmm) with its calibrated amax
  // (copied now). A quantizer still lacking an amax it needs is an error only if the forward reaches it.
  static FakeQuantHooks FromState(const Model& model, const QuantState& state);

  void SetInput(int module, ActivationQuant q) { inputs_[static_cast<size_t>(module)] = std::move(q); }
  void SetOutput(int module, ActivationQuant q) { outputs_[static_cast<size_t>(module)] = std::move(q); }
  void SetBmm(int module, BmmInput which, ActivationQuant q) {
    bmm_[static_cast<size_t>(module)][static_cast<size_t>(which)] = std::move(q);
  }
  // Softmax probabilities of attention `module` (p_bmm_quantizer).
  void SetProbs(int module, ActivationQuant q) { probs_[static_cast<size_t>(module)] = std::move(q); }
  int num_points() const;

  bool ModifiesActivations() const override { return true; }
  void OnLinearInput(int module, float* x, int64_t rows, int64_t cols) override;
  void OnLinearOutput(int module, float* y, int64_t rows, int64_t cols) override;
  void OnAttentionBmm(int module, BmmInput which, float* x, int64_t batch, int64_t heads, int64_t seq,
                      int64_t head_dim) override;
  bool WantsAttentionProbs(int module) const override { return probs_[static_cast<size_t>(module)].has_value(); }
  void OnAttentionProbs(int module, float* probs, int64_t batch, int64_t heads, int64_t seq) override;

 private:
  std::vector<std::optional<ActivationQuant>> inputs_, outputs_, probs_;
  std::vector<std::array<std::optional<ActivationQuant>, 3>> bmm_;
};

}  // namespace qforge
