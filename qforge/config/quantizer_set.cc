// ApplyQuantCfg and friends over a list of QuantizerSlot (spec §1.3, §6.2).
#include "qforge/config/quantizer_set.h"

#include <algorithm>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/strings.h"
#include "qforge/config/fnmatch.h"
#include "qforge/config/regex.h"

namespace qforge::config {

bool QuantizerState::enabled() const {
  for (const auto& s : stages) {
    if (s.enable) return true;
  }
  return false;
}

QuantizerState InitialQuantizerState(std::string_view kind) {
  QuantizerAttributeConfig a;  // INT8 per-tensor, enabled
  if (EndsWith(kind, "_output")) {
    a.enable = false;
  } else if (kind == "linear_weight" || kind == "conv_weight") {
    a.axis = AxisValue{{0}, false};
  } else if (!(EndsWith(kind, "_input") || kind == "embedding_weight" || kind == "bmm")) {
    QF_FAIL("unknown quantizer kind '{}' (expected linear_/conv_/bn_ input|output|weight, embedding_weight, bmm)",
            kind);
  }
  return QuantizerState::Single(a);
}

const std::vector<std::string>& KnownParentClasses() {
  static const std::vector<std::string> k = {
      "nn.Linear", "nn.Conv1d", "nn.Conv2d", "nn.Conv3d", "nn.ConvTranspose1d", "nn.ConvTranspose2d",
      "nn.ConvTranspose3d", "nn.BatchNorm1d", "nn.BatchNorm2d", "nn.BatchNorm3d", "nn.LayerNorm",
      "nn.InstanceNorm1d", "nn.InstanceNorm2d", "nn.InstanceNorm3d", "nn.LeakyReLU", "nn.Embedding",
      "nn.MaxPool1d", "nn.MaxPool2d", "nn.MaxPool3d", "nn.AvgPool1d", "nn.AvgPool2d", "nn.AvgPool3d",
      "nn.AdaptiveAvgPool1d", "nn.AdaptiveAvgPool2d", "nn.AdaptiveAvgPool3d", "nn.RNN", "nn.LSTM", "nn.GRU"};
  return k;
}

bool IsKnownParentClass(const std::string& key) {
  if (StartsWith(key, "hf.") && key.size() > 3) {
    for (char c : key.substr(3)) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) return false;
    }
    return true;
  }
  const auto& k = KnownParentClasses();
  return std::find(k.begin(), k.end(), key) != k.end();
}

std::string NormalizeFusedExpertsName(const std::string& name) {
  static const Regex kFused(R"((weight|input)_quantizers?\.\d+(?=$|\.))");
  if (name.find("_quantizer") == std::string::npos) return name;
  return kFused.ReplaceAll(name, "$1_quantizer");
}

bool EntryMatches(const QuantizerCfgEntry& e, const QuantizerSlot& slot) {
  if (e.parent_class && slot.parent_class != *e.parent_class) return false;
  if (FnMatch(slot.name, e.quantizer_name)) return true;
  std::string norm = NormalizeFusedExpertsName(slot.name);
  return norm != slot.name && FnMatch(norm, e.quantizer_name);
}

static void CheckParentClass(const QuantizerCfgEntry& e, size_t index) {
  if (!e.parent_class) return;
  if (IsKnownParentClass(*e.parent_class)) return;
  std::string hint = ClosestName(*e.parent_class, KnownParentClasses());
  QF_FAIL("quant_cfg[{}]: parent_class '{}' not found in QuantModuleRegistry{}; known keys: {} and hf.<ClassName>",
          index, *e.parent_class, hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
          fmt::join(KnownParentClasses(), ", "));
}

void ApplyQuantCfg(const QuantCfgList& entries, std::vector<QuantizerSlot>& slots) {
  for (size_t i = 0; i < entries.size(); ++i) {
    const QuantizerCfgEntry& e = entries[i];
    CheckParentClass(e, i);
    for (auto& slot : slots) {
      if (!EntryMatches(e, slot)) continue;
      slot.decided_by = static_cast<int>(i);
      QuantizerState& st = slot.state;
      if (!e.cfg) {
        for (auto& s : st.stages) {
          s.enable = e.enable;
          if (!e.enable) {
            s.rotate.flag = false;
            s.rotate.config.enable = false;
          }
        }
        continue;
      }
      std::vector<QuantizerAttributeConfig> fresh = e.cfg->items;
      for (auto& f : fresh) f.enable = e.enable;
      if (!e.cfg->is_list) {
        st = QuantizerState::Single(std::move(fresh[0]));
      } else if (st.sequential && st.stages.size() != fresh.size()) {
        LogWarning("quant_cfg[{}]: '{}' is a sequential quantizer of {} stages but the cfg list has {}; configuring "
                   "the first {}",
                   i, slot.name, st.stages.size(), fresh.size(), std::min(st.stages.size(), fresh.size()));
        for (size_t k = 0; k < std::min(st.stages.size(), fresh.size()); ++k) st.stages[k] = fresh[k];
      } else {
        st.sequential = true;
        st.stages = std::move(fresh);
      }
    }
  }
}

ScopedQuantCfg::ScopedQuantCfg(const QuantCfgList& entries, std::vector<QuantizerSlot>& slots)
    : slots_(slots), saved_(slots) {
  for (size_t i = 0; i < entries.size(); ++i) {
    QF_CHECK(!entries[i].cfg_is_list(),
             "quant_cfg[{}]: Sequential cfg lists are not allowed in a temporary (scoped) quant_cfg ('{}')", i,
             entries[i].quantizer_name);
  }
  ApplyQuantCfg(entries, slots_);
}

ScopedQuantCfg::~ScopedQuantCfg() { slots_ = std::move(saved_); }

bool NeedsActivationForward(const std::vector<QuantizerSlot>& slots) {
  for (const auto& slot : slots) {
    bool is_weight = false;
    for (const auto& comp : Split(slot.name, '.')) is_weight = is_weight || EndsWith(comp, "weight_quantizer");
    if (is_weight) continue;
    for (const auto& a : slot.state.stages) {
      if (!a.enable || a.IsConstantAmax()) continue;
      if (a.bias && a.bias->is_static()) return true;
      if (!a.IsDynamic() && !a.IsMx()) return true;
    }
  }
  return false;
}

}  // namespace qforge::config
