// Preset vocabulary over the embedded library.
#include "qforge/config/presets.h"

#include <algorithm>
#include <utility>

#include "qforge/base/log.h"
#include "qforge/base/strings.h"
#include "qforge/config/builtin_library.h"
#include "qforge/config/yaml_loader.h"

namespace qforge::config {
namespace {

std::vector<std::string> Basenames(const std::string& dir) {
  std::vector<std::string> out;
  std::string prefix = dir + "/";
  for (const auto& f : BuiltinFiles()) {
    std::string p = f.path;
    if (!StartsWith(p, prefix)) continue;
    std::string rest = p.substr(prefix.size());
    if (rest.find('/') != std::string::npos) continue;
    out.push_back(rest.substr(0, rest.rfind('.')));
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string Unalias(const std::string& q) {
  // Removed in ModelOpt 0.47 (spec §4.5); still understood here, with a warning.
  static const std::pair<const char*, const char*> kOld[] = {
      {"int8_sq", "int8_smoothquant"},       {"int8_wo", "int8_weight_only"},
      {"w4a8_awq", "w4a8_awq_beta"},          {"nvfp4_awq", "nvfp4_awq_lite"},
      {"nvfp4_mse", "nvfp4_w4a4_weight_mse_fp8_sweep"},
      {"nvfp4_local_hessian", "nvfp4_w4a4_weight_local_hessian"},
      {"fp8_pb_wo", "fp8_2d_blockwise_weight_only"}, {"fp8_pc_pt", "fp8_per_channel_per_token"}};
  for (const auto& [from, to] : kOld) {
    if (q == from) {
      LogWarning("DeprecationWarning: qformat '{}' is a removed alias; use '{}'", from, to);
      return to;
    }
  }
  return q;
}

void CheckChoice(const std::string& q, const std::vector<std::string>& choices, const char* flag) {
  if (std::find(choices.begin(), choices.end(), q) != choices.end()) return;
  std::string hint = ClosestName(q, choices);
  QF_FAIL("unknown {} '{}'{}; choices: {}", flag, q, hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint),
          fmt::join(choices, ", "));
}

}  // namespace

std::vector<std::string> ModelQformatChoices() { return Basenames("configs/ptq/presets/model"); }
std::vector<std::string> KvQformatChoices() { return Basenames("configs/ptq/presets/kv"); }

QuantizeConfig LoadModelPreset(const std::string& qformat_in) {
  std::string q = Unalias(qformat_in);
  CheckChoice(q, ModelQformatChoices(), "qformat");
  LoaderOptions o;
  o.base_dir = "/nonexistent-qforge-builtin-only";
  LoadedConfig c = LoadConfig("configs/ptq/presets/model/" + q, Schema::kQuantizeConfig, o);
  return QuantizeConfig::FromJson(c.value, "qformat " + q);
}

QuantCfgList LoadKvPresetEntries(const std::string& kv) {
  if (kv == kKvCacheNone) return {};
  CheckChoice(kv, KvQformatChoices(), "kv_cache_qformat");
  LoaderOptions o;
  o.base_dir = "/nonexistent-qforge-builtin-only";
  LoadedConfig c = LoadConfig("configs/ptq/presets/kv/" + kv, Schema::kQuantizeConfig, o);
  QF_CHECK(c.value.contains("quant_cfg"), "kv preset '{}' has no quant_cfg", kv);
  return NormalizeQuantCfgList(c.value["quant_cfg"], "kv_cache_qformat " + kv);
}

QuantizeConfig ResolveQformat(const std::string& qformat, const std::string& kv_qformat) {
  QuantizeConfig c = LoadModelPreset(qformat);
  QuantCfgList kv = LoadKvPresetEntries(kv_qformat);
  if (kv.empty()) return c;
  return UpdateQuantCfgWithKvCacheQuant(c, kv);
}

}  // namespace qforge::config
