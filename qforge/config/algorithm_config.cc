// Algorithm configs: legacy-form migration, field parsing in declaration order, class validators.
#include "qforge/config/algorithm_config.h"

#include <optional>
#include <utility>
#include <variant>

#include "qforge/base/error.h"
#include "qforge/base/log.h"

namespace qforge::config {

// ---- range checks ----
void CheckRatio01(const std::optional<double>& v, const std::string& path) {
  QF_CHECK(!v || (*v > 0 && *v <= 1), "{}: must be in (0, 1], got {}", path, *v);
}
void CheckPositive(const double& v, const std::string& path) { QF_CHECK(v > 0, "{}: must be > 0, got {}", path, v); }
void CheckPositiveInt(const int64_t& v, const std::string& path) {
  QF_CHECK(v > 0, "{}: must be a positive int, got {}", path, v);
}
void CheckClosed01(const double& v, const std::string& path) {
  QF_CHECK(v >= 0 && v <= 1, "{}: must be in [0, 1], got {}", path, v);
}
void CheckOpenClosed01(const double& v, const std::string& path) {
  QF_CHECK(v > 0 && v <= 1, "{}: must be in (0, 1], got {}", path, v);
}
void CheckOpen01(const double& v, const std::string& path) {
  QF_CHECK(v > 0 && v < 1, "{}: must be in (0, 1), got {}", path, v);
}
void CheckPercentile(const double& v, const std::string& path) {
  QF_CHECK(v > 0 && v <= 100, "{}: percentile must be in (0, 100], got {}", path, v);
}
void CheckRho(const double& v, const std::string& path) {
  QF_CHECK(v > 0 && v < 28672, "{}: rho must be in (0, 28672), got {}", path, v);
}

// ---- layerwise ----
void ParseValue(const Json& raw, LayerwiseConfig* out, const std::string& path) {
  QF_CHECK(raw.is_object(), "{}: layerwise must be a dict {{enable, checkpoint_dir, ...}}, got {} {}", path,
           TypeName(raw), Brief(raw));
  Json j = raw;
  if (j.contains("save_quantizers_only")) {
    const Json& sqo = j["save_quantizers_only"];
    QF_CHECK(sqo.is_boolean(), "{}.save_quantizers_only: expected a bool, got {}", path, Brief(sqo));
    bool mutates = !sqo.get<bool>();
    if (j.contains("calib_mutates_weights")) {
      QF_CHECK(j["calib_mutates_weights"] == mutates,
               "{}: save_quantizers_only={} contradicts calib_mutates_weights={} (they are inverse spellings of "
               "one flag; give only calib_mutates_weights)",
               path, sqo.get<bool>(), Brief(j["calib_mutates_weights"]));
    }
    j.erase("save_quantizers_only");
    j["calib_mutates_weights"] = mutates;
  }
  RejectUnknownKeys(j, FieldNamesOf<LayerwiseConfig>(), path, "layerwise config");
  LayerwiseConfig c;
  FieldParser p{j, path, &c.fields_set};
  LayerwiseConfig::VisitFields(c, p);
  QF_CHECK(c.save_every >= 1, "{}.save_every: must be >= 1, got {}", path, c.save_every);
  QF_CHECK(!c.checkpoint_dir || c.enable,
           "{}: layerwise.checkpoint_dir requires layerwise.enable=True (checkpoint_dir='{}')", path,
           c.checkpoint_dir.value_or(""));
  *out = c;
}
Json DumpValue(const LayerwiseConfig& v) { return DumpFields(v, false); }

// ---- shared states ----
const std::vector<std::string>& DefaultSharedPatterns() {
  static const std::vector<std::string> k = {
      R"((?:(.*)\.)?(?:q_proj|k_proj|v_proj))",
      R"((?:(.*)\.)?(?:gate_proj|up_proj))",
      R"((?:(.*)\.)?(?:w1|w3))",
  };
  return k;
}

std::vector<std::string> ResolveSharedPatterns(const std::optional<SharedStatesConfig>& s) {
  if (!s || !s->weight_global_amax_patterns) return DefaultSharedPatterns();
  return *s->weight_global_amax_patterns;
}

static std::vector<std::string> ParsePatternList(const Json& j, const std::string& path) {
  std::vector<std::string> pats;
  ParseValue(j, &pats, path);
  for (size_t i = 0; i < pats.size(); ++i) {
    std::string err = Regex::CompileError(pats[i]);
    QF_CHECK(err.empty(), "{}[{}]: invalid regex '{}': {}", path, i, pats[i], err);
  }
  return pats;
}

void ParseValue(const Json& j, SharedStatesConfig* out, const std::string& path) {
  QF_CHECK(j.is_object(), "{}: shared_states must be a dict {{weight_global_amax: {{patterns: [...]}}}}, got {}",
           path, Brief(j));
  SharedStatesConfig s;
  s.raw = Json::object();
  for (auto it = j.begin(); it != j.end(); ++it) {
    QF_CHECK(it.key() == "weight_global_amax",
             "{}: unsupported state(s) ['{}']; supported states: ['weight_global_amax']", path, it.key());
    std::string p = JoinPath(path, it.key());
    const Json& st = it.value();
    if (st.is_null()) {
      s.raw[it.key()] = Json::object();
      continue;
    }
    QF_CHECK(st.is_object(), "{}: expected a dict {{patterns: [...]}}, got {}", p, Brief(st));
    for (auto f = st.begin(); f != st.end(); ++f) {
      QF_CHECK(f.key() == "patterns", "{}: unsupported field(s) ['{}']; supported fields: ['patterns']", p, f.key());
    }
    Json norm = Json::object();
    if (st.contains("patterns") && !st["patterns"].is_null()) {
      s.weight_global_amax_patterns = ParsePatternList(st["patterns"], JoinPath(p, "patterns"));
      norm["patterns"] = *s.weight_global_amax_patterns;
    }
    s.raw[it.key()] = norm;
  }
  for (const auto& pat : ResolveSharedPatterns(s)) s.compiled.push_back(std::make_shared<const Regex>(pat));
  *out = std::move(s);
}
Json DumpValue(const SharedStatesConfig& v) { return v.raw; }

// Seed 003's shared_patterns {weight: [...], input: [...]} -> SharedStatesConfig.
static SharedStatesConfig FromSharedPatterns(const Json& j, const std::string& path) {
  QF_CHECK(j.is_object(), "{}: shared_patterns must be a dict {{weight: [...], input: [...]}}, got {}", path,
           Brief(j));
  SharedStatesConfig s;
  s.raw = Json::object();
  for (auto it = j.begin(); it != j.end(); ++it) {
    QF_CHECK(it.key() == "weight" || it.key() == "input",
             "{}: unsupported shared_patterns key '{}'; allowed keys: 'weight', 'input'", path, it.key());
    std::vector<std::string> pats = ParsePatternList(it.value(), JoinPath(path, it.key()));
    if (it.key() == "weight") {
      s.weight_global_amax_patterns = pats;
      s.raw["weight_global_amax"] = Json::object({{"patterns", pats}});
    } else {
      s.input_patterns = pats;
    }
  }
  for (const auto& pat : ResolveSharedPatterns(s)) s.compiled.push_back(std::make_shared<const Regex>(pat));
  return s;
}

// ---- learnable_amax ----
void ParseValue(const Json& j, LearnableAmax* out, const std::string& path) {
  LearnableAmax l;
  auto check = [&](const Json& e) {
    QF_CHECK(e.is_string() && (e == "pre" || e == "post"), "{}: learnable_amax items must be 'pre' or 'post', got {}",
             path, Brief(e));
    return e.get<std::string>();
  };
  if (j.is_string()) {
    l.is_list = false;
    l.items.push_back(check(j));
  } else {
    QF_CHECK(j.is_array(), "{}: learnable_amax must be 'pre', 'post' or a list of them, got {}", path, Brief(j));
    for (const auto& e : j) l.items.push_back(check(e));
  }
  *out = l;
}
Json DumpValue(const LearnableAmax& v) { return v.is_list ? Json(v.items) : Json(v.items.at(0)); }

// ---- nested algorithm ----
bool NestedAlgorithm::operator==(const NestedAlgorithm& o) const {
  return config && o.config ? config->ToJson() == o.config->ToJson() : config == o.config;
}
void ParseValue(const Json& j, NestedAlgorithm* out, const std::string& path) {
  std::string method;
  Json fields = Json::object();
  if (j.is_string()) {
    method = j.get<std::string>();
  } else {
    QF_CHECK(j.is_object() && j.contains("method") && j["method"].is_string(),
             "{}: expected a method name or a dict with 'method', got {}", path, Brief(j));
    method = j["method"].get<std::string>();
    fields = j;
  }
  QF_CHECK(method == "max" || method == "mse" || method == "local_hessian",
           "{}: method must be one of 'max', 'mse', 'local_hessian', got '{}'", path, method);
  out->config = std::make_shared<const AlgorithmConfig>(ParseAlgorithmConfig(method, fields, path));
}
Json DumpValue(const NestedAlgorithm& v) { return v.config ? v.config->ToJson(true) : Json(nullptr); }

// ---- traits ----
namespace {

template <size_t I>
using Alternative = std::variant_alternative_t<I, AlgorithmVariant>;
constexpr size_t kNumMethods = std::variant_size_v<AlgorithmVariant>;

template <size_t... I>
std::vector<AlgorithmTraits> TraitsRows(std::index_sequence<I...>) {
  return {Alternative<I>::kTraits...};
}

// The config of the alternative whose kTraits.method is `method` (which must be one of them).
template <size_t... I>
AlgorithmVariant ParseByMethod(const std::string& method, const Json& j, const std::string& path,
                               std::index_sequence<I...>);

}  // namespace

const std::vector<AlgorithmTraits>& AllAlgorithmTraits() {
  static const std::vector<AlgorithmTraits> k = TraitsRows(std::make_index_sequence<kNumMethods>{});
  return k;
}

const AlgorithmTraits* FindAlgorithmTraits(const std::string& method) {
  for (const auto& t : AllAlgorithmTraits()) {
    if (method == t.method) return &t;
  }
  return nullptr;
}


const std::string& AlgorithmConfig::method() const {
  return std::visit([](const auto& c) -> const std::string& { return c.method; }, value);
}
const AlgorithmTraits& AlgorithmConfig::traits() const {
  return std::visit([](const auto& cfg) -> const AlgorithmTraits& { return std::decay_t<decltype(cfg)>::kTraits; },
                    value);
}
std::optional<double> AlgorithmConfig::moe_calib_experts_ratio() const {
  return std::visit([](const auto& c) { return c.moe_calib_experts_ratio; }, value);
}

const LayerwiseConfig& AlgorithmConfig::layerwise() const {
  return std::visit([](const auto& c) -> const LayerwiseConfig& { return c.layerwise; }, value);
}

Json AlgorithmConfig::ToJson(bool exclude_unset) const {
  return std::visit(
      [&](const auto& c) {
        Json out = DumpFields(c, exclude_unset);
        if (exclude_unset) {
          Json with = Json::object();
          with["method"] = c.method.empty() ? Json(nullptr) : Json(c.method);
          for (auto it = out.begin(); it != out.end(); ++it) {
            if (it.key() != "method") with[it.key()] = it.value();
          }
          // A layerwise given by the user is dumped with its own given fields only.
          if (with.contains("layerwise")) with["layerwise"] = DumpFields(c.layerwise, true);
          return with;
        }
        if (c.method.empty()) out["method"] = nullptr;
        return out;
      },
      value);
}

namespace {

// Legacy layerwise forms (spec §7.6), migrated in place with deprecation warnings.
void MigrateLegacyLayerwise(Json& j, const std::string& path) {
  if (j.contains("use_sequential")) {
    QF_CHECK(!j.contains("layerwise"), "{}: both 'use_sequential' (deprecated alias) and 'layerwise' are given; "
             "keep only 'layerwise'", path);
    const Json& us = j["use_sequential"];
    QF_CHECK(us.is_boolean(), "{}.use_sequential: expected a bool, got {}", path, Brief(us));
    LogWarning("DeprecationWarning: {}.use_sequential is deprecated; use layerwise: {{enable: {}}}", path,
               us.get<bool>());
    Json lw = Json::object({{"enable", us.get<bool>()}});
    j.erase("use_sequential");
    j["layerwise"] = lw;
  } else if (j.contains("layerwise") && j["layerwise"].is_boolean()) {
    bool b = j["layerwise"].get<bool>();
    LogWarning("DeprecationWarning: {}.layerwise: {} — passing layerwise as a bool is deprecated; use layerwise: "
               "{{enable: {}}}",
               path, b, b);
    j["layerwise"] = Json::object({{"enable", b}});
  }
  if (j.contains("layerwise") && j["layerwise"].is_null()) j["layerwise"] = Json::object();
  if (j.contains("layerwise_checkpoint_dir")) {
    Json flat = j["layerwise_checkpoint_dir"];
    j.erase("layerwise_checkpoint_dir");
    LogWarning("DeprecationWarning: {}.layerwise_checkpoint_dir is deprecated; use layerwise.checkpoint_dir", path);
    if (!flat.is_null()) {
      QF_CHECK(flat.is_string(), "{}.layerwise_checkpoint_dir: expected a string, got {}", path, Brief(flat));
      if (!j.contains("layerwise")) j["layerwise"] = Json::object();
      Json& lw = j["layerwise"];
      QF_CHECK(lw.is_object(), "{}.layerwise: expected a dict, got {}", path, Brief(lw));
      if (lw.contains("checkpoint_dir") && !lw["checkpoint_dir"].is_null()) {
        QF_CHECK(lw["checkpoint_dir"] == flat,
                 "{}: Conflicting checkpoint_dir: layerwise_checkpoint_dir={} vs layerwise.checkpoint_dir={}", path,
                 PyRepr(flat), PyRepr(lw["checkpoint_dir"]));
      }
      lw["checkpoint_dir"] = flat;
    }
  }
}

template <class C>
C ParseTyped(const Json& fields, const std::string& path) {
  C c;
  std::vector<std::string> names = FieldNamesOf<C>();
  RejectUnknownKeys(fields, names, path, std::string("'") + (c.method.empty() ? "null" : c.method) +
                                             "' algorithm config");
  FieldParser p{fields, path, &c.fields_set};
  C::VisitFields(c, p);
  return c;
}

template <size_t... I>
AlgorithmVariant ParseByMethod(const std::string& method, const Json& j, const std::string& path,
                               std::index_sequence<I...>) {
  std::optional<AlgorithmVariant> out;
  // The first alternative whose method matches (exactly one does: FindAlgorithmTraits checked it).
  (void)((method == Alternative<I>::kTraits.method ? (out.emplace(ParseTyped<Alternative<I>>(j, path)), true) : false) ||
         ...);
  QF_ASSERT(out.has_value(), "no config class for method '{}'", method);
  return std::move(*out);
}

}  // namespace

AlgorithmConfig ParseAlgorithmConfig(const std::string& method_in, const Json& fields_in, const std::string& path) {
  std::string method = method_in;
  const AlgorithmTraits* traits = FindAlgorithmTraits(method);
  if (!traits) {
    std::vector<std::string> names;
    for (const auto& t : AllAlgorithmTraits()) names.emplace_back(t.method);
    std::string hint = ClosestName(method, names);
    QF_FAIL("{}: unknown calibration method '{}'{}; known methods: {}", path, method,
            hint.empty() ? "" : fmt::format(" (did you mean '{}'?)", hint), fmt::join(names, ", "));
  }
  QF_CHECK(fields_in.is_object(), "{}: algorithm config must be a dict, got {}", path, Brief(fields_in));
  Json j = fields_in;
  if (j.contains("method")) {
    QF_CHECK(j["method"].is_null() ? method == "null" : j["method"] == method,
             "{}: method {} does not match the config class '{}'", path, Brief(j["method"]), method);
    if (j["method"].is_null()) j.erase("method");
  }
  MigrateLegacyLayerwise(j, path);
  if (j.contains("shared_patterns")) {
    QF_CHECK(traits->has_shared_states, "{}: shared_patterns is not a field of the '{}' algorithm", path, method);
    QF_CHECK(!j.contains("shared_states"),
             "{}: both 'shared_patterns' (seed spelling) and 'shared_states' are given; keep only 'shared_states'",
             path);
    SharedStatesConfig s = FromSharedPatterns(j["shared_patterns"], JoinPath(path, "shared_patterns"));
    j.erase("shared_patterns");
    j["shared_states"] = s.raw;
  }
  AlgorithmConfig out;
  out.value = ParseByMethod(method, j, path, std::make_index_sequence<kNumMethods>{});
  QF_ASSERT(out.traits().method == method, "parsed '{}' as '{}'", method, out.traits().method);
  // Class validators.
  std::visit(
      [&](auto& c) {
        if (!c.layerwise.calib_mutates_weights) {
          QF_CHECK(!traits->mutates_weights,
                   "{}.layerwise: calib_mutates_weights=False (save_quantizers_only=True) is not allowed: the '{}' "
                   "algorithm mutates layer weights in-place, so checkpoints must store the weights",
                   path, method);
        }
      },
      out.value);
  if (auto* g = std::get_if<GptqCalibConfig>(&out.value)) {
    if (!IsSet(g->layerwise.fields_set, "get_qdq_activations_from_prev_layer")) {
      g->layerwise.get_qdq_activations_from_prev_layer = true;
    }
  }
  if (auto* l = std::get_if<LsqConfig>(&out.value)) {
    if (l->tied_amax) {
      bool pre = false, post = false;
      for (const auto& s : l->learnable_amax.items) {
        pre = pre || s == "pre";
        post = post || s == "post";
      }
      QF_CHECK(pre == post,
               "{}: tied_amax=True requires learnable_amax to be both ['pre', 'post'] or none, got {}", path,
               DumpValue(l->learnable_amax).dump());
    }
  }
  return out;
}

// ---- algorithm spec ----
AlgorithmSpec AlgorithmSpec::Default() { return FromJson(Json("max"), "algorithm"); }

AlgorithmSpec AlgorithmSpec::FromJson(const Json& j, const std::string& path) {
  AlgorithmSpec s;
  auto one = [&](const Json& v, const std::string& p) {
    if (v.is_string()) {
      std::string m = v.get<std::string>();
      s.configs.push_back(ParseAlgorithmConfig(m, Json::object(), p));
      s.given.push_back(v);
    } else if (v.is_object()) {
      QF_CHECK(v.contains("method"), "{}: an algorithm dict needs a 'method' key, got {}", p, Brief(v));
      const Json& m = v["method"];
      QF_CHECK(m.is_string() || m.is_null(), "{}.method: expected a string, got {}", p, Brief(m));
      s.configs.push_back(ParseAlgorithmConfig(m.is_null() ? "null" : m.get<std::string>(), v, p));
      s.given.push_back(Json::object());
    } else {
      QF_FAIL("{}: algorithm must be a method name, a dict with 'method', null or a list of those, got {} {}", p,
              TypeName(v), Brief(v));
    }
  };
  if (j.is_null()) {
    s.kind = Kind::kNull;
  } else if (j.is_string()) {
    s.kind = Kind::kName;
    one(j, path);
  } else if (j.is_object()) {
    s.kind = Kind::kConfig;
    one(j, path);
  } else if (j.is_array()) {
    s.kind = Kind::kList;
    for (size_t i = 0; i < j.size(); ++i) {
      if (j[i].is_null()) continue;
      one(j[i], path + "[" + std::to_string(i) + "]");
    }
  } else {
    one(j, path);
  }
  return s;
}

Json AlgorithmSpec::ToJson() const {
  auto one = [&](size_t i) { return given[i].is_string() ? given[i] : configs[i].ToJson(true); };
  switch (kind) {
    case Kind::kNull: return nullptr;
    case Kind::kName:
    case Kind::kConfig: return one(0);
    default: {
      Json out = Json::array();
      for (size_t i = 0; i < configs.size(); ++i) out.push_back(one(i));
      return out;
    }
  }
}

std::vector<std::string> QforgeExtensionFieldsSet(const nlohmann::ordered_json& algorithm) {
  std::vector<std::string> out;
  auto one = [&](const nlohmann::ordered_json& a) {
    if (!a.is_object() || !a.contains("method") || !a["method"].is_string()) return;
    const std::string method = a["method"].get<std::string>();
    for (const auto& f : kQforgeExtensionFields) {
      if (method == f.method && a.contains(f.field)) out.push_back(method + "." + f.field);
    }
  };
  if (algorithm.is_array()) {
    for (const auto& a : algorithm) one(a);
  } else {
    one(algorithm);
  }
  return out;
}

}  // namespace qforge::config
