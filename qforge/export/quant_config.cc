// hf_quant_config.json / config.json quantization_config: building, serializing and parsing (spec §10.5–§10.7).
#include "qforge/export/quant_config.h"

#include <algorithm>
#include <cctype>
#include <map>
#include <set>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/read_limited.h"
#include "qforge/config/fnmatch.h"
#include "qforge/io/json_limits.h"
#include "qforge/model/model_config.h"

#ifndef QF_VERSION_STRING
#define QF_VERSION_STRING "0.0.0"
#endif

namespace qforge::exporter {
namespace {

// The ModelOpt release whose export format qforge follows (spec header; runtime contract sources).
constexpr std::string_view kModelOptFormatVersion = "0.47.0";

using WS = WeightStorage;
using SK = WeightScaleKind;
using P = Presence;

// clang-format off
const std::vector<ExportFormatTraits> kFormats = {
  // format                     name              quant_algo                   gs     awq    dflt weight           weight_scale     ws2            input_scale    pqs            vllm   mixed  trtllm
  {ExportFormat::kNone,          "none",           "",                          false, false, 0,   WS::kKeep,       SK::kNone,       P::kForbidden, P::kForbidden, P::kForbidden, false, false, false},
  {ExportFormat::kFp8,           "fp8",            "FP8",                       false, false, 0,   WS::kFp8,        SK::kScalarF32,  P::kForbidden, P::kRequired,  P::kForbidden, true,  true,  true},
  {ExportFormat::kFp8PcPt,       "fp8_pc_pt",      "FP8_PER_CHANNEL_PER_TOKEN", false, false, 0,   WS::kFp8,        SK::kChannelF32, P::kForbidden, P::kForbidden, P::kForbidden, true,  false, true},
  {ExportFormat::kFp8PbWo,       "fp8_pb_wo",      "fp8_pb_wo",                 false, false, 128, WS::kFp8,        SK::kBlock2dF32, P::kForbidden, P::kForbidden, P::kForbidden, true,  false, true},
  {ExportFormat::kNvfp4,         "nvfp4",          "NVFP4",                     true,  false, 16,  WS::kPackedIn4,  SK::kGroupF8,    P::kRequired,  P::kRequired,  P::kForbidden, true,  true,  true},
  {ExportFormat::kW4a16Nvfp4,    "w4a16_nvfp4",    "W4A16_NVFP4",               true,  false, 16,  WS::kPackedIn4,  SK::kGroupF8,    P::kRequired,  P::kTolerated, P::kForbidden, true,  true,  false},
  {ExportFormat::kMxfp8,         "mxfp8",          "MXFP8",                     true,  false, 32,  WS::kFp8,        SK::kGroupE8M0,  P::kForbidden, P::kOptional,  P::kForbidden, true,  false, false},
  {ExportFormat::kInt8Sq,        "int8_sq",        "W8A8_SQ_PER_CHANNEL",       false, false, 0,   WS::kInt8,       SK::kChannelF32, P::kForbidden, P::kRequired,  P::kOptional,  false, false, true},
  {ExportFormat::kInt8Wo,        "int8_wo",        "W8A16",                     false, false, 0,   WS::kInt8,       SK::kChannelF32, P::kForbidden, P::kForbidden, P::kForbidden, false, false, true},
  {ExportFormat::kInt4Awq,       "int4_awq",       "W4A16_AWQ",                 true,  true,  128, WS::kPackedOut4, SK::kGroupF32,   P::kForbidden, P::kForbidden, P::kOptional,  false, false, true},
  {ExportFormat::kW4a8Awq,       "w4a8_awq",       "W4A8_AWQ",                  true,  true,  128, WS::kPackedOut4, SK::kGroupF32,   P::kRequired,  P::kRequired,  P::kOptional,  false, false, true},
  {ExportFormat::kNvfp4Awq,      "nvfp4_awq",      "NVFP4_AWQ",                 true,  true,  16,  WS::kPackedIn4,  SK::kGroupF8,    P::kRequired,  P::kRequired,  P::kOptional,  false, false, false},
  {ExportFormat::kW4a8Nvfp4Fp8,  "w4a8_nvfp4_fp8", "W4A8_NVFP4_FP8",            true,  false, 32,  WS::kPackedIn4,  SK::kGroupF8,    P::kRequired,  P::kRequired,  P::kForbidden, false, false, true},
  {ExportFormat::kW4a8Mxfp4Fp8,  "w4a8_mxfp4_fp8", "W4A8_MXFP4_FP8",            true,  false, 32,  WS::kPackedIn4,  SK::kGroupE8M0,  P::kForbidden, P::kRequired,  P::kForbidden, false, false, true},
  {ExportFormat::kMxfp4,         "mxfp4",          "mxfp4",                     false, false, 32,  WS::kPackedIn4,  SK::kGroupE8M0,  P::kForbidden, P::kForbidden, P::kForbidden, false, false, false},
  {ExportFormat::kNvfp4Svdquant, "nvfp4_svdquant", "NVFP4_SVD",                 true,  true,  16,  WS::kPackedIn4,  SK::kGroupF8,    P::kRequired,  P::kRequired,  P::kOptional,  false, false, false},
};
// clang-format on

struct KvRow {
  KvCacheAlgo algo;
  std::string_view name;
};
constexpr KvRow kKvAlgos[] = {{KvCacheAlgo::kNone, ""},
                              {KvCacheAlgo::kFp8, "FP8"},
                              {KvCacheAlgo::kNvfp4, "NVFP4"},
                              {KvCacheAlgo::kNvfp4Affine, "NVFP4_AFFINE"},
                              {KvCacheAlgo::kInt8, "INT8"}};

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string RStripStars(std::string_view s) {
  size_t n = s.size();
  while (n > 0 && s[n - 1] == '*') --n;
  return std::string(s.substr(0, n));
}

// A JSON value at `key` of object `j` as an optional string; throws if present and neither string nor null.
std::optional<std::string> OptString(const Json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  QF_CHECK(it->is_string(), "{}: \"{}\" must be a string or null, got {}", where, key, it->dump());
  return it->get<std::string>();
}

std::optional<int> OptInt(const Json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  QF_CHECK(it->is_number_integer(), "{}: \"{}\" must be an integer, got {}", where, key, it->dump());
  return it->get<int>();
}

std::optional<bool> OptBool(const Json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  QF_CHECK(it->is_boolean(), "{}: \"{}\" must be a boolean, got {}", where, key, it->dump());
  return it->get<bool>();
}

std::optional<std::vector<std::string>> OptStringList(const Json& j, const char* key, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  QF_CHECK(it->is_array(), "{}: \"{}\" must be a list, got {}", where, key, it->dump());
  std::vector<std::string> out;
  for (const auto& e : *it) {
    QF_CHECK(e.is_string(), "{}: \"{}\" entries must be strings, got {}", where, key, e.dump());
    out.push_back(e.get<std::string>());
  }
  return out;
}

Producer ParseProducer(const Json& j, const std::string& where) {
  Producer p{"", ""};
  auto it = j.find("producer");
  if (it == j.end() || !it->is_object()) return p;
  p.name = OptString(*it, "name", where + " producer").value_or("");
  auto v = it->find("version");
  if (v != it->end()) p.version = v->is_string() ? v->get<std::string>() : v->dump();
  return p;
}

std::vector<std::pair<std::string, LayerQuantConfig>> ParseQuantizedLayers(const Json& j, const std::string& where) {
  std::vector<std::pair<std::string, LayerQuantConfig>> out;
  auto it = j.find("quantized_layers");
  if (it == j.end() || it->is_null()) return out;
  QF_CHECK(it->is_object(), "{}: \"quantized_layers\" must be an object, got {}", where, it->dump());
  for (const auto& [name, cfg] : it->items()) {
    out.emplace_back(name, LayerQuantConfig::FromJson(cfg, where + " quantized_layers[\"" + name + "\"]"));
  }
  return out;
}

Json ProducerJson(const Producer& p) { return Json{{"name", p.name}, {"version", p.version}}; }

// Config group content for one layer config in MIXED_PRECISION (`_quant_algo_to_group_config`).
Json GroupConfigFor(const std::string& algo, std::optional<int> group_size) {
  auto gs = [&](int dflt) { return group_size && *group_size != 0 ? *group_size : dflt; };
  auto f = [](int bits, const char* type) { return Json{{"dynamic", false}, {"num_bits", bits}, {"type", type}}; };
  auto fg = [](int bits, const char* type, int g) {
    return Json{{"dynamic", false}, {"num_bits", bits}, {"type", type}, {"group_size", g}};
  };
  if (algo == "FP8") return Json{{"input_activations", f(8, "float")}, {"weights", f(8, "float")}};
  if (algo == "FP8_PER_CHANNEL_PER_TOKEN") {
    Json w = f(8, "float");
    w["strategy"] = "channel";
    return Json{{"input_activations", f(8, "float")}, {"weights", w}};
  }
  if (algo == "NVFP4") return Json{{"input_activations", fg(4, "float", gs(16))}, {"weights", fg(4, "float", gs(16))}};
  if (algo == "W4A16_AWQ") return Json{{"weights", fg(4, "int", gs(128))}};
  if (algo == "W4A16_NVFP4") return Json{{"weights", fg(4, "float", gs(16))}};
  if (algo == "NVFP4_SVD") {
    return Json{{"input_activations", fg(4, "float", gs(16))},
                {"weights", fg(4, "float", gs(16))},
                {"has_zero_point", false},
                {"pre_quant_scale", true}};
  }
  if (algo == "NVFP4_AWQ" || algo == "W4A8_AWQ") {
    return Json{{"input_activations", fg(8, "float", gs(128))}, {"weights", fg(4, "float", gs(128))}};
  }
  if (algo == "W8A16") return Json{{"weights", f(8, "int")}};
  if (algo == "W8A8_SQ_PER_CHANNEL") {
    Json w = f(8, "int");
    w["strategy"] = "channel";
    return Json{{"input_activations", f(8, "int")}, {"weights", w}};
  }
  if (algo == "W4A8_NVFP4_FP8" || algo == "W4A8_MXFP4_FP8") {
    return Json{{"input_activations", f(8, "float")}, {"weights", fg(4, "float", gs(16))}};
  }
  if (algo == "MXFP8") return Json{{"input_activations", fg(8, "float", gs(32))}, {"weights", fg(8, "float", gs(32))}};
  return Json{{"quant_algo", algo}};
}

}  // namespace

const ExportFormatTraits& Traits(ExportFormat f) {
  const auto& row = kFormats[static_cast<size_t>(f)];
  QF_ASSERT(row.format == f, "export format table out of order");
  return row;
}

const std::vector<ExportFormatTraits>& AllExportFormats() { return kFormats; }

std::optional<ExportFormat> ExportFormatFromName(std::string_view name) {
  for (const auto& r : kFormats) {
    if (r.name == name) return r.format;
  }
  return std::nullopt;
}

std::optional<ExportFormat> ExportFormatFromQuantAlgo(std::string_view quant_algo) {
  const std::string up = Upper(quant_algo);
  if (up.empty()) return std::nullopt;
  for (const auto& r : kFormats) {
    if (!r.quant_algo.empty() && Upper(r.quant_algo) == up) return r.format;
  }
  return std::nullopt;
}

std::string_view KvCacheAlgoName(KvCacheAlgo a) { return kKvAlgos[static_cast<size_t>(a)].name; }

std::optional<KvCacheAlgo> KvCacheAlgoFromName(std::string_view name) {
  const std::string up = Upper(name);
  for (const auto& r : kKvAlgos) {
    if (r.algo != KvCacheAlgo::kNone && r.name == up) return r.algo;
  }
  return std::nullopt;
}

LayerQuantConfig LayerQuantConfig::For(ExportFormat f, int group_size) {
  const auto& t = Traits(f);
  QF_ASSERT(f != ExportFormat::kNone, "no layer config for an unquantized module");
  LayerQuantConfig c;
  c.quant_algo = std::string(t.quant_algo);
  if (t.writes_group_size) c.group_size = group_size;
  if (t.awq_keys) {
    c.has_zero_point = false;
    c.pre_quant_scale = true;
  }
  return c;
}

Json LayerQuantConfig::ToJson() const {
  Json j = {{"quant_algo", quant_algo}};
  if (group_size) j["group_size"] = *group_size;
  if (has_zero_point) j["has_zero_point"] = *has_zero_point;
  if (pre_quant_scale) j["pre_quant_scale"] = *pre_quant_scale;
  return j;
}

LayerQuantConfig LayerQuantConfig::FromJson(const Json& j, const std::string& where) {
  QF_CHECK(j.is_object(), "{}: a layer config must be an object, got {}", where, j.dump());
  LayerQuantConfig c;
  auto algo = OptString(j, "quant_algo", where);
  QF_CHECK(algo.has_value(), "{}: missing \"quant_algo\"", where);
  c.quant_algo = *algo;
  c.group_size = OptInt(j, "group_size", where);
  c.has_zero_point = OptBool(j, "has_zero_point", where);
  c.pre_quant_scale = OptBool(j, "pre_quant_scale", where);
  return c;
}

Producer QforgeProducer() {
  return Producer{"modelopt", std::string(kModelOptFormatVersion) + "+qforge." + QF_VERSION_STRING};
}

std::optional<LayerQuantConfig> HfQuantConfig::LayerConfigFor(const std::string& name) const {
  if (!quant_algo) return std::nullopt;
  if (is_mixed()) {
    for (const auto& [n, c] : quantized_layers) {
      if (n == name) return c;
    }
    return std::nullopt;
  }
  if (exclude_modules && VllmIsExcluded(name, *exclude_modules)) return std::nullopt;
  LayerQuantConfig c;
  c.quant_algo = *quant_algo;
  c.group_size = group_size;
  c.has_zero_point = has_zero_point;
  c.pre_quant_scale = pre_quant_scale;
  return c;
}

std::string VllmExcludeMatch(std::string_view module, std::string_view entry) {
  if (config::FnMatch(module, entry)) return "fnmatch";
  const std::string stem = RStripStars(entry);
  if (!stem.empty() && module.find(stem) != std::string_view::npos) {
    return fmt::format("legacy substring match of '{}'", stem);
  }
  // apply_vllm_mapper: `foo*` (char before '*' not '.') becomes `foo` and `foo.*`.
  if (entry.size() >= 2 && entry.back() == '*' && entry[entry.size() - 2] != '.') {
    const std::string base(entry.substr(0, entry.size() - 1));
    for (const std::string& part : {base, base + ".*"}) {
      if (config::FnMatch(module, part)) return fmt::format("fnmatch of '{}' after vLLM's foo* split", part);
      const std::string s = RStripStars(part);
      if (!s.empty() && module.find(s) != std::string_view::npos) {
        return fmt::format("substring match of '{}' after vLLM's foo* split", s);
      }
    }
  }
  return "";
}

bool VllmIsExcluded(std::string_view module, const std::vector<std::string>& entries) {
  for (const auto& e : entries) {
    if (!VllmExcludeMatch(module, e).empty()) return true;
  }
  return false;
}

namespace {

// Candidate pattern lists of `name` from shortest to longest (ModelOpt's
// next_formatted_matching_prefix_wildcards): at every '.', `name[:i]*` then {name[:i], name[:i].*}; last
// the name itself.
std::vector<std::vector<std::string>> Candidates(const std::string& name) {
  std::vector<std::vector<std::string>> out;
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '.') continue;
    const std::string p = name.substr(0, i);
    out.push_back({p + "*"});
    out.push_back({p, p + ".*"});
  }
  out.push_back({name});
  return out;
}

