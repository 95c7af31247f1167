// config.json parsing (transformers v4 and v5 styles) and rotary embedding frequencies.
#include "qforge/model/model_config.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numbers>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/log.h"
#include "qforge/base/read_limited.h"
#include "qforge/io/json_limits.h"

namespace qforge {
namespace {

using json = nlohmann::json;

// Typed access to config keys with errors that name the file and key.
class Reader {
 public:
  Reader(const json& j, std::string source) : j_(j), source_(std::move(source)) {}

  bool Has(std::string_view key) const { return j_.contains(key) && !j_.at(std::string(key)).is_null(); }

  int64_t Int(std::string_view key) const {
    QF_CHECK(Has(key), "{}: missing required key \"{}\"", source_, key);
    return IntOr(key, 0);
  }
  int64_t IntOr(std::string_view key, int64_t def) const {
    if (!Has(key)) return def;
    const json& v = j_.at(std::string(key));
    QF_CHECK(v.is_number_integer() && !(v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT64_MAX}),
             "{}: \"{}\" must be an integer (at most 2^63 - 1), got {}", source_, key, v.dump());
    return v.get<int64_t>();
  }
  double DoubleOr(std::string_view key, double def) const {
    if (!Has(key)) return def;
    const json& v = j_.at(std::string(key));
    QF_CHECK(v.is_number(), "{}: \"{}\" must be a number, got {}", source_, key, v.dump());
    return v.get<double>();
  }
  std::optional<double> OptDouble(std::string_view key) const {
    if (!Has(key)) return std::nullopt;
    return DoubleOr(key, 0.0);
  }
  bool BoolOr(std::string_view key, bool def) const {
    if (!Has(key)) return def;
    const json& v = j_.at(std::string(key));
    QF_CHECK(v.is_boolean(), "{}: \"{}\" must be true or false, got {}", source_, key, v.dump());
    return v.get<bool>();
  }
  std::string StringOr(std::string_view key, std::string def) const {
    if (!Has(key)) return def;
    const json& v = j_.at(std::string(key));
    QF_CHECK(v.is_string(), "{}: \"{}\" must be a string, got {}", source_, key, v.dump());
    return v.get<std::string>();
  }
  const std::string& source() const { return source_; }

