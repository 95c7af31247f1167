// Rendering of quantization plans.
#include "qforge/quant/plan.h"

#include <fmt/format.h>

#include <map>

namespace qforge {
namespace {

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

nlohmann::ordered_json PlanToJson(const Model& model, const QuantState& state) {
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
  return {{"quantizers", qs},
          {"summary",
           {{"formats", fm},
            {"quantized_linears", quantized_modules},
            {"unquantized_linears", UnquantizedLinears(model, state)}}}};
}

std::string PlanToText(const Model& model, const QuantState& state, bool only_enabled) {
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
  return out;
}

}  // namespace qforge
