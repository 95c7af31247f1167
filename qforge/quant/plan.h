// The quantization plan of a model under a config: every quantizer, its parent class, whether it is on,
// what it does and which quant_cfg entry decided it (what `qforge plan` shows).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qforge/config/quantize_config.h"
#include "qforge/model/model.h"
#include "qforge/quant/quant_state.h"

namespace qforge {

// Indices of the quant_cfg entries that match no quantizer of `state` (name glob and parent_class filter,
// config::EntryMatches). Not an error: ModelOpt's default lists carry patterns for modules many models lack
// (routers, MTP, vision towers); plans and summaries list them so a mistyped pattern is seen.
std::vector<size_t> UnmatchedEntries(const config::QuantCfgList& quant_cfg, const QuantState& state);
// "note: 3 of 21 quant_cfg entries match no quantizer of this model: [4] '*router*', [7] ..." (one line,
// '\n'-terminated), or "" if every entry matches.
std::string UnmatchedEntriesNote(const config::QuantCfgList& quant_cfg, const QuantState& state);

// Throws qforge::Error if `quant_cfg` is empty or leaves no quantizer of `state` enabled (the export would be
// the unquantized model under a quantized name). `what` names the config in the message ("recipe X").
void CheckSomethingQuantized(const config::QuantCfgList& quant_cfg, const QuantState& state, const std::string& what);

// Plan as JSON: {"quantizers": [{name, parent_class, enabled, label, decided_by, attributes}], "summary":
// {"formats": {label: count}, "quantized_modules": n, "unquantized_linears": [...]}}; with `quant_cfg`, the
// summary also lists "unmatched_entries": [{"index": i, "quantizer_name": ..., "parent_class": ...}].
nlohmann::ordered_json PlanToJson(const Model& model, const QuantState& state,
                                  const config::QuantCfgList* quant_cfg = nullptr);

// Plan as text: one line per quantizer (or only enabled ones), then the summary (ending with
// UnmatchedEntriesNote when `quant_cfg` is given).
std::string PlanToText(const Model& model, const QuantState& state, bool only_enabled,
                       const config::QuantCfgList* quant_cfg = nullptr);

}  // namespace qforge