// What a candidate contributes to the summary: for the pair {p, p.*} only p.*.
std::vector<std::string> Emitted(const std::vector<std::string>& cand) {
  if (cand.size() == 2 && cand[1] == cand[0] + ".*") return {cand[1]};
  return cand;
}

// Shared by PrefixWildcardSummary (vllm_safe=false) and BuildQuantConfig (vllm_safe=true).
std::vector<std::string> Summarize(const std::vector<std::string>& unquantized,
                                   const std::vector<std::string>& quantized, bool vllm_safe) {
  std::set<std::string> negative;  // every quantized name and every character prefix of it followed by '*'
  for (const auto& q : quantized) {
    negative.insert(q);
    for (size_t i = 0; i <= q.size(); ++i) negative.insert(q.substr(0, i) + "*");
  }
  std::set<std::string> result;
  for (const auto& u : unquantized) {
    std::vector<std::string> chosen;
    bool found = false;
    for (const auto& cand : Candidates(u)) {
      if (std::any_of(cand.begin(), cand.end(), [&](const std::string& w) { return negative.count(w) != 0; })) {
        continue;
      }
      if (vllm_safe) {
        bool unsafe = false;
        for (const auto& e : Emitted(cand)) {
          for (const auto& q : quantized) {
            if (!VllmExcludeMatch(q, e).empty()) {
              unsafe = true;
              break;
            }
          }
          if (unsafe) break;
        }
        if (unsafe) continue;
      }
      found = true;
      if (std::all_of(cand.begin(), cand.end(), [&](const std::string& w) { return result.count(w) != 0; })) {
        break;  // already covered
      }
      chosen = cand;
      break;
    }
    if (vllm_safe && !found) {
      std::string culprit;
      for (const auto& q : quantized) {
        const std::string why = VllmExcludeMatch(q, u);
        if (!why.empty()) {
          culprit = fmt::format("'{}' ({})", q, why);
          break;
        }
      }
      QF_FAIL(
          "cannot exclude unquantized module '{}': every exclude entry that covers it, down to its exact name, "
          "would also make vLLM skip quantized module {}. Quantize '{}' too, or leave its sibling unquantized.",
          u, culprit.empty() ? std::string("(the exact name is itself quantized)") : culprit, u);
    }
    for (const auto& e : Emitted(chosen)) result.insert(e);
  }
  return {result.begin(), result.end()};
}

}  // namespace

