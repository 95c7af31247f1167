// The activation quantization points of a model (what fake quant applies during a forward): per module the
// input / output quantizer, the attention q/k/v bmm quantizers and the softmax-probability quantizer, with
// their calibrated amax, from a QuantState or from an exported checkpoint's scales. Plain data: the hooks
// that apply them on a backend are forward/fake_quant_hooks.h.
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
  // Linear inputs only: multiplied per input feature before quantization (Quantizer::pre_quant_scale);
  // empty: none. `quantize` false: only that scaling (a disabled input quantizer with a smoothing vector).
  std::vector<float> pre_quant_scale;
  bool quantize = true;
};

// Per module (indexed like Model::modules()), the enabled activation quantizers, and the Linear inputs that
// are only scaled (a disabled input quantizer with a pre_quant_scale).
class ActivationQuantTable {
 public:
  explicit ActivationQuantTable(size_t num_modules);
  // Every enabled activation quantizer of `state` (inputs, outputs, q/k/v/p bmm) with its calibrated amax
  // (copied now). A quantizer still lacking an amax it needs is an error only if the forward reaches it.
  static ActivationQuantTable FromState(const Model& model, const QuantState& state);

  void SetInput(int module, ActivationQuant q) { inputs_[static_cast<size_t>(module)] = std::move(q); }
  void SetOutput(int module, ActivationQuant q) { outputs_[static_cast<size_t>(module)] = std::move(q); }
  void SetBmm(int module, BmmInput which, ActivationQuant q) {
    bmm_[static_cast<size_t>(module)][static_cast<size_t>(which)] = std::move(q);
  }
  // Softmax probabilities of attention `module` (p_bmm_quantizer).
  void SetProbs(int module, ActivationQuant q) { probs_[static_cast<size_t>(module)] = std::move(q); }
  int num_points() const;
  size_t size() const { return inputs_.size(); }

  // The quantizer of a point, or nullptr when it is not quantized.
  const ActivationQuant* input(int module) const { return Opt(inputs_[static_cast<size_t>(module)]); }
  const ActivationQuant* output(int module) const { return Opt(outputs_[static_cast<size_t>(module)]); }
  const ActivationQuant* bmm(int module, BmmInput which) const {
    return Opt(bmm_[static_cast<size_t>(module)][static_cast<size_t>(which)]);
  }
  const ActivationQuant* probs(int module) const { return Opt(probs_[static_cast<size_t>(module)]); }

 private:
  static const ActivationQuant* Opt(const std::optional<ActivationQuant>& q) { return q ? &*q : nullptr; }
  std::vector<std::optional<ActivationQuant>> inputs_, outputs_, probs_;
  std::vector<std::array<std::optional<ActivationQuant>, 3>> bmm_;
};

}  // namespace qforge
