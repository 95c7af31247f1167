// Conformance runner and the handlers of config/'s ops.
#include "qforge/config/conformance.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/log.h"
#include "qforge/base/strings.h"
#include "qforge/config/algorithm_config.h"
#include "qforge/config/quant_cfg.h"
#include "qforge/config/quantize_config.h"
#include "qforge/config/quantizer_set.h"
#include "qforge/config/yaml_loader.h"

namespace qforge::config {
namespace fs = std::filesystem;

void ConformanceRegistry::Register(const std::string& op, ConformanceHandler handler) {
  handlers_[op] = std::move(handler);
}

std::vector<std::string> ConformanceRegistry::Ops() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : handlers_) out.push_back(k);
  return out;
}

namespace {

// "DeprecationWarning: layerwise_checkpoint_dir ... deprecated" -> every fragment must appear in one warning.
bool WarningMatches(const std::string& expected, const std::vector<std::string>& got) {
  std::string e = expected;
  bool deprecation = StartsWith(e, "DeprecationWarning");
  if (deprecation) {
    e = e.substr(std::string("DeprecationWarning").size());
    if (StartsWith(e, ":")) e = e.substr(1);
  }
  std::vector<std::string> parts;
  size_t pos = 0;
  while (true) {
    size_t next = e.find("...", pos);
    std::string part(Trim(e.substr(pos, next == std::string::npos ? std::string::npos : next - pos)));
    if (!part.empty()) parts.push_back(part);
    if (next == std::string::npos) break;
    pos = next + 3;
  }
  for (const auto& w : got) {
    if (deprecation && ToLower(w).find("deprecat") == std::string::npos) continue;
    bool all = true;
    for (const auto& p : parts) all = all && w.find(p) != std::string::npos;
    if (all) return true;
  }
  return false;
}

const Json* LookupDotted(const Json& root, const std::string& dotted) {
  const Json* cur = &root;
  for (const auto& part : Split(dotted, '.')) {
    if (!cur->is_object() || !cur->contains(part)) return nullptr;
    cur = &(*cur)[part];
  }
  return cur;
}

std::string CompareExpectations(const Json& expect, const Json& actual) {
  static const char* kHandled[] = {"ok", "warnings", "warning_contains", "error_contains", "error_regex", "error_type",
                                   "rel_tol"};
  for (auto it = expect.begin(); it != expect.end(); ++it) {
    const std::string& k = it.key();
    if (std::find(std::begin(kHandled), std::end(kHandled), k) != std::end(kHandled)) continue;
    const Json& want = it.value();
    if (k == "fields") {
      for (auto f = want.begin(); f != want.end(); ++f) {
        const Json* got = actual.contains("fields") ? LookupDotted(actual["fields"], f.key()) : nullptr;
        if (!got) return fmt::format("field '{}' missing (want {})", f.key(), Brief(f.value()));
        if (!JsonEqual(*got, f.value())) {
          return fmt::format("field '{}' = {}, want {}", f.key(), Brief(*got), Brief(f.value()));
        }
      }
    } else if (k == "state" || k == "sequential") {
      const Json& st = actual.contains(k) ? actual[k] : Json::object();
      for (auto q = want.begin(); q != want.end(); ++q) {
        if (!st.contains(q.key())) return fmt::format("{}: no quantizer '{}'", k, q.key());
        const Json& g = st[q.key()];
        if (q.value().is_object()) {
          for (auto a = q.value().begin(); a != q.value().end(); ++a) {
            if (!g.contains(a.key()) || !JsonEqual(g[a.key()], a.value())) {
              return fmt::format("{}['{}'].{} = {}, want {}", k, q.key(), a.key(),
                                 g.contains(a.key()) ? Brief(g[a.key()]) : "<missing>", Brief(a.value()));
            }
          }
        } else if (!JsonEqual(g, q.value())) {
          return fmt::format("{}['{}'] = {}, want {}", k, q.key(), Brief(g), Brief(q.value()));
        }
      }
    } else if (k == "amax_approx") {  // |amax - want| <= rel_tol * |want|
      const double tol = expect.value("rel_tol", 0.0);
      if (!actual.contains("amax") || !actual["amax"].is_number()) return fmt::format("'amax' not produced (want ~{})", Brief(want));
      const double got = actual["amax"].get<double>(), w = want.get<double>();
      if (!(std::fabs(got - w) <= tol * std::fabs(w))) {
        return fmt::format("amax = {}, want {} within relative {}", got, w, tol);
      }
    } else if (k == "dump_has_no_key") {
      if (actual.contains("dump") && actual["dump"].contains(want.get<std::string>())) {
        return fmt::format("dump has key '{}'", want.get<std::string>());
      }
    } else if (k == "quant_cfg_resolved") {
      Json norm = QuantCfgToJson(NormalizeQuantCfgList(want));
      if (!actual.contains("quant_cfg") || !JsonEqual(actual["quant_cfg"], norm)) {
        return fmt::format("quant_cfg = {}, want {}", actual.contains("quant_cfg") ? Brief(actual["quant_cfg"], 400) : "<missing>",
                           Brief(norm, 400));
      }
    } else {
      if (!actual.contains(k)) return fmt::format("'{}' not produced (want {})", k, Brief(want));
      if (!JsonEqual(actual[k], want)) return fmt::format("'{}' = {}, want {}", k, Brief(actual[k], 300), Brief(want, 300));
    }
  }
  return "";
}

}  // namespace