std::vector<std::string> PrefixWildcardSummary(const std::vector<std::string>& unquantized,
                                               const std::vector<std::string>& quantized) {
  return Summarize(unquantized, quantized, /*vllm_safe=*/false);
}

HfQuantConfig BuildQuantConfig(const QuantConfigInput& input) {
  HfQuantConfig c;
  c.producer = input.producer;
  if (input.kv_cache != KvCacheAlgo::kNone) c.kv_cache_quant_algo = std::string(KvCacheAlgoName(input.kv_cache));

  std::set<std::string> seen;
  std::vector<std::string> quantized, unquantized;
  std::vector<LayerQuantConfig> distinct;
  for (const auto& m : input.modules) {
    QF_CHECK(!m.name.empty(), "export quant config: a module has an empty name");
    QF_CHECK(seen.insert(m.name).second, "export quant config: module '{}' is listed twice", m.name);
    if (m.format == ExportFormat::kNone) {
      unquantized.push_back(m.name);
      continue;
    }
    LayerQuantConfig lc = LayerQuantConfig::For(m.format, m.group_size);
    if (std::find(distinct.begin(), distinct.end(), lc) == distinct.end()) distinct.push_back(lc);
    quantized.push_back(m.name);
    c.quantized_layers.emplace_back(m.name, lc);
  }
  for (const auto& r : input.extra_unquantized) {
    if (seen.insert(r).second) unquantized.push_back(r);  // ModelOpt: setdefault (a listed module wins)
  }

  if (distinct.size() > 1) {
    c.quant_algo = "MIXED_PRECISION";
  } else if (distinct.size() == 1) {
    const LayerQuantConfig& lc = distinct.front();
    c.quant_algo = lc.quant_algo;
    c.group_size = lc.group_size;
    c.has_zero_point = lc.has_zero_point;
    c.pre_quant_scale = lc.pre_quant_scale;
    c.exclude_modules = Summarize(unquantized, quantized, /*vllm_safe=*/true);
    c.quantized_layers.clear();
  }
  if (!input.mtp_prefixes.empty()) {
    if (!c.exclude_modules) c.exclude_modules.emplace();
    for (const auto& p : input.mtp_prefixes) {
      const std::string pattern = p + "*";
      if (std::find(c.exclude_modules->begin(), c.exclude_modules->end(), pattern) == c.exclude_modules->end()) {
        c.exclude_modules->push_back(pattern);
      }
    }
  }
  return c;
}

