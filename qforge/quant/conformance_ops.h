// Conformance ops that quant/ implements (spec Appendix A): shared-state group discovery and population
// (spec §8) and the NVFP4 export block-scale cast (spec §5.5).
#pragma once

#include "qforge/config/conformance.h"

namespace qforge {

// Registers find_shared_input_groups, shared_global_amax_populate and cast_per_block_scale_to_fp8.
void RegisterQuantConformanceOps(config::ConformanceRegistry& registry);

}  // namespace qforge
