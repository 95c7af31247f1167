// The ordered quant_cfg list (spec §1.1-§1.4): QuantizerCfgEntry, normalization of every accepted input
// shape (legacy flat dicts included), exact lookup and the AutoQuantize bare-name lookup.
//
// Spellings: the entry key is `quantizer_name` (released ModelOpt); the seed design's `quantizer_path` is
// accepted as an alias (an entry giving both is an error naming both). Dumps always use `quantizer_name`.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/config/fields.h"
#include "qforge/config/json_util.h"
#include "qforge/config/quantizer_attribute_config.h"

namespace qforge::config {

// Lookup failure (Python's KeyError in ModelOpt), e.g. find_quant_cfg_entry_by_path with no equal entry.
class KeyNotFoundError : public Error {
 public:
  using Error::Error;
};

// `cfg` of an entry: one attribute config, or a list of them (a SequentialQuantizer).
struct CfgValue {
  bool is_list = false;
  std::vector<QuantizerAttributeConfig> items;  // exactly one when !is_list
};
void ParseValue(const Json& j, CfgValue* out, const std::string& path);
Json DumpValue(const CfgValue& v);

struct QuantizerCfgEntry {
  std::string quantizer_name;
  std::optional<std::string> parent_class;
  std::optional<CfgValue> cfg;  // nullopt: leave attributes untouched (enable-only entry)
  bool enable;
  std::vector<std::string> fields_set;

  QuantizerCfgEntry() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    v.Field("quantizer_name", s.quantizer_name, "", "glob matched against full quantizer names (required)");
    v.Field("parent_class", s.parent_class, std::nullopt,
            "registry key of the quantizer's parent module class, e.g. 'nn.Linear'");
    v.Field("cfg", s.cfg, std::nullopt,
            "attributes (dict), a list of dicts (sequential quantizer) or null (leave attributes as they are)");
    v.Field("enable", s.enable, true, "turns matching quantizers on or off; overrides cfg.enable");
  }

  // Validates one new-format entry dict (spec §1.1 order). `path` names it in errors ("quant_cfg[3]").
  static QuantizerCfgEntry FromJson(const Json& j, const std::string& path);
  // Normalized form: all four keys, cfg shown with its explicitly given attributes only. With
  // `exclude_unset`, keys the user did not give are omitted (quantizer_name is always present).
  Json ToJson(bool exclude_unset = false) const;
  bool cfg_is_list() const { return cfg && cfg->is_list; }
};

using QuantCfgList = std::vector<QuantizerCfgEntry>;

// normalize_quant_cfg_list (spec §1.2): accepts a list of entries, legacy single-key dicts, `nn.*`-scoped
// dicts or a legacy flat mapping (deprecation warning through LogWarning). Errors name the element index.
QuantCfgList NormalizeQuantCfgList(const Json& v, const std::string& path = "quant_cfg");

// One element of a quant_cfg list (new-format dict, legacy single-key or nn.*-scoped dict) -> its entries.
// Sets *legacy when the element used a legacy shape (the caller emits the deprecation warning).
std::vector<QuantizerCfgEntry> NormalizeQuantCfgElement(const Json& raw, const std::string& path, bool* legacy);

Json QuantCfgToJson(const QuantCfgList& list, bool exclude_unset = false);

// find_quant_cfg_entry_by_path (spec §1.4): last entry whose quantizer_name equals `name` exactly.
// Throws KeyNotFoundError if none.
const QuantizerCfgEntry& FindQuantCfgEntryByPath(const QuantCfgList& list, const std::string& name);
QuantizerCfgEntry& FindQuantCfgEntryByPath(QuantCfgList& list, const std::string& name);

// AutoQuantize bare-name lookup (spec §A.1): entries with parent_class are skipped; an entry matches if
// fnmatch(bare, pattern) or pattern ends with `bare`; the last match wins. nullptr if none.
const QuantizerCfgEntry* MatchQuantizerCfgBare(const QuantCfgList& list, const std::string& bare_name);

}  // namespace qforge::config