Json ToHfQuantConfigJson(const HfQuantConfig& c) {
  Json q = Json::object();
  q["quant_algo"] = c.quant_algo ? Json(*c.quant_algo) : Json(nullptr);
  q["kv_cache_quant_algo"] = c.kv_cache_quant_algo ? Json(*c.kv_cache_quant_algo) : Json(nullptr);
  if (c.is_mixed() || !c.quant_algo) {
    // ModelOpt keeps the (possibly empty) quantized_layers dict unless exactly one format was found.
    Json layers = Json::object();
    for (const auto& [name, lc] : c.quantized_layers) layers[name] = lc.ToJson();
    q["quantized_layers"] = layers;
  } else {
    if (c.group_size) q["group_size"] = *c.group_size;
    if (c.has_zero_point) q["has_zero_point"] = *c.has_zero_point;
    if (c.pre_quant_scale) q["pre_quant_scale"] = *c.pre_quant_scale;
  }
  if (c.exclude_modules) q["exclude_modules"] = *c.exclude_modules;
  return Json{{"producer", ProducerJson(c.producer)}, {"quantization", q}};
}

Json ToInlineQuantizationConfig(const HfQuantConfig& c) {
  Json out = Json::object();
  const std::string algo = c.quant_algo.value_or("");
  auto single_group = [&](Json group) {
    group["targets"] = Json::array({"Linear"});
    out["config_groups"] = Json{{"group_0", group}};
  };
  const int gs = c.group_size.value_or(16);
  auto f = [](int bits) { return Json{{"dynamic", false}, {"num_bits", bits}, {"type", "float"}}; };
  auto fg = [](int bits, int g) {
    return Json{{"dynamic", false}, {"num_bits", bits}, {"type", "float"}, {"group_size", g}};
  };
  if (algo == "FP8") {
    single_group(Json{{"input_activations", f(8)}, {"weights", f(8)}});
  } else if (algo == "NVFP4") {
    single_group(Json{{"input_activations", fg(4, gs)}, {"weights", fg(4, gs)}});
  } else if (algo == "W4A16_NVFP4") {
    single_group(Json{{"weights", fg(4, gs)}});
  } else if (algo == "NVFP4_SVD") {
    single_group(Json{{"input_activations", fg(4, gs)},
                      {"weights", fg(4, gs)},
                      {"has_zero_point", false},
                      {"pre_quant_scale", true}});
  } else if (algo == "MIXED_PRECISION") {
    // One group per distinct layer config, in first-seen order; targets sorted.
    std::vector<std::pair<LayerQuantConfig, std::vector<std::string>>> groups;
    for (const auto& [name, lc] : c.quantized_layers) {
      // (clang 14 cannot capture a structured binding in a lambda)
      auto it = std::find_if(groups.begin(), groups.end(), [&lc = lc](const auto& g) { return g.first == lc; });
      if (it == groups.end()) {
        groups.push_back({lc, {name}});
      } else {
        it->second.push_back(name);
      }
    }
    Json cg = Json::object();
    for (size_t i = 0; i < groups.size(); ++i) {
      Json g = GroupConfigFor(groups[i].first.quant_algo, groups[i].first.group_size);
      std::vector<std::string> targets = groups[i].second;
      std::sort(targets.begin(), targets.end());
      g["targets"] = targets;
      cg["group_" + std::to_string(i)] = g;
    }
    out["config_groups"] = cg;
    Json layers = Json::object();
    for (const auto& [name, lc] : c.quantized_layers) layers[name] = lc.ToJson();
    out["quantized_layers"] = layers;
  }
  out["ignore"] = c.exclude_modules ? Json(*c.exclude_modules) : Json::array();
  if (c.quant_algo) out["quant_algo"] = *c.quant_algo;
  if (c.kv_cache_quant_algo) {
    if (*c.kv_cache_quant_algo == "FP8") {
      out["kv_cache_scheme"] = f(8);
    } else {
      out["kv_cache_scheme"] = *c.kv_cache_quant_algo;
    }
  }
  out["producer"] = ProducerJson(c.producer);
  out["quant_method"] = "modelopt";
  return out;
}