 private:
  const json& j_;
  std::string source_;
};

bool ResolveBias(const Reader& r, const BiasRule& rule) {
  return rule.config_key.empty() ? rule.default_value : r.BoolOr(rule.config_key, rule.default_value);
}

RopeConfig ParseRope(const json& j, const Reader& top, const std::string& source) {
  RopeConfig rope;
  // v5: everything under "rope_parameters"; v4: "rope_theta" at the top level plus "rope_scaling".
  const json* params = nullptr;
  std::string where;
  if (top.Has("rope_parameters")) {
    params = &j.at("rope_parameters");
    where = "rope_parameters";
  } else if (top.Has("rope_scaling")) {
    params = &j.at("rope_scaling");
    where = "rope_scaling";
  }
  rope.theta = top.DoubleOr("rope_theta", 10000.0);
  if (params == nullptr) return rope;
  QF_CHECK(params->is_object(), "{}: \"{}\" must be an object, got {}", source, where, params->dump());
  Reader p(*params, source + " " + where);
  rope.theta = p.DoubleOr("rope_theta", rope.theta);
  // Old v4 configs spell it "type".
  rope.type = p.StringOr("rope_type", p.StringOr("type", "default"));
  rope.factor = p.DoubleOr("factor", 1.0);
  rope.low_freq_factor = p.DoubleOr("low_freq_factor", 1.0);
  rope.high_freq_factor = p.DoubleOr("high_freq_factor", 4.0);
  rope.original_max_position_embeddings = p.IntOr("original_max_position_embeddings", 0);
  rope.attention_factor = p.OptDouble("attention_factor");
  rope.mscale = p.OptDouble("mscale");
  rope.mscale_all_dim = p.OptDouble("mscale_all_dim");
  rope.beta_fast = p.DoubleOr("beta_fast", 32.0);
  rope.beta_slow = p.DoubleOr("beta_slow", 1.0);
  rope.truncate = p.BoolOr("truncate", true);
  if (rope.type == "default") {
    // nothing else
  } else if (rope.type == "linear") {
    QF_CHECK(p.Has("factor"), "{}: {} type \"linear\" needs \"factor\"", source, where);
  } else if (rope.type == "llama3") {
    for (const char* k : {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
      QF_CHECK(p.Has(k), "{}: {} type \"llama3\" needs \"{}\"", source, where, k);
    }
  } else if (rope.type == "yarn") {
    QF_CHECK(p.Has("factor"), "{}: {} type \"yarn\" needs \"factor\"", source, where);
  } else {
    QF_FAIL("{}: {} type \"{}\" is not supported (supported: default, linear, llama3, yarn)", source, where, rope.type);
  }
  QF_CHECK(rope.theta > 0, "{}: rope_theta must be positive, got {}", source, rope.theta);
  QF_CHECK(rope.factor > 0, "{}: rope factor must be positive, got {}", source, rope.factor);
  return rope;
}

// Upper bounds on the sizes config.json gives (docs in model_config.h). Each is far above any released model
// and small enough that every product the loader and the forward pass form from them fits in int64.
struct SizeLimit {
  std::string_view key;
  int64_t value;
  int64_t max;
};

// `a` * `b` with overflow reported as false.
bool MulOk(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }

// Checks every size against kModelSizeLimits and the products used later (attention widths, per-tensor and
// total element counts) against the tensor_elements / parameters limits, before anything is built
// from them. Errors name the file and key and give the limit.
void CheckModelSizeLimits(const ModelConfig& c, const std::string& source) {
  const std::string experts_key = "num_experts (num_local_experts / n_routed_experts)";
  const SizeLimit limits[] = {
      {"hidden_size", c.hidden_size, kModelSizeLimits.hidden_size},
      {"intermediate_size", c.intermediate_size, kModelSizeLimits.intermediate_size},
      {"num_hidden_layers", c.num_layers, kModelSizeLimits.num_layers},
      {"num_attention_heads", c.num_heads, kModelSizeLimits.num_heads},
      {"num_key_value_heads", c.num_kv_heads, kModelSizeLimits.num_heads},
      {"head_dim", c.head_dim, kModelSizeLimits.head_dim},
      {"vocab_size", c.vocab_size, kModelSizeLimits.vocab_size},
      {"max_position_embeddings", c.max_position_embeddings, kModelSizeLimits.max_position_embeddings},
      {"num_experts", c.num_experts, kModelSizeLimits.num_experts},
      {c.arch != nullptr && c.num_experts > 0 ? c.arch->moe_intermediate_key : "moe_intermediate_size",
       c.moe_intermediate_size, kModelSizeLimits.intermediate_size},
      {"shared_expert_intermediate_size", c.shared_expert_intermediate_size, kModelSizeLimits.intermediate_size},
      {"decoder_sparse_step", c.decoder_sparse_step, kModelSizeLimits.num_layers},
      {"rope original_max_position_embeddings", c.rope.original_max_position_embeddings,
       kModelSizeLimits.max_position_embeddings},
  };
  for (const auto& l : limits) {
    QF_CHECK(l.value >= 0 && l.value <= l.max, "{}: \"{}\" is {}, expected an integer in [0, {}] (the limit qforge "
             "accepts; a larger value is a corrupt config)", source, l.key, l.value, l.max);
  }
  if (c.arch != nullptr && c.arch->moe != MoeKind::kNone) {
    QF_CHECK(c.moe_intermediate_size > 0, "{}: \"{}\" must be positive, got {}", source,
             c.arch->moe_intermediate_key, c.moe_intermediate_size);
    QF_CHECK(!c.arch->shared_expert || c.shared_expert_intermediate_size > 0,
             "{}: \"shared_expert_intermediate_size\" must be positive, got {}", source,
             c.shared_expert_intermediate_size);
  }
  // IsMoeLayer scans this list for every layer.
  QF_CHECK(static_cast<int64_t>(c.mlp_only_layers.size()) <= c.num_layers,
           "{}: \"mlp_only_layers\" lists {} layers but the model has num_hidden_layers {}", source,
           c.mlp_only_layers.size(), c.num_layers);
  if (c.sliding_window) {
    QF_CHECK(*c.sliding_window <= kModelSizeLimits.max_position_embeddings,
             "{}: \"sliding_window\" is {}, expected at most {}", source, *c.sliding_window,
             kModelSizeLimits.max_position_embeddings);
  }
  // Element counts of the largest tensors, each checked, then the parameter total. With the limits above no
  // product below can overflow; the checks keep that true if a limit is ever raised.
  int64_t q_width = 0, kv_width = 0, expert_mats = 0;
  QF_CHECK(MulOk(c.num_heads, c.head_dim, &q_width) && MulOk(c.num_kv_heads, c.head_dim, &kv_width) &&
               q_width <= kModelSizeLimits.attention_width,
           "{}: num_attention_heads {} x head_dim {} is larger than {} (corrupt config?)", source, c.num_heads,
           c.head_dim, kModelSizeLimits.attention_width);
  const int64_t layers = c.num_layers;
  const int64_t moe_layers = c.num_experts > 0 ? layers : 0;  // an upper bound: every layer sparse
  QF_CHECK(MulOk(3 * c.num_experts, moe_layers, &expert_mats), "{}: {} experts x {} layers overflows", source,
           c.num_experts, layers);
  struct Product {
    const char* what;
    int64_t rows, cols;
    int64_t count;  // tensors of [rows, cols]
  };
  const Product products[] = {
      {"vocab_size x hidden_size (embed_tokens, lm_head)", c.vocab_size, c.hidden_size, 2},
      {"num_attention_heads x head_dim x hidden_size (q_proj, o_proj)", q_width, c.hidden_size, 2 * layers},
      {"num_key_value_heads x head_dim x hidden_size (k_proj, v_proj)", kv_width, c.hidden_size, 2 * layers},
      {"intermediate_size x hidden_size (dense MLP)", c.intermediate_size, c.hidden_size, 3 * layers},
      {"moe_intermediate_size x hidden_size (every expert of every layer)", c.moe_intermediate_size, c.hidden_size,
       expert_mats},
      {"shared_expert_intermediate_size x hidden_size", c.shared_expert_intermediate_size, c.hidden_size,
       3 * moe_layers},
  };
  int64_t total = 0;
  for (const auto& p : products) {
    int64_t elems = 0, all = 0;
    QF_CHECK(MulOk(p.rows, p.cols, &elems) && elems <= kModelSizeLimits.tensor_elements,
             "{}: {} = {} x {} elements is more than {} for one tensor (corrupt config?)", source, p.what, p.rows,
             p.cols, kModelSizeLimits.tensor_elements);
    QF_CHECK(MulOk(elems, p.count, &all) && !__builtin_add_overflow(total, all, &total) &&
                 total <= kModelSizeLimits.parameters,
             "{}: the sizes give more than {} parameters ({} tensors of {}, num_hidden_layers {}, {} {}); corrupt "
             "config?",
             source, kModelSizeLimits.parameters, p.count, p.what, c.num_layers, experts_key, c.num_experts);
  }
}

// Identity keys (ConfigIdentityProblems; an unsupported architecture is reported by the caller with the list of
// supported ones) and rms_norm_eps, whose sign or a NaN would otherwise surface as NaN activations blamed on
// whichever quantizer sees them first.
void CheckIdentityAndEps(const json& j, const std::string& source);

}  // namespace

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  if (arch->moe == MoeKind::kNone || num_experts == 0) return false;
  if (arch->moe == MoeKind::kMixtral) return true;
  if (std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) != mlp_only_layers.end()) return false;
  return (layer + 1) % decoder_sparse_step == 0;
}

