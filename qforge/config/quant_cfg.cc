// quant_cfg entries and normalize_quant_cfg_list (spec §1.1, §1.2).
#include "qforge/config/quant_cfg.h"

#include "qforge/base/log.h"
#include "qforge/base/strings.h"
#include "qforge/config/fnmatch.h"

namespace qforge::config {
namespace {

bool IsEmptyCfg(const Json& cfg) {
  if (cfg.is_object()) return cfg.empty();
  if (cfg.is_array()) {
    for (const auto& e : cfg) {
      if (!(e.is_object() && e.empty())) return false;
    }
    return true;
  }
  return false;
}

}  // namespace

void ParseValue(const Json& j, CfgValue* out, const std::string& path) {
  CfgValue v;
  if (j.is_object()) {
    v.items.push_back(QuantizerAttributeConfig::FromJson(j, path));
  } else if (j.is_array()) {
    v.is_list = true;
    for (size_t i = 0; i < j.size(); ++i) {
      std::string p = path + "[" + std::to_string(i) + "]";
      QF_CHECK(j[i].is_object(),
               "{}: cfg must be a valid dictionary or a valid list of dictionaries; element {} is {} {}", p, i,
               TypeName(j[i]), Brief(j[i]));
      v.items.push_back(QuantizerAttributeConfig::FromJson(j[i], p));
    }
  } else {
    QF_FAIL("{}: cfg must be a valid dictionary or a valid list of dictionaries (or null), got {} {}", path,
            TypeName(j), Brief(j));
  }
  *out = std::move(v);
}

Json DumpValue(const CfgValue& v) {
  if (!v.is_list) return v.items.at(0).ToJson(true);
  Json out = Json::array();
  for (const auto& c : v.items) out.push_back(c.ToJson(true));
  return out;
}

QuantizerCfgEntry QuantizerCfgEntry::FromJson(const Json& raw, const std::string& path) {
  QF_CHECK(raw.is_object(), "{}: a quant_cfg entry must be a dict, got {} {}", path, TypeName(raw), Brief(raw));
  Json j = raw;
  if (j.contains("quantizer_path")) {
    QF_CHECK(!j.contains("quantizer_name"),
             "{}: entry gives both 'quantizer_name' and 'quantizer_path' (the same key in two spellings); "
             "keep only 'quantizer_name'",
             path);
    Json renamed = Json::object();
    for (auto it = j.begin(); it != j.end(); ++it) {
      renamed[it.key() == "quantizer_path" ? std::string("quantizer_name") : it.key()] = it.value();
    }
    j = std::move(renamed);
  }
  RejectUnknownKeys(j, FieldNamesOf<QuantizerCfgEntry>(), path, "quant_cfg entry");
  QF_CHECK(j.contains("quantizer_name"), "{}: quant_cfg entry is missing the required key 'quantizer_name': {}",
           path, Brief(raw));
  QF_CHECK(j["quantizer_name"].is_string(), "{}.quantizer_name: expected a string, got {}", path,
           Brief(j["quantizer_name"]));
  if (auto it = j.find("parent_class"); it != j.end() && !it->is_null()) {
    QF_CHECK(it->is_string(), "{}.parent_class: expected a string or null, got {}", path, Brief(*it));
  }
  // Empty-cfg rule (spec §1.1 step 1).
  if (auto it = j.find("cfg"); it != j.end() && IsEmptyCfg(*it)) {
    auto en = j.find("enable");
    bool explicit_false = en != j.end() && en->is_boolean() && !en->get<bool>();
    QF_CHECK(explicit_false,
             "{}: cfg {} is empty: an enabled entry must specify at least one quantizer attribute (or set "
             "enable: false to disable)",
             path, Brief(*it));
    *it = nullptr;
  }
  QuantizerCfgEntry e;
  FieldParser p{j, path, &e.fields_set};
  VisitFields(e, p);
  QF_CHECK(IsSet(e.fields_set, "cfg") || IsSet(e.fields_set, "enable"),
           "{}: entry for '{}' must specify 'cfg', 'enable', or both", path, e.quantizer_name);
  return e;
}

Json QuantizerCfgEntry::ToJson(bool exclude_unset) const {
  if (!exclude_unset) return DumpFields(*this, false);
  Json out = DumpFields(*this, true);
  if (!out.contains("quantizer_name")) {
    Json with = Json::object();
    with["quantizer_name"] = quantizer_name;
    for (auto it = out.begin(); it != out.end(); ++it) with[it.key()] = it.value();
    out = std::move(with);
  }
  return out;
}

namespace {

// Legacy (key, value) pair -> new-format entry dicts (spec §1.2).
void ConvertLegacyPair(const std::string& key_in, const Json& value, const std::string& path,
                       std::vector<Json>* out) {
  std::string key = key_in == "default" ? "*" : key_in;
  if (StartsWith(key, "nn.")) {
    QF_CHECK(value.is_object(), "{}: For 'nn.*' scoped format, value must be a mapping of quantizer patterns to "
             "configs; got {} {} for key '{}'", path, TypeName(value), Brief(value), key);
    for (auto it = value.begin(); it != value.end(); ++it) {
      QF_CHECK(it.value().is_object(), "{}: legacy '{}' config for '{}' must be a dict, got {}", path, key,
               it.key(), Brief(it.value()));
      Json cfg = it.value();
      Json entry = Json::object();
      entry["parent_class"] = key;
      entry["quantizer_name"] = it.key();
      Json enable;
      bool has_enable = cfg.contains("enable");
      if (has_enable) {
        enable = cfg["enable"];
        cfg.erase("enable");
      }
      entry["cfg"] = cfg.empty() ? Json(nullptr) : cfg;
      if (has_enable) entry["enable"] = enable;
      out->push_back(std::move(entry));
    }
    return;
  }
  Json entry = Json::object();
  entry["quantizer_name"] = key;
  if (value.is_object()) {
    Json cfg = value;
    bool has_enable = cfg.contains("enable");
    Json enable;
    if (has_enable) {
      enable = cfg["enable"];
      cfg.erase("enable");
    }
    entry["cfg"] = cfg.empty() ? Json(nullptr) : cfg;
    if (has_enable) entry["enable"] = enable;
  } else {
    entry["cfg"] = value;
  }
  out->push_back(std::move(entry));
}

}  // namespace

std::vector<QuantizerCfgEntry> NormalizeQuantCfgElement(const Json& raw, const std::string& p, bool* legacy) {
  std::vector<QuantizerCfgEntry> out;
  if (raw.is_object() && (raw.contains("quantizer_name") || raw.contains("quantizer_path"))) {
    out.push_back(QuantizerCfgEntry::FromJson(raw, p));
    return out;
  }
  bool has_nn = false;
  if (raw.is_object()) {
    for (auto it = raw.begin(); it != raw.end(); ++it) has_nn = has_nn || StartsWith(it.key(), "nn.");
  }
  if (raw.is_object() && (raw.size() == 1 || (raw.size() > 1 && has_nn))) {
    if (legacy) *legacy = true;
    std::vector<Json> converted;
    for (auto it = raw.begin(); it != raw.end(); ++it) ConvertLegacyPair(it.key(), it.value(), p, &converted);
    for (const auto& e : converted) {
      out.push_back(QuantizerCfgEntry::FromJson(e, p + " (legacy '" + raw.begin().key() + "')"));
    }
    return out;
  }
  std::string hint;
  if (raw.is_object()) {
    for (auto it = raw.begin(); it != raw.end() && hint.empty(); ++it) {
      std::string close = ClosestName(it.key(), FieldNamesOf<QuantizerCfgEntry>());
      if (!close.empty() && close != it.key()) hint = fmt::format(" (did you mean '{}' instead of '{}'?)", close, it.key());
    }
  }
  QF_FAIL(
      "{}: Invalid quant_cfg entry: {}. Expected a dict with 'quantizer_name' (and 'cfg' and/or 'enable'), "
      "or a legacy single-key dict {{pattern: attributes}}{}",
      p, Brief(raw), hint);
}

QuantCfgList NormalizeQuantCfgList(const Json& v, const std::string& path) {
  Json items;
  bool warned = false;
  auto warn = [&] {
    if (!warned) {
      LogWarning(
          "DeprecationWarning: {}: the legacy dict format of quant_cfg is deprecated; use a list of entries "
          "{{quantizer_name, parent_class, cfg, enable}} (spec §1.2)",
          path);
      warned = true;
    }
  };
  if (v.is_object()) {
    warn();
    items = Json::array();
    for (auto it = v.begin(); it != v.end(); ++it) items.push_back(Json::object({{it.key(), it.value()}}));
  } else if (v.is_array()) {
    items = v;
  } else {
    QF_FAIL("{}: quant_cfg must be a sequence of entries (or a legacy flat mapping), got {} {}", path, TypeName(v),
            Brief(v));
  }
  QuantCfgList out;
  for (size_t i = 0; i < items.size(); ++i) {
    bool legacy = false;
    std::vector<QuantizerCfgEntry> es;
    try {
      es = NormalizeQuantCfgElement(items[i], path + "[" + std::to_string(i) + "]", &legacy);
    } catch (...) {
      if (legacy) warn();
      throw;
    }
    if (legacy) warn();
    for (auto& e : es) out.push_back(std::move(e));
  }
  return out;
}

Json QuantCfgToJson(const QuantCfgList& list, bool exclude_unset) {
  Json out = Json::array();
  for (const auto& e : list) out.push_back(e.ToJson(exclude_unset));
  return out;
}

const QuantizerCfgEntry& FindQuantCfgEntryByPath(const QuantCfgList& list, const std::string& name) {
  for (auto it = list.rbegin(); it != list.rend(); ++it) {
    if (it->quantizer_name == name) return *it;
  }
  throw KeyNotFoundError(fmt::format("no quant_cfg entry has quantizer_name '{}' (exact match, {} entries)", name,
                                     list.size()));
}

QuantizerCfgEntry& FindQuantCfgEntryByPath(QuantCfgList& list, const std::string& name) {
  return const_cast<QuantizerCfgEntry&>(FindQuantCfgEntryByPath(static_cast<const QuantCfgList&>(list), name));
}

const QuantizerCfgEntry* MatchQuantizerCfgBare(const QuantCfgList& list, const std::string& bare) {
  const QuantizerCfgEntry* found = nullptr;
  for (const auto& e : list) {
    if (e.parent_class) continue;
    if (FnMatch(bare, e.quantizer_name) || EndsWith(e.quantizer_name, bare)) found = &e;
  }
  return found;
}

}  // namespace qforge::config