HfQuantConfig ParseHfQuantConfigJson(const Json& j, const std::string& source) {
  QF_CHECK(j.is_object(), "{}: expected a JSON object", source);
  auto qit = j.find("quantization");
  QF_CHECK(qit != j.end() && qit->is_object(), "{}: missing the \"quantization\" object", source);
  const Json& q = *qit;
  HfQuantConfig c;
  c.producer = ParseProducer(j, source);
  c.quant_algo = OptString(q, "quant_algo", source);
  c.kv_cache_quant_algo = OptString(q, "kv_cache_quant_algo", source);
  c.group_size = OptInt(q, "group_size", source);
  c.has_zero_point = OptBool(q, "has_zero_point", source);
  c.pre_quant_scale = OptBool(q, "pre_quant_scale", source);
  c.exclude_modules = OptStringList(q, "exclude_modules", source);
  c.quantized_layers = ParseQuantizedLayers(q, source);
  return c;
}

HfQuantConfig ParseInlineQuantizationConfig(const Json& j, const std::string& source) {
  QF_CHECK(j.is_object(), "{}: expected a JSON object", source);
  // A nested-shape config placed inline (older exports) is read as such.
  if (j.contains("quantization")) return ParseHfQuantConfigJson(j, source);
  HfQuantConfig c;
  c.producer = ParseProducer(j, source);
  c.quant_algo = OptString(j, "quant_algo", source);
  auto kv = j.find("kv_cache_scheme");
  if (kv != j.end() && !kv->is_null()) {
    if (kv->is_string()) {
      c.kv_cache_quant_algo = kv->get<std::string>();
    } else if (kv->is_object()) {
      // The only dict ModelOpt writes is FP8's; read it the way vLLM does (float, 8 bits => FP8).
      const Json type = kv->value("type", Json());
      const Json bits = kv->value("num_bits", Json());
      if (type == "float" && bits == 8) {
        c.kv_cache_quant_algo = "FP8";
      } else if (type == "int" && bits == 8) {
        c.kv_cache_quant_algo = "INT8";
      } else {
        QF_FAIL("{}: unrecognised \"kv_cache_scheme\" {}", source, kv->dump());
      }
    } else {
      QF_FAIL("{}: \"kv_cache_scheme\" must be an object or a string, got {}", source, kv->dump());
    }
  }
  c.group_size = OptInt(j, "group_size", source);
  // The flat shape has no top-level group_size (vLLM defaults NVFP4 to 16); take it from config group 0.
  if (!c.group_size && c.quant_algo && *c.quant_algo != "MIXED_PRECISION") {
    auto cg = j.find("config_groups");
    if (cg != j.end() && cg->is_object() && cg->contains("group_0")) {
      const Json& g = (*cg)["group_0"];
      if (g.contains("weights") && g["weights"].is_object() && g["weights"].contains("group_size") &&
          g["weights"]["group_size"].is_number_integer()) {
        c.group_size = g["weights"]["group_size"].get<int>();
      }
    }
  }
  c.has_zero_point = OptBool(j, "has_zero_point", source);
  c.pre_quant_scale = OptBool(j, "pre_quant_scale", source);
  c.exclude_modules = OptStringList(j, "ignore", source);
  c.quantized_layers = ParseQuantizedLayers(j, source);
  return c;
}

