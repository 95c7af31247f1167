// What ModelOpt's export does to smoothed inputs before it writes them (spec §10.3,
// requantize_resmooth_fused_llm_layers), done by qforge at the end of the calibration that smoothed them
// (smoothquant, awq), layer by layer, so that layerwise checkpoints, eval and export all see the result.
// Every function returns the Linears whose weights it changed: their weight amax must be calibrated again.
#pragma once

#include <vector>

#include "qforge/model/model.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

struct PreQuantScaleGroups {
  int folded = 0;       // inputs whose pre_quant_scale went into the producing Linear's output rows
  int fold_skipped = 0;  // foldable pairs that could not be folded (grouped heads, a bias)
  int expert_groups = 0;  // routed-expert roles given one pre_quant_scale
  int sibling_groups = 0;  // shared-input groups given one pre_quant_scale
  std::vector<int> changed;  // Linears whose weights changed
  void Merge(const PreQuantScaleGroups& o);
};

// NVFP4 AWQ (nvfp4_awq: an NVFP4 weight whose enabled NVFP4 input has a pre_quant_scale), on architectures
// whose ModelOpt class is in its fold table (ArchSpec::prequant_fold: Llama, Qwen3, Qwen3-MoE): o_proj's
// pre_quant_scale s is folded into v_proj (W_v[r, :] = dtype(W_v[r, :] · s_r)) and down_proj's into up_proj,
// for the dense MLP and each routed expert. The source keeps no pre_quant_scale and is marked
// pre_quant_scale_fused. Skipped (counted) when s does not match the producer's rows (grouped-query heads:
// ModelOpt's fuse_grouped_heads is off) or when the producer has a bias.
PreQuantScaleGroups FoldPreQuantScalesIntoProducers(Model& model, QuantState& state, int layer);

// MoE: each routed-expert Linear role of `layer` (all experts' gate_proj, ...) gets one pre_quant_scale, the
// mean of the experts', with the weights re-smoothed to it (W · s_old / s_new).
PreQuantScaleGroups ResmoothExpertPreQuantScales(Model& model, QuantState& state, int layer);

// Siblings among `modules` that read one input (the default shared-state patterns: q/k/v, gate/up, each
// expert's w1/w3) get one pre_quant_scale, the mean of theirs, with their weights re-smoothed: a runtime fuses
// them into one GEMM and scales the shared input once. Modules without a pre_quant_scale are left out.
PreQuantScaleGroups ResmoothSharedInputs(Model& model, QuantState& state, const std::vector<int>& modules);

}  // namespace qforge
