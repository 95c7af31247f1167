// Applying a quant_cfg list to a model-independent set of quantizers (spec §1.3), plus the predicates that
// read a configured set (need of an activation forward, spec §6.2).
//
// The model layer builds one QuantizerSlot per TensorQuantizer (full name, parent module class key, initial
// attributes) and calls ApplyQuantCfg; nothing here knows about tensors or modules.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "qforge/config/quant_cfg.h"
#include "qforge/config/quantizer_attribute_config.h"

namespace qforge::config {

// Attributes of one quantizer: a single TensorQuantizer or a SequentialQuantizer of stages.
struct QuantizerState {
  bool sequential = false;
  std::vector<QuantizerAttributeConfig> stages;  // exactly one when !sequential

  static QuantizerState Single(QuantizerAttributeConfig a) { return {false, {std::move(a)}}; }
  const QuantizerAttributeConfig& attrs() const { return stages.at(0); }
  bool enabled() const;  // single: enable; sequential: any stage enabled
};

struct QuantizerSlot {
  std::string name;          // full name, e.g. "model.layers.0.mlp.down_proj.weight_quantizer"
  std::string parent_class;  // registry key of the parent module class ("nn.Linear", "hf.X"); "" if none
  QuantizerState state;
  int decided_by = -1;       // index of the entry that last matched it (-1: initial attributes)
};

// Initial attributes of a freshly inserted quantizer by kind (spec §9 table): "linear_input",
// "linear_output", "linear_weight", "conv_input", "conv_output", "conv_weight", "bn_input", "bn_output",
// "embedding_weight", "bmm". Inputs and bmm: INT8 per-tensor enabled; outputs: disabled; weights of
// Linear/Conv: INT8 axis 0; Embedding weight: INT8 per-tensor.
QuantizerState InitialQuantizerState(std::string_view kind);

// Known parent_class registry keys (torch.nn classes that ModelOpt converts); "hf.<ClassName>" keys are
// accepted for any class name.
const std::vector<std::string>& KnownParentClasses();
bool IsKnownParentClass(const std::string& key);

// Fused-experts name normalization of §1.3: "...weight_quantizers.7" -> "...weight_quantizer".
std::string NormalizeFusedExpertsName(const std::string& name);

// True iff entry `e` addresses `slot` (glob on the name or its normalized form, parent_class filter).
bool EntryMatches(const QuantizerCfgEntry& e, const QuantizerSlot& slot);

// set_quantizer_by_cfg: applies the entries in order (last writer wins). An entry with cfg replaces all
// attributes (unset ones back to defaults; a list makes the quantizer sequential, a single cfg makes it
// single again; cfg.enable is overwritten by the entry's enable); an enable-only entry flips the enabled
// state only (and disabling also turns rotation off). Throws for an unknown parent_class even if nothing
// matches. Updates decided_by. Warnings (sequential length mismatch) go to LogWarning.
// decided_by indexes `entries` (the normalized list: a legacy nn.*-scoped dict may have expanded into several).
void ApplyQuantCfg(const QuantCfgList& entries, std::vector<QuantizerSlot>& slots);

// set_quantizer_by_cfg_context: applies `entries` while alive and restores every slot (attributes, single vs
// sequential, decided_by) when destroyed. Rejects entries whose cfg is a list.
class ScopedQuantCfg {
 public:
  ScopedQuantCfg(const QuantCfgList& entries, std::vector<QuantizerSlot>& slots);
  ~ScopedQuantCfg();
  ScopedQuantCfg(const ScopedQuantCfg&) = delete;
  ScopedQuantCfg& operator=(const ScopedQuantCfg&) = delete;

 private:
  std::vector<QuantizerSlot>& slots_;
  std::vector<QuantizerSlot> saved_;
};

// _needs_activation_forward_for_max_calib (spec §6.2): some enabled quantizer whose name has no component
// ending in "weight_quantizer" needs data (static bias calibrator, or static non-MX amax calibration), not
// counting constant-amax quantizers.
bool NeedsActivationForward(const std::vector<QuantizerSlot>& slots);

}  // namespace qforge::config