ConformanceCaseResult ConformanceRegistry::RunCase(const Json& c) const {
  ConformanceCaseResult r;
  r.name = c.value("name", std::string("<unnamed>"));
  const Json& input = c.at("input");
  const Json expect = c.contains("expect") ? c["expect"] : Json::object();
  std::string op = input.value("op", std::string());
  auto h = handlers_.find(op);
  if (h == handlers_.end()) {
    r.status = ConformanceCaseResult::Status::kSkip;
    r.message = "op '" + op + "' not implemented";
    return r;
  }
  bool want_ok = expect.value("ok", true);
  ScopedLogCapture capture;
  Json actual;
  std::string error;
  bool is_key_error = false;
  bool threw = false;
  try {
    actual = h->second(input, expect);
  } catch (const KeyNotFoundError& e) {
    threw = true;
    is_key_error = true;
    error = e.what();
  } catch (const Error& e) {
    threw = true;
    error = e.what();
  }
  auto fail = [&](std::string msg) {
    r.status = ConformanceCaseResult::Status::kFail;
    r.message = std::move(msg);
    return r;
  };
  if (!want_ok) {
    if (!threw) return fail("expected an error, got success: " + Brief(actual, 200));
    if (expect.contains("error_contains") && error.find(expect["error_contains"].get<std::string>()) == std::string::npos) {
      return fail(fmt::format("error '{}' does not contain '{}'", error, expect["error_contains"].get<std::string>()));
    }
    if (expect.contains("error_regex")) {
      std::string re = expect["error_regex"].get<std::string>();
      if (StartsWith(re, "(?s)")) re = re.substr(4);
      std::string flat = error;
      std::replace(flat.begin(), flat.end(), '\n', ' ');
      if (!std::regex_search(flat, std::regex(re))) return fail(fmt::format("error '{}' does not match /{}/", error, re));
    }
    if (expect.contains("error_type") && expect["error_type"] == "KeyError" && !is_key_error) {
      return fail("expected a KeyError (lookup failure), got: " + error);
    }
  } else if (threw) {
    return fail("unexpected error: " + error);
  }
  if (expect.contains("warnings")) {
    std::vector<std::string> got = capture.Messages(LogLevel::kWarning);
    for (const auto& w : expect["warnings"]) {
      if (!WarningMatches(w.get<std::string>(), got)) {
        return fail(fmt::format("expected warning '{}', got [{}]", w.get<std::string>(), fmt::join(got, " | ")));
      }
    }
  }
  if (expect.contains("warning_contains")) {
    const std::string want = expect["warning_contains"].get<std::string>();
    std::vector<std::string> got = capture.Messages(LogLevel::kWarning);
    if (std::none_of(got.begin(), got.end(), [&](const std::string& m) { return m.find(want) != std::string::npos; })) {
      return fail(fmt::format("expected a warning containing '{}', got [{}]", want, fmt::join(got, " | ")));
    }
  }
  if (want_ok) {
    std::string diff = CompareExpectations(expect, actual);
    if (!diff.empty()) return fail(diff);
  }
  r.status = ConformanceCaseResult::Status::kPass;
  return r;
}