ModelConfig ParseModelConfig(const json& j, const std::string& source) {
  QF_CHECK(j.is_object(), "{}: expected a JSON object", source);
  Reader r(j, source);
  ModelConfig c;
  QF_CHECK(r.Has("architectures") && j.at("architectures").is_array() && !j.at("architectures").empty() &&
               j.at("architectures")[0].is_string(),
           "{}: missing \"architectures\" (a list naming the model class, e.g. [\"LlamaForCausalLM\"])", source);
  const std::string arch = j.at("architectures")[0].get<std::string>();
  c.arch = FindArchitecture(arch);
  if (c.arch == nullptr) {
    std::vector<std::string_view> names;
    for (const auto& a : Architectures()) names.push_back(a.architecture);
    QF_FAIL("{}: architecture \"{}\" is not supported (supported: {})", source, arch, fmt::join(names, ", "));
  }
  CheckIdentityAndEps(j, source);
  c.model_type = r.StringOr("model_type", "");
  c.dtype = r.StringOr("dtype", r.StringOr("torch_dtype", ""));
  c.dtype_key = r.Has("dtype") ? "dtype" : r.Has("torch_dtype") ? "torch_dtype" : "";
  c.hidden_size = r.Int("hidden_size");
  c.num_layers = r.Int("num_hidden_layers");
  c.num_heads = r.Int("num_attention_heads");
  c.num_kv_heads = r.IntOr("num_key_value_heads", c.num_heads);
  c.vocab_size = r.Int("vocab_size");
  c.intermediate_size = r.Int("intermediate_size");
  c.max_position_embeddings = r.IntOr("max_position_embeddings", 2048);
  c.rms_norm_eps = r.DoubleOr("rms_norm_eps", 1e-6);
  c.tie_word_embeddings = r.BoolOr("tie_word_embeddings", false);
  for (auto [key, v] : {std::pair{"hidden_size", c.hidden_size},
                        {"num_hidden_layers", c.num_layers},
                        {"num_attention_heads", c.num_heads},
                        {"num_key_value_heads", c.num_kv_heads},
                        {"vocab_size", c.vocab_size},
                        {"intermediate_size", c.intermediate_size}}) {
    QF_CHECK(v > 0, "{}: \"{}\" must be positive, got {}", source, key, v);
  }
  if (r.Has("head_dim")) {
    c.head_dim = r.Int("head_dim");
  } else {
    QF_CHECK(c.hidden_size % c.num_heads == 0,
             "{}: no \"head_dim\" and hidden_size {} is not divisible by num_attention_heads {}", source, c.hidden_size,
             c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  QF_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "{}: head_dim must be positive and even, got {}", source, c.head_dim);
  QF_CHECK(c.num_heads % c.num_kv_heads == 0, "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}",
           source, c.num_heads, c.num_kv_heads);
  QF_CHECK(r.DoubleOr("partial_rotary_factor", 1.0) == 1.0, "{}: partial_rotary_factor {} is not supported", source,
           r.DoubleOr("partial_rotary_factor", 1.0));
  const std::string act = r.StringOr("hidden_act", "silu");
  QF_CHECK(act == "silu", "{}: hidden_act \"{}\" is not supported (only silu)", source, act);
  c.rope = ParseRope(j, r, source);

  // Sliding-window attention only changes results for sequences longer than the window; it is kept so the
  // forward can refuse such sequences instead of silently computing full attention.
  const bool uses_window = r.Has("use_sliding_window") ? r.BoolOr("use_sliding_window", false) : true;
  if (uses_window && r.Has("sliding_window") && r.IntOr("sliding_window", 0) > 0) {
    c.sliding_window = r.IntOr("sliding_window", 0);
  }

  c.qkv_bias = ResolveBias(r, c.arch->qkv_bias);
  c.o_bias = ResolveBias(r, c.arch->o_bias);
  c.mlp_bias = ResolveBias(r, c.arch->mlp_bias);

  if (c.arch->moe != MoeKind::kNone) {
    // transformers names the expert count differently per model and version.
    for (const char* k : {"num_local_experts", "num_experts", "n_routed_experts"}) {
      if (r.Has(k)) {
        c.num_experts = r.Int(k);
        break;
      }
    }
    QF_CHECK(c.num_experts > 0, "{}: {} needs a positive \"num_local_experts\" or \"num_experts\"", source, arch);
    c.top_k = r.Int("num_experts_per_tok");
    QF_CHECK(c.top_k >= 1 && c.top_k <= c.num_experts, "{}: num_experts_per_tok {} must be in [1, {}]", source, c.top_k,
             c.num_experts);
    c.moe_intermediate_size = r.Int(c.arch->moe_intermediate_key);
    c.norm_topk_prob = c.arch->moe == MoeKind::kMixtral ? true : r.BoolOr("norm_topk_prob", c.arch->norm_topk_default);
    if (c.arch->moe == MoeKind::kQwen) {
      c.decoder_sparse_step = r.IntOr("decoder_sparse_step", 1);
      QF_CHECK(c.decoder_sparse_step >= 1, "{}: decoder_sparse_step must be >= 1, got {}", source,
               c.decoder_sparse_step);
      if (r.Has("mlp_only_layers")) {
        QF_CHECK(j.at("mlp_only_layers").is_array(), "{}: \"mlp_only_layers\" must be a list", source);
        for (const auto& v : j.at("mlp_only_layers")) {
          QF_CHECK(v.is_number_integer(), "{}: \"mlp_only_layers\" must hold integers, got {}", source, v.dump());
          c.mlp_only_layers.push_back(v.get<int64_t>());
        }
      }
    }
    if (c.arch->shared_expert) c.shared_expert_intermediate_size = r.Int("shared_expert_intermediate_size");
  }
  CheckModelSizeLimits(c, source);
  return c;
}

std::vector<ConfigIdentityProblem> ConfigIdentityProblems(const json& j) {
  std::vector<ConfigIdentityProblem> out;
  if (!j.is_object()) return {{"architectures", "config.json is not a JSON object"}};
  auto str = [&](const char* key) -> std::optional<std::string> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) {
      out.push_back({key, fmt::format("must be a string, got {}", it->dump())});
      return std::nullopt;
    }
    return it->get<std::string>();
  };
  const ArchSpec* arch = nullptr;
  std::string arch_name;
  auto a = j.find("architectures");
  if (a == j.end() || !a->is_array() || a->empty() || !(*a)[0].is_string()) {
    out.push_back({"architectures", fmt::format("must be a non-empty list naming the model class (e.g. "
                                                "[\"LlamaForCausalLM\"]), got {}",
                                                a == j.end() ? "nothing" : a->dump())});
  } else {
    arch_name = (*a)[0].get<std::string>();
    arch = FindArchitecture(arch_name);
    if (arch == nullptr) {
      std::vector<std::string_view> names;
      for (const auto& s : Architectures()) names.push_back(s.architecture);
      out.push_back({"architectures",
                     fmt::format("architecture \"{}\" is not supported (supported: {})", arch_name,
                                 fmt::join(names, ", ")),
                     /*unsupported_architecture=*/true});
    }
  }
  const std::optional<std::string> model_type = str("model_type");
  if (!model_type) {
    if (!j.contains("model_type") || j.at("model_type").is_null()) {
      out.push_back({"model_type", "is missing (transformers' AutoConfig needs it to pick the config class)"});
    }
  } else if (arch != nullptr && !HasModelType(*arch, *model_type)) {
    std::vector<std::string_view> fits;
    for (const ArchSpec* s : ArchitecturesWithModelType(*model_type)) fits.push_back(s->architecture);
    out.push_back({"model_type",
                   fmt::format("\"{}\" does not match architectures[0] \"{}\" (which has model_type \"{}\"){}",
                               *model_type, arch_name, arch->model_types[0],
                               fits.empty() ? std::string(", and names no supported model")
                                            : fmt::format("; \"{}\" is the model_type of {}", *model_type,
                                                          fmt::join(fits, ", ")))});
  }
  // dtype (transformers v5) and torch_dtype (v4): the dtype of the saved floating weights.
  std::optional<std::pair<std::string, DType>> seen;
  for (const char* key : {"dtype", "torch_dtype"}) {
    const auto v = str(key);
    if (!v) continue;
    const auto d = DTypeFromTorchName(*v);
    if (!d || !(*d == DType::kF32 || *d == DType::kF16 || *d == DType::kBF16 || *d == DType::kF64)) {
      out.push_back({key, fmt::format("\"{}\" is not a dtype of floating weights (expected float32, float16, "
                                      "bfloat16 or float64)", *v)});
      continue;
    }
    if (seen && seen->second != *d) {
      out.push_back({key, fmt::format("\"{}\" disagrees with \"{}\" \"{}\"", *v, seen->first,
                                      Traits(seen->second).torch_name)});
    }
    if (!seen) seen = std::pair{std::string(key), *d};
  }
  return out;
}

