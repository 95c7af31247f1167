// The quantizers of a loaded model (spec §9): one per quantization point, named as ModelOpt names them,
// configured by a quant_cfg list (config/quantizer_set.h) and holding their calibrated state.
//
// quant/ owns this state; model/ only calls the hooks that quant/ and calib/ install.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "qforge/config/quant_cfg.h"
#include "qforge/config/quantizer_set.h"
#include "qforge/model/model.h"
#include "qforge/numerics/quant_spec.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

// What a quantizer sees.
enum class QuantizerRole : uint8_t { kInput, kOutput, kWeight, kQBmm, kKBmm, kVBmm, kPBmm };

struct QuantizerRoleTraits {
  QuantizerRole role;
  std::string_view attr;  // attribute name on the module: "input_quantizer", "k_bmm_quantizer", ...
  bool is_activation;     // sees activations (calibrated by forward passes) rather than a weight
};
const QuantizerRoleTraits& Traits(QuantizerRole role);

struct Quantizer {
  // Name, parent class, attributes, the entry that decided it. Set by QuantState (ForModel, Apply), which
  // resolves spec() from it once.
  config::QuantizerSlot slot;
  int module = -1;             // index into Model::modules()
  QuantizerRole role = QuantizerRole::kInput;
  bool hard_disabled = false;  // nn.Embedding input quantizer: forced off whatever the config says

  // Calibrated state (spec §6): `amax` in numerics' AmaxShape order; for static NVFP4 weights the
  // per-block amax, with `global_amax` the promoted per-tensor (or shared group) value.
  std::vector<float> amax;
  std::vector<int64_t> amax_shape;
  bool has_amax = false;
  std::optional<float> global_amax;
  // SmoothQuant / AWQ smoothing (ModelOpt's input_quantizer._pre_quant_scale), on an input quantizer: the
  // Linear's input is multiplied by it per input feature before the quantizer, also when the quantizer is
  // disabled (AWQ W4A16). [in_features], as the forward applies it (in the checkpoint's dtype). Empty: none.
  std::vector<float> pre_quant_scale;
  // AWQ: this input's pre_quant_scale was folded into the Linear that produces it (o_proj's into v_proj's
  // output rows, down_proj's into up_proj's; ModelOpt's fused_with_prequant): the input arrives smoothed, so
  // pre_quant_scale is empty, and the export still names the format AWQ.
  bool pre_quant_scale_fused = false;

  bool enabled() const { return !hard_disabled && slot.state.enabled(); }
  bool sequential() const { return slot.state.sequential; }
  const config::QuantizerAttributeConfig& attrs() const { return slot.state.attrs(); }
  // The numeric spec of the (first) stage, as resolved when QuantState set the slot (re-derived only for a
  // slot whose attributes do not resolve, which then throws). Only for enabled, non-sequential quantizers.
  QuantSpec spec() const { return spec_ ? *spec_ : attrs().ToQuantSpec(); }
  // A max-calibrated, data-driven amax: enabled, not top-level dynamic, not MX, not constant-amax.
  bool NeedsCalibration() const;
  // Folds one more max-calibration result into amax (element-wise max; shapes must agree).
  void MergeAmax(const std::vector<float>& values, const std::vector<int64_t>& shape);
  // Clears the calibrated amax (amax, its shape, global_amax), keeping pre_quant_scale.
  void ResetAmax();
  // Replaces a single-stage quantizer's attributes and resolves spec() again (an algorithm that calibrates
  // with other attributes for a while: smoothquant's per-channel input amax). Clears the amax.
  void SetAttrs(config::QuantizerAttributeConfig attrs);

 private:
  friend class QuantState;
  void ResolveSpec();             // after the slot changed
  std::optional<QuantSpec> spec_;  // the first stage's spec, when its attributes resolve
};

class QuantState {
 public:
  // One quantizer per quantization point of `model`, with ModelOpt's initial attributes (spec §9:
  // inputs and bmm INT8 per-tensor enabled, outputs disabled, Linear weights INT8 axis 0).
  static QuantState ForModel(const Model& model);

  // set_quantizer_by_cfg (spec §1.3), then validates every enabled quantizer's numerics.
  void Apply(const config::QuantCfgList& quant_cfg);

  std::vector<Quantizer>& quantizers() { return quantizers_; }
  const std::vector<Quantizer>& quantizers() const { return quantizers_; }
  // The config layer's view (names, parent classes, attributes), e.g. for NeedsActivationForward.
  std::vector<config::QuantizerSlot> Slots() const;

  // Index of the quantizer of `module` in `role`, or -1 if the module has none.
  int Find(int module, QuantizerRole role) const;
  Quantizer* Get(int module, QuantizerRole role);
  const Quantizer* Get(int module, QuantizerRole role) const;
  // By full name; nullptr if absent.
  const Quantizer* FindByName(std::string_view name) const;

  // Clears all calibrated state.
  void ResetCalibration();

 private:
  std::vector<Quantizer> quantizers_;
  // [module][role] -> index, -1 if none
  std::vector<std::array<int, 7>> index_;
};

}  // namespace qforge

namespace qforge {

// A short, stable label of what a quantizer does, for plans and summaries: "disabled", "nvfp4",
// "nvfp4_static", "mxfp8", "mxfp4", "fp8", "fp8_per_channel", "fp8_per_token", "fp8_block128", "int8",
// "int8_per_channel", "int4_block128", "sequential[int4_block128,fp8]"; "+const" marks a constant amax.
std::string QuantizerLabel(const Quantizer& q);

}  // namespace qforge