ConformanceSummary ConformanceRegistry::RunFile(const std::string& path, std::ostream* out) const {
  std::ifstream in(path);
  QF_CHECK(in, "cannot open conformance file '{}'", path);
  ConformanceSummary s;
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (Trim(line).empty()) continue;
    Json c;
    try {
      c = Json::parse(line);
    } catch (const std::exception& e) {
      QF_FAIL("{}:{}: invalid JSON: {}", path, lineno, e.what());
    }
    QF_CHECK(c.is_object() && c.contains("input") && c["input"].is_object(), "{}:{}: a case needs an 'input' object",
             path, lineno);
    ConformanceCaseResult r = RunCase(c);
    switch (r.status) {
      case ConformanceCaseResult::Status::kPass: ++s.passed; break;
      case ConformanceCaseResult::Status::kSkip: ++s.skipped; break;
      case ConformanceCaseResult::Status::kFail:
        ++s.failed;
        if (out) *out << "FAIL " << r.name << ": " << r.message << "\n";
        break;
    }
    s.results.push_back(std::move(r));
  }
  return s;
}

// ---------------------------------------------------------------------------------------------------------
// config/'s op handlers
// ---------------------------------------------------------------------------------------------------------
namespace {

Json StateJson(const QuantizerState& st) {
  const auto& a = st.attrs();
  Json s = Json::object();
  s["enabled"] = st.enabled();
  s["num_bits"] = DumpValue(a.num_bits);
  s["axis"] = a.axis ? DumpValue(*a.axis) : Json(nullptr);
  return s;
}

Json OpNormalize(const Json& in, const Json&) {
  return Json::object({{"entries", QuantCfgToJson(NormalizeQuantCfgList(in.at("quant_cfg")))}});
}

Json OpFindEntry(const Json& in, const Json&) {
  QuantCfgList l = NormalizeQuantCfgList(in.at("quant_cfg"));
  return Json::object({{"entry", FindQuantCfgEntryByPath(l, in.at("query").get<std::string>()).ToJson()}});
}

Json OpNeedCalibration(const Json& in, const Json&) {
  return Json::object({{"result", NeedCalibration(QuantizeConfig::FromJson(in.at("config")))}});
}

Json OpQuantizeConfig(const Json& in, const Json&) {
  QuantizeConfig c = QuantizeConfig::FromJson(in.at("config"));
  // `entries`: the normalized quant_cfg with all four keys per entry, exactly as the normalize op reports it.
  return Json::object({{"num_entries", c.quant_cfg.size()},
                       {"entries", QuantCfgToJson(c.quant_cfg)},
                       {"fields", c.ToJson()},
                       {"dump", c.ToJson()}});
}

Json OpAttributeConfig(const Json& in, const Json&) {
  QuantizerAttributeConfig c = QuantizerAttributeConfig::FromJson(in.at("config"));
  return Json::object({{"fields", c.ToJson()}, {"dump", c.ToJson()}, {"dump_exclude_unset", c.ToJson(true)}});
}

Json OpAlgorithmConfig(const Json& in, const Json&) {
  AlgorithmConfig c = ParseAlgorithmConfig(in.at("method").get<std::string>(), in.value("config", Json::object()),
                                           "algorithm");
  Json full = c.ToJson();
  return Json::object({{"fields", full}, {"dump", full}, {"dump_layerwise", full["layerwise"]}});
}

Json OpMatchBare(const Json& in, const Json&) {
  QuantCfgList l = NormalizeQuantCfgList(in.at("quant_cfg"));
  const QuantizerCfgEntry* e = MatchQuantizerCfgBare(l, in.at("bare_name").get<std::string>());
  if (!e) return Json::object({{"cfg", nullptr}, {"enable", nullptr}});
  return Json::object({{"cfg", e->cfg ? DumpValue(*e->cfg) : Json(nullptr)}, {"enable", e->enable}});
}

std::vector<QuantizerSlot> SlotsFromCase(const Json& quantizers) {
  std::vector<QuantizerSlot> slots;
  for (const auto& q : quantizers) {
    QuantizerSlot s;
    s.name = q.at("name").get<std::string>();
    s.parent_class = q.contains("parent_class") && q["parent_class"].is_string() ? q["parent_class"].get<std::string>() : "";
    s.state = InitialQuantizerState(q.at("kind").get<std::string>());
    slots.push_back(std::move(s));
  }
  return slots;
}

Json OpApply(const Json& in, const Json&) {
  std::vector<QuantizerSlot> slots = SlotsFromCase(in.at("quantizers"));
  ApplyQuantCfg(NormalizeQuantCfgList(in.at("quant_cfg")), slots);
  Json state = Json::object(), seq = Json::object();
  for (const auto& s : slots) {
    state[s.name] = StateJson(s.state);
    if (s.state.sequential) seq[s.name] = s.state.stages.size();
  }
  return Json::object({{"state", state}, {"sequential", seq}});
}

// A dict gives a single quantizer's attributes (its own `enable` kept); a list a sequential quantizer.
QuantizerState StateFromCfg(const Json& cfg, const std::string& what) {
  CfgValue v;
  ParseValue(cfg, &v, what);
  QuantizerState st;
  st.sequential = v.is_list;
  st.stages = v.items;
  return st;
}

Json OpNeedsForward(const Json& in, const Json&) {
  std::vector<QuantizerSlot> slots(2);
  slots[0].name = "layer.weight_quantizer";
  slots[0].parent_class = "nn.Linear";
  slots[0].state = StateFromCfg(in.at("weight_quantizer_cfg"), "weight_quantizer_cfg");
  slots[1].name = "layer.input_quantizer";
  slots[1].parent_class = "nn.Linear";
  slots[1].state = StateFromCfg(in.at("input_quantizer_cfg"), "input_quantizer_cfg");
  return Json::object({{"result", NeedsActivationForward(slots)}});
}

// Writes the case's files into a fresh temporary directory, removed when destroyed.
class TempTree {
 public:
  explicit TempTree(const Json& files) {
    static std::atomic<int> counter{0};
    std::random_device rd;
    dir_ = fs::temp_directory_path() /
           fmt::format("qforge_conformance_{}_{}_{}", static_cast<long>(::getpid()), counter++, rd() % 100000);
    fs::create_directories(dir_);
    if (files.is_object()) {
      for (auto it = files.begin(); it != files.end(); ++it) {
        fs::path p = dir_ / it.key();
        fs::create_directories(p.parent_path());
        std::ofstream(p) << it.value().get<std::string>();
      }
    }
  }
  ~TempTree() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  const fs::path& dir() const { return dir_; }