std::optional<ConfigIdentityProblem> ConfigDtypeProblem(const json& j,
                                                        const std::vector<std::pair<std::string, DType>>& tensors) {
  if (!j.is_object()) return std::nullopt;
  for (const char* k : {"dtype", "torch_dtype"}) {
    auto it = j.find(k);
    if (it != j.end() && it->is_string()) return ConfigDtypeProblem(k, it->get<std::string>(), tensors);
  }
  return std::nullopt;
}

std::optional<ConfigIdentityProblem> ConfigDtypeProblem(const std::string& key, const std::string& dtype,
                                                        const std::vector<std::pair<std::string, DType>>& tensors) {
  if (key.empty()) return std::nullopt;
  const std::optional<DType> want = DTypeFromTorchName(dtype);
  if (!want) return std::nullopt;  // reported by ConfigIdentityProblems
  std::map<DType, int64_t> found;  // dtype -> number of floating weights
  std::string example;
  for (const auto& [name, d] : tensors) {
    if (!(d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kF64)) continue;
    const bool scale = name.ends_with("_scale") || name.ends_with("_scale_2");
    if (scale || name.ends_with("inv_freq")) continue;
    if (d == *want) return std::nullopt;
    if (found.empty()) example = name;
    ++found[d];
  }
  if (found.empty()) return std::nullopt;
  std::vector<std::string> have;
  for (const auto& [d, n] : found) have.push_back(fmt::format("{} {}", n, DTypeName(d)));
  return ConfigIdentityProblem{key, fmt::format("is \"{}\" but no floating weight of the checkpoint has that dtype "
                                                "(it has {}; e.g. '{}' is {})",
                                                Traits(*want).torch_name, fmt::join(have, ", "), example,
                                                DTypeName(found.begin()->first))};
}

