// The quantization plan of a model under a config: every quantizer, its parent class, whether it is on,
// what it does and which quant_cfg entry decided it (what `qforge plan` shows).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "qforge/config/quantize_config.h"
#include "qforge/model/model.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

// Plan as JSON: {"quantizers": [{name, parent_class, enabled, label, decided_by, attributes}], "summary":
// {"formats": {label: count}, "quantized_modules": n, "unquantized_linears": [...]}}.
nlohmann::ordered_json PlanToJson(const Model& model, const QuantState& state);

// Plan as text: one line per quantizer (or only enabled ones), then the summary.
std::string PlanToText(const Model& model, const QuantState& state, bool only_enabled);

}  // namespace qforge
