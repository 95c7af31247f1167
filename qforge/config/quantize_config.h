// QuantizeConfig (spec §1): the ordered quant_cfg list + algorithm + effective_bits, need_calibration and
// KV-cache list merging.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "qforge/config/algorithm_config.h"
#include "qforge/config/fields.h"
#include "qforge/config/quant_cfg.h"

namespace qforge::config {

void ParseValue(const Json& j, QuantCfgList* out, const std::string& path);
Json DumpValue(const QuantCfgList& v);
void ParseValue(const Json& j, AlgorithmSpec* out, const std::string& path);
Json DumpValue(const AlgorithmSpec& v);

// [{"quantizer_name": "*", "cfg": {"num_bits": 8, "axis": null}}]
QuantCfgList DefaultQuantCfg();

struct QuantizeConfig {
  QuantCfgList quant_cfg;
  AlgorithmSpec algorithm;
  std::optional<double> effective_bits;
  std::vector<std::string> fields_set;

  QuantizeConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    v.Field("quant_cfg", s.quant_cfg, DefaultQuantCfg(), "ordered entries; the last match wins (spec §1.3)");
    v.Field("algorithm", s.algorithm, AlgorithmSpec::Default(),
            "calibration: method name, {method: ...}, null or a list (spec §6)");
    v.Field("effective_bits", s.effective_bits, std::nullopt, "AutoQuantize cost override, in (0, 16]",
            CheckEffectiveBits);
  }

  // Validates a config dict (unknown keys rejected, quant_cfg normalized, algorithm configs constructed).
  static QuantizeConfig FromJson(const Json& j, const std::string& path = "");
  // Full form (entries normalized with all four keys) or only the given keys (entries exclude_unset).
  Json ToJson(bool exclude_unset = false) const;
};

// need_calibration (spec §1.5).
bool NeedCalibration(const QuantizeConfig& c);

// update_quant_cfg_with_kv_cache_quant (spec §1.6) on a config dict: quant_cfg becomes (existing list, or
// [{"quantizer_name": "*", "enable": false}] when absent/empty) + kv_entries; algorithm "max" if absent/null.
Json UpdateQuantCfgWithKvCacheQuant(const Json& config, const Json& kv_entries);
QuantizeConfig UpdateQuantCfgWithKvCacheQuant(const QuantizeConfig& config, const QuantCfgList& kv_entries);

}  // namespace qforge::config