namespace {

void CheckIdentityAndEps(const json& j, const std::string& source) {
  for (const auto& p : ConfigIdentityProblems(j)) {
    if (p.unsupported_architecture) continue;
    QF_FAIL("{}: \"{}\" {}", source, p.key, p.message);
  }
  if (j.contains("rms_norm_eps") && !j.at("rms_norm_eps").is_null()) {
    const json& v = j.at("rms_norm_eps");
    QF_CHECK(v.is_number(), "{}: \"rms_norm_eps\" must be a number, got {}", source, v.dump());
    const double eps = v.get<double>();
    QF_CHECK(std::isfinite(eps) && eps > 0, "{}: \"rms_norm_eps\" must be finite and positive (RMSNorm divides by "
             "sqrt(mean(x^2) + eps)), got {}", source, v.dump());
  }
}

}  // namespace

ModelConfig LoadModelConfig(const std::filesystem::path& dir) {
  const auto path = dir / "config.json";
  QF_CHECK(std::filesystem::exists(path), "model directory '{}' has no config.json", dir.string());
  const json j = ParseJsonBounded<json>(ReadFileLimited(path, kMaxConfigJsonBytes, "a config.json"),
                                        fmt::format("'{}'", path.string()));
  return ParseModelConfig(j, path.string());
}