const HfQuantConfig* CheckpointQuantConfigs::Effective() const {
  if (hf_quant_config) return &*hf_quant_config;
  if (inline_config) return &*inline_config;
  return nullptr;
}

CheckpointQuantConfigs ReadCheckpointQuantConfigs(const std::filesystem::path& dir) {
  CheckpointQuantConfigs out;
  const auto hf_path = dir / "hf_quant_config.json";
  std::error_code ec;  // a symlink loop counts as present: reading it then names the file
  if (std::filesystem::exists(std::filesystem::symlink_status(hf_path, ec))) {
    const std::string where = hf_path.string();
    out.hf_quant_config_json =
        ParseJsonBounded<Json>(ReadFileLimited(hf_path, kMaxConfigJsonBytes, "an hf_quant_config.json"), where);
    out.hf_quant_config = ParseHfQuantConfigJson(out.hf_quant_config_json, where);
  }
  const auto cfg_path = dir / "config.json";
  if (std::filesystem::exists(std::filesystem::symlink_status(cfg_path, ec))) {
    const std::string where = cfg_path.string();
    const Json cfg = ParseJsonBounded<Json>(ReadFileLimited(cfg_path, kMaxConfigJsonBytes, "a config.json"), where);
    if (cfg.is_object() && cfg.contains("quantization_config") && !cfg.at("quantization_config").is_null()) {
      out.inline_json = cfg.at("quantization_config");
      out.inline_config = ParseInlineQuantizationConfig(out.inline_json, where + " quantization_config");
    }
  }
  return out;
}

}  // namespace qforge::exporter
