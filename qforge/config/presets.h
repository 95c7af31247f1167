// The --qformat / --kv_cache_qformat vocabulary of hf_ptq.py (spec §4.5, §11.1) over the embedded presets
// (configs/ptq/presets/model/*.yaml and configs/ptq/presets/kv/*.yaml).
#pragma once

#include <string>
#include <vector>

#include "qforge/config/quantize_config.h"

namespace qforge::config {

inline constexpr const char* kKvCacheNone = "none";

// Preset basenames, sorted.
std::vector<std::string> ModelQformatChoices();
std::vector<std::string> KvQformatChoices();

// The preset for `qformat` (removed aliases such as "int8_sq" accepted with a deprecation warning).
QuantizeConfig LoadModelPreset(const std::string& qformat);
// KV preset entries for `kv_qformat`; empty for "none".
QuantCfgList LoadKvPresetEntries(const std::string& kv_qformat);

// Model preset with the KV entries appended (update_quant_cfg_with_kv_cache_quant, spec §1.6).
QuantizeConfig ResolveQformat(const std::string& qformat, const std::string& kv_qformat);

}  // namespace qforge::config
