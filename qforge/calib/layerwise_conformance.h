// Conformance ops of layerwise calibration (spec Appendix A, cases `layerwise_*`): layerwise_set_layer_states,
// layerwise_checkpoint_run, layerwise_resume_detect. ModelOpt's PyTorch file names map onto qforge's files
// (docs/layerwise.md): weights.pt -> weights.safetensors, quantizer_state.pt -> quantizers.json,
// quantizer_buffers.pt -> quantizer_buffers.safetensors, output_meta.pt -> output_meta.json,
// next_inputs.pt -> next_inputs.safetensors.
#pragma once

#include "qforge/config/conformance.h"

namespace qforge {

// Registers the ops on `registry` (config/ cannot depend on calib/, so the CLI and tests call this), and
// nvfp4_act_headroom's `nvfp4_act_headroom_calibrator` (algo_act_headroom.cc).
void RegisterCalibConformanceOps(config::ConformanceRegistry& registry);
void RegisterActHeadroomConformanceOp(config::ConformanceRegistry& registry);

}  // namespace qforge