RopeFrequencies ComputeRopeFrequencies(const RopeConfig& rope, int64_t head_dim, int64_t max_position_embeddings) {
  // The arithmetic follows transformers' fp32 tensor code step by step so the tables agree to the last bit
  // or so: base ** (arange(0, dim, 2) / dim) in fp32, then reciprocals.
  const int64_t half = head_dim / 2;
  const float dim_f = static_cast<float>(head_dim);
  std::vector<float> pos_freqs(half);
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / dim_f;
    pos_freqs[i] = static_cast<float>(std::pow(rope.theta, static_cast<double>(e)));
  }
  RopeFrequencies out;
  out.inv_freq.resize(half);
  for (int64_t i = 0; i < half; ++i) out.inv_freq[i] = 1.0f / pos_freqs[i];

  if (rope.type == "default") return out;
  if (rope.type == "linear") {
    for (float& f : out.inv_freq) f = f / static_cast<float>(rope.factor);
    return out;
  }
  if (rope.type == "llama3") {
    const float factor = static_cast<float>(rope.factor);
    const float lo = static_cast<float>(rope.low_freq_factor);
    const float hi = static_cast<float>(rope.high_freq_factor);
    const double old_ctx = static_cast<double>(rope.original_max_position_embeddings);
    const double low_freq_wavelen = old_ctx / rope.low_freq_factor;
    const double high_freq_wavelen = old_ctx / rope.high_freq_factor;
    for (float& f : out.inv_freq) {
      const float wavelen = static_cast<float>(2 * std::numbers::pi) / f;
      float v = wavelen > low_freq_wavelen ? f / factor : f;
      const float smooth = (static_cast<float>(old_ctx) / wavelen - lo) / (hi - lo);
      const float smoothed = (1.f - smooth) * v / factor + smooth * v;
      const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
      f = medium ? smoothed : v;
    }
    return out;
  }
  if (rope.type == "yarn") {
    const double factor = rope.factor;
    // transformers >= 5 keeps the explicit factor (it only warns when it differs from
    // max_position_embeddings / original_max_position_embeddings); the correction range uses the original
    // context length when given.
    const double orig = rope.original_max_position_embeddings > 0
                            ? static_cast<double>(rope.original_max_position_embeddings)
                            : static_cast<double>(max_position_embeddings);
    auto get_mscale = [](double scale, double mscale) {
      return scale <= 1 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
    };
    double attention = 0;
    if (rope.attention_factor) {
      attention = *rope.attention_factor;
    } else if (rope.mscale && rope.mscale_all_dim && *rope.mscale != 0 && *rope.mscale_all_dim != 0) {
      attention = get_mscale(factor, *rope.mscale) / get_mscale(factor, *rope.mscale_all_dim);
    } else {
      attention = get_mscale(factor, 1.0);
    }
    const double dim = static_cast<double>(head_dim);
    auto correction_dim = [&](double rotations) {
      return dim * std::log(orig / (rotations * 2 * std::numbers::pi)) / (2 * std::log(rope.theta));
    };
    double low = correction_dim(rope.beta_fast);
    double high = correction_dim(rope.beta_slow);
    if (rope.truncate) {
      low = std::floor(low);
      high = std::ceil(high);
    }
    low = std::max(low, 0.0);
    high = std::min(high, dim - 1);
    if (low == high) high += 0.001;  // transformers' guard against a zero-width ramp
    const float lo_f = static_cast<float>(low);
    const float span = static_cast<float>(high - low);
    for (int64_t i = 0; i < half; ++i) {
      const float extrapolation = 1.0f / pos_freqs[i];
      const float interpolation = 1.0f / (static_cast<float>(factor) * pos_freqs[i]);
      const float ramp = std::clamp((static_cast<float>(i) - lo_f) / span, 0.f, 1.f);
      const float extra_factor = 1.f - ramp;
      out.inv_freq[i] = interpolation * (1.f - extra_factor) + extrapolation * extra_factor;
    }
    out.attention_factor = static_cast<float>(attention);
    return out;
  }
  QF_FAIL("rope type \"{}\" is not supported", rope.type);
}

void RopeTables(const RopeFrequencies& f, int64_t seq, std::vector<float>* cos, std::vector<float>* sin) {
  const int64_t half = static_cast<int64_t>(f.inv_freq.size());
  cos->resize(seq * half);
  sin->resize(seq * half);
  for (int64_t p = 0; p < seq; ++p) {
    for (int64_t i = 0; i < half; ++i) {
      // fp32 angle (position * inv_freq rounded once, as the fp32 matmul in transformers), fp32 cos/sin.
      const float angle = static_cast<float>(p) * f.inv_freq[i];
      (*cos)[p * half + i] = static_cast<float>(std::cos(static_cast<double>(angle))) * f.attention_factor;
      (*sin)[p * half + i] = static_cast<float>(std::sin(static_cast<double>(angle))) * f.attention_factor;
    }
  }
}

}  // namespace qforge