 private:
  fs::path dir_;
};

Json OpLoadRecipe(const Json& in, const Json&) {
  TempTree tree(in.value("files", Json::object()));
  LoaderOptions o;
  o.base_dir = tree.dir();
  o.use_builtin = in.value("builtin_library", false);
  std::vector<std::string> overrides;
  if (in.contains("overrides") && !in["overrides"].is_null()) {
    for (const auto& x : in["overrides"]) overrides.push_back(x.get<std::string>());
  }
  Recipe r = LoadRecipe(in.at("load").get<std::string>(), o, overrides);
  Json out = Json::object();
  out["recipe_type"] = r.recipe_type;
  out["description"] = r.description;
  if (r.quantize) {
    out["quantize"] = r.quantize->ToJson(true);
    out["quant_cfg"] = QuantCfgToJson(r.quantize->quant_cfg);
    out["algorithm"] = r.quantize->algorithm.ToJson();
  }
  return out;
}

}  // namespace

ConformanceRegistry& DefaultConformanceRegistry() {
  static ConformanceRegistry* r = [] {
    auto* reg = new ConformanceRegistry;
    reg->Register("normalize_quant_cfg_list", OpNormalize);
    reg->Register("find_quant_cfg_entry_by_path", OpFindEntry);
    reg->Register("need_calibration", OpNeedCalibration);
    reg->Register("quantize_config", OpQuantizeConfig);
    reg->Register("quantizer_attribute_config", OpAttributeConfig);
    reg->Register("algorithm_config", OpAlgorithmConfig);
    reg->Register("match_quantizer_cfg_bare", OpMatchBare);
    reg->Register("apply_quant_cfg", OpApply);
    reg->Register("needs_activation_forward", OpNeedsForward);
    reg->Register("load_recipe_yaml", OpLoadRecipe);
    return reg;
  }();
  return *r;
}

}  // namespace qforge::config
