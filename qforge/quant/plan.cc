// Rendering of quantization plans.
#include "qforge/quant/plan.h"

#include <fmt/format.h>

#include <map>

#include "qforge/base/error.h"
#include "qforge/config/quantizer_set.h"

namespace qforge {
namespace {

// "'*router*'" or "'*gate*' (parent_class hf.X)".
std::string EntryText(const config::QuantizerCfgEntry& e) {
  return e.parent_class ? fmt::format("'{}' (parent_class {})", e.quantizer_name, *e.parent_class)
                        : fmt::format("'{}'", e.quantizer_name);
}

// Linear modules whose weight quantizer is off: they stay in the model dtype.
std::vector<std::string> UnquantizedLinears(const Model& model, const QuantState& state) {
  std::vector<std::string> out;
  for (int m : model.linear_modules()) {
    const Quantizer* w = state.Get(m, QuantizerRole::kWeight);
    if (w == nullptr || !w->enabled()) out.push_back(model.modules()[static_cast<size_t>(m)].name);
  }
  return out;
}

}  // namespace

std::vector<size_t> UnmatchedEntries(const config::QuantCfgList& quant_cfg, const QuantState& state) {
  const std::vector<config::QuantizerSlot> slots = state.Slots();
  std::vector<size_t> out;
  for (size_t i = 0; i < quant_cfg.size(); ++i) {
    bool hit = false;
    for (const auto& slot : slots) {
      if (config::EntryMatches(quant_cfg[i], slot)) {
        hit = true;
        break;
      }
    }
    if (!hit) out.push_back(i);
  }
  return out;
}

std::string UnmatchedEntriesNote(const config::QuantCfgList& quant_cfg, const QuantState& state) {
  const auto unmatched = UnmatchedEntries(quant_cfg, state);
  if (unmatched.empty()) return "";
  std::vector<std::string> items;
  for (size_t i : unmatched) items.push_back(fmt::format("[{}] {}", i, EntryText(quant_cfg[i])));
  return fmt::format("note: {} of {} quant_cfg entries match no quantizer of this model: {}\n", unmatched.size(),
                     quant_cfg.size(), fmt::join(items, ", "));
}

void CheckSomethingQuantized(const config::QuantCfgList& quant_cfg, const QuantState& state,
                             const std::string& what) {
  QF_CHECK(!quant_cfg.empty(), "{}: quant_cfg is empty, so nothing would be quantized (ModelOpt would keep its "
           "initial INT8 attributes instead); give at least one entry", what);
  for (const auto& q : state.quantizers()) {
    if (q.enabled()) return;
  }
  QF_FAIL("{}: its {} quant_cfg entries enable no quantizer of this model, so the export would be the unquantized "
          "model; check the quantizer_name patterns (qforge plan lists every quantizer)", what, quant_cfg.size());
}

nlohmann::ordered_json PlanToJson(const Model& model, const QuantState& state, const config::QuantCfgList* quant_cfg) {
  nlohmann::ordered_json qs = nlohmann::ordered_json::array();
  std::map<std::string, int> formats;
  for (const auto& q : state.quantizers()) {
    const std::string label = QuantizerLabel(q);
    nlohmann::ordered_json attrs = nlohmann::ordered_json::array();
    for (const auto& st : q.slot.state.stages) attrs.push_back(st.ToJson(/*exclude_unset=*/true));
    qs.push_back({{"name", q.slot.name},
                  {"parent_class", q.slot.parent_class},
                  {"enabled", q.enabled()},
                  {"label", label},
                  {"decided_by", q.slot.decided_by},
                  {"attributes", q.sequential() ? attrs : attrs[0]}});
    if (q.enabled()) formats[label] += 1;
  }
  int quantized_modules = 0;
  for (int m : model.linear_modules()) {
    const Quantizer* w = state.Get(m, QuantizerRole::kWeight);
    if (w != nullptr && w->enabled()) ++quantized_modules;
  }
  nlohmann::ordered_json fm = nlohmann::ordered_json::object();
  for (const auto& [k, v] : formats) fm[k] = v;
  nlohmann::ordered_json out = {{"quantizers", qs},
                                {"summary",
                                 {{"formats", fm},
                                  {"quantized_linears", quantized_modules},
                                  {"unquantized_linears", UnquantizedLinears(model, state)}}}};
  if (quant_cfg != nullptr) {
    nlohmann::ordered_json um = nlohmann::ordered_json::array();
    for (size_t i : UnmatchedEntries(*quant_cfg, state)) {
      const auto& e = (*quant_cfg)[i];
      um.push_back({{"index", i},
                    {"quantizer_name", e.quantizer_name},
                    {"parent_class", e.parent_class ? nlohmann::ordered_json(*e.parent_class) : nullptr}});
    }
    out["summary"]["unmatched_entries"] = um;
  }
  return out;
}

std::string PlanToText(const Model& model, const QuantState& state, bool only_enabled,
                       const config::QuantCfgList* quant_cfg) {
  std::string out;
  std::map<std::string, int> formats;
  for (const auto& q : state.quantizers()) {
    const std::string label = QuantizerLabel(q);
    if (q.enabled()) formats[label] += 1;
    if (only_enabled && !q.enabled()) continue;
    const std::string entry = q.slot.decided_by >= 0 ? fmt::format("entry {}", q.slot.decided_by) : "initial";
    out += fmt::format("{:<72} {:<22} {:<16} {}\n", q.slot.name, q.slot.parent_class, label, entry);
  }
  out += "\nsummary:\n";
  for (const auto& [label, n] : formats) out += fmt::format("  {:<22} {} quantizers\n", label, n);
  const auto unq = UnquantizedLinears(model, state);
  out += fmt::format("  Linears quantized: {} of {}\n", model.linear_modules().size() - unq.size(),
                     model.linear_modules().size());
  if (!unq.empty()) out += fmt::format("  left unquantized: {}\n", fmt::join(unq, ", "));
  if (quant_cfg != nullptr) out += UnmatchedEntriesNote(*quant_cfg, state);
  return out;
}

}  // namespace qforge
