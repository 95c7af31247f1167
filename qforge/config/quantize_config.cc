// QuantizeConfig construction, need_calibration and KV-cache list merging.
#include "qforge/config/quantize_config.h"

#include "qforge/base/strings.h"

namespace qforge::config {

void ParseValue(const Json& j, QuantCfgList* out, const std::string& path) { *out = NormalizeQuantCfgList(j, path); }
Json DumpValue(const QuantCfgList& v) { return QuantCfgToJson(v, false); }
void ParseValue(const Json& j, AlgorithmSpec* out, const std::string& path) { *out = AlgorithmSpec::FromJson(j, path); }
Json DumpValue(const AlgorithmSpec& v) { return v.ToJson(); }

QuantCfgList DefaultQuantCfg() {
  static const Json k = Json::parse(R"([{"quantizer_name": "*", "cfg": {"num_bits": 8, "axis": null}}])");
  return NormalizeQuantCfgList(k);
}

QuantizeConfig QuantizeConfig::FromJson(const Json& j, const std::string& path) {
  QF_CHECK(j.is_object(), "{}: a quantize config must be a dict with quant_cfg / algorithm, got {} {}",
           path.empty() ? "config" : path, TypeName(j), Brief(j));
  RejectUnknownKeys(j, FieldNamesOf<QuantizeConfig>(), path, "quantize config");
  QuantizeConfig c;
  FieldParser p{j, path, &c.fields_set};
  VisitFields(c, p);
  return c;
}

Json QuantizeConfig::ToJson(bool exclude_unset) const {
  Json out = DumpFields(*this, exclude_unset);
  if (out.contains("quant_cfg")) out["quant_cfg"] = QuantCfgToJson(quant_cfg, exclude_unset);
  return out;
}

bool NeedCalibration(const QuantizeConfig& c) {
  const AlgorithmSpec& a = c.algorithm;
  if (!a.is_null() && !(a.kind == AlgorithmSpec::Kind::kName && a.configs.at(0).method() == "max")) return true;
  for (const auto& e : c.quant_cfg) {
    if (e.quantizer_name.find("weight_quantizer") != std::string::npos) continue;
    if (e.cfg_is_list()) {
      for (const auto& item : e.cfg->items) {
        if (item.enable && !item.IsDynamic()) return true;
      }
      continue;
    }
    QuantizerAttributeConfig attrs = e.cfg ? e.cfg->items.at(0) : QuantizerAttributeConfig{};
    attrs.enable = e.enable;
    if (attrs.enable && !attrs.IsDynamic()) return true;
  }
  return false;
}

Json UpdateQuantCfgWithKvCacheQuant(const Json& config, const Json& kv_entries) {
  QF_CHECK(config.is_object(), "config must be a dict, got {}", Brief(config));
  QF_CHECK(kv_entries.is_array(), "KV-cache entries must be a list, got {}", Brief(kv_entries));
  Json out = config;
  Json list = Json::array();
  if (out.contains("quant_cfg") && !out["quant_cfg"].is_null() && !out["quant_cfg"].empty()) {
    QF_CHECK(out["quant_cfg"].is_array(), "quant_cfg must be a list to merge KV-cache entries, got {}",
             Brief(out["quant_cfg"]));
    list = out["quant_cfg"];
  } else {
    list.push_back(Json::object({{"quantizer_name", "*"}, {"enable", false}}));
  }
  for (const auto& e : kv_entries) list.push_back(e);
  out["quant_cfg"] = list;
  if (!out.contains("algorithm") || out["algorithm"].is_null() ||
      (out["algorithm"].is_string() && out["algorithm"].get<std::string>().empty())) {
    out["algorithm"] = "max";
  }
  return out;
}

QuantizeConfig UpdateQuantCfgWithKvCacheQuant(const QuantizeConfig& config, const QuantCfgList& kv_entries) {
  QuantizeConfig out = config;
  if (out.quant_cfg.empty()) out.quant_cfg = NormalizeQuantCfgList(Json::parse(R"([{"quantizer_name": "*", "enable": false}])"));
  out.quant_cfg.insert(out.quant_cfg.end(), kv_entries.begin(), kv_entries.end());
  if (!IsSet(out.fields_set, "quant_cfg")) out.fields_set.push_back("quant_cfg");
  if (out.algorithm.is_null()) {
    out.algorithm = AlgorithmSpec::Default();
    if (!IsSet(out.fields_set, "algorithm")) out.fields_set.push_back("algorithm");
  }
  return out;
}

}  // namespace qforge::config
