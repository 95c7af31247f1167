// Calibration algorithm configs (spec §6), the nested LayerwiseConfig (spec §7.1, §7.6) and shared-state
// patterns (spec §8.2).
//
// Each config class lists its fields once (VisitFields; base fields first). `algorithm` values of a
// QuantizeConfig are a method name, a dict {"method": ..., ...}, null or a list of those (AlgorithmSpec).
// Accepted spellings beside the released ones (output always uses the released one):
//   layerwise.save_quantizers_only (seed 001)  == NOT layerwise.calib_mutates_weights
//   shared_patterns: {weight: [...], input: [...]} (seed 003)  ~ shared_states: {weight_global_amax: {patterns}}
// Legacy forms accepted with a deprecation warning (spec §7.6): `layerwise: true/false`, `use_sequential`,
// flat `layerwise_checkpoint_dir`.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "qforge/config/fields.h"
#include "qforge/config/json_util.h"
#include "qforge/config/regex.h"

namespace qforge::config {

struct LayerwiseConfig {
  bool enable;
  bool get_qdq_activations_from_prev_layer;
  std::optional<std::string> checkpoint_dir;
  int64_t save_every;
  bool calib_mutates_weights;
  std::vector<std::string> fields_set;

  LayerwiseConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    v.Field("enable", s.enable, false, "run the algorithm one decoder layer at a time");
    v.Field("get_qdq_activations_from_prev_layer", s.get_qdq_activations_from_prev_layer, false,
            "capture the next layer's inputs after calibrating this layer, with its quantizers active "
            "(default true for gptq unless set)");
    v.Field("checkpoint_dir", s.checkpoint_dir, std::nullopt, "per-layer checkpoint / resume directory");
    v.Field("save_every", s.save_every, int64_t{1}, "commit window size (>= 1)");
    v.Field("calib_mutates_weights", s.calib_mutates_weights, true,
            "false => checkpoints keep only quantizer state (max, mse, local_hessian, nvfp4_act_headroom only)");
  }
};
void ParseValue(const Json& j, LayerwiseConfig* out, const std::string& path);
Json DumpValue(const LayerwiseConfig& v);

// shared_states: {weight_global_amax: {patterns: [regex, ...]}} with regexes compiled at parse time.
struct SharedStatesConfig {
  Json raw;  // normalized released form, e.g. {"weight_global_amax": {"patterns": [...]}}
  // nullopt => default patterns (kDefaultSharedPatterns); an empty list disables grouping.
  std::optional<std::vector<std::string>> weight_global_amax_patterns;
  std::vector<std::string> input_patterns;  // seed 003's reserved `input` key (unused)
  std::vector<std::shared_ptr<const Regex>> compiled;  // the effective weight patterns
  bool operator==(const SharedStatesConfig& o) const { return raw == o.raw; }
};
void ParseValue(const Json& j, SharedStatesConfig* out, const std::string& path);
Json DumpValue(const SharedStatesConfig& v);

// Default fusible-sibling patterns (spec §8.1), applied with fullmatch to module names.
const std::vector<std::string>& DefaultSharedPatterns();
// Effective weight patterns of an optional shared_states value (null/absent => defaults).
std::vector<std::string> ResolveSharedPatterns(const std::optional<SharedStatesConfig>& s);

// Algorithm fields that qforge adds to ModelOpt's configs (one row per field: method, field). ModelOpt 0.47
// forbids unknown fields, so a config that sets one runs in qforge only.
struct QforgeExtensionField {
  const char* method;
  const char* field;
};
inline constexpr QforgeExtensionField kQforgeExtensionFields[] = {
    {"gptq", "act_order"},
    {"gptq", "scale_algorithm"},
};
// The extension fields an `algorithm` value (a method name, a mapping or a list of them, as in a config)
// sets, as "<method>.<field>".
std::vector<std::string> QforgeExtensionFieldsSet(const nlohmann::ordered_json& algorithm);

struct AlgorithmConfig;
// A nested algorithm (nvfp4_act_headroom.weight_scale_algorithm, lsq.scale_algorithm): max/mse/local_hessian.
struct NestedAlgorithm {
  std::shared_ptr<const AlgorithmConfig> config;
  bool operator==(const NestedAlgorithm& o) const;
};
void ParseValue(const Json& j, NestedAlgorithm* out, const std::string& path);
Json DumpValue(const NestedAlgorithm& v);

// learnable_amax: "pre" | "post" | list of those.
struct LearnableAmax {
  std::vector<std::string> items;
  bool is_list = true;
  bool operator==(const LearnableAmax&) const = default;
};
void ParseValue(const Json& j, LearnableAmax* out, const std::string& path);
Json DumpValue(const LearnableAmax& v);

void CheckRatio01(const std::optional<double>& v, const std::string& path);  // (0, 1]
void CheckPositive(const double& v, const std::string& path);                // > 0
void CheckPositiveInt(const int64_t& v, const std::string& path);           // > 0
void CheckClosed01(const double& v, const std::string& path);               // [0, 1]
void CheckOpenClosed01(const double& v, const std::string& path);           // (0, 1]
void CheckOpen01(const double& v, const std::string& path);                 // (0, 1)
void CheckPercentile(const double& v, const std::string& path);             // (0, 100]
void CheckRho(const double& v, const std::string& path);                    // (0, 28672)

#define QF_ALGO_BASE_FIELDS(s, v, default_method)                                                         \
  v.Field("method", s.method, default_method, "calibration method name");                                \
  v.Field("moe_calib_experts_ratio", s.moe_calib_experts_ratio, std::nullopt,                             \
          "(0, 1]: route calibration tokens to more experts", CheckRatio01);                               \
  v.Field("layerwise", s.layerwise, LayerwiseConfig{}, "layer-by-layer calibration (spec §7)")

// One row per method (spec §6.0 table), held by the method's config struct as `kTraits`, so a method's
// config and its traits cannot drift apart.
struct AlgorithmTraits {
  const char* method;          // "null" for the base config
  bool mutates_weights;        // false => layerwise.calib_mutates_weights=false is legal
  bool supports_layerwise;     // false => layerwise.enable=True fails at calibrate time
  bool has_shared_states;
  const char* description;
};

struct AlgoBase {
  std::string method;
  std::optional<double> moe_calib_experts_ratio;
  LayerwiseConfig layerwise;
  std::vector<std::string> fields_set;
};

// `null` / base QuantizeAlgorithmConfig: no calibration.
struct NullAlgorithmConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"null", true, true, false, "no calibration"};
  NullAlgorithmConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) { QF_ALGO_BASE_FIELDS(s, v, ""); }
};

struct MaxCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"max", false, true, true, "max calibration of every enabled quantizer"};
  bool distributed_sync, sync_expert_weight_amax, skip_forward_without_activation_calib;
  std::optional<SharedStatesConfig> shared_states;
  MaxCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "max");
    v.Field("distributed_sync", s.distributed_sync, true, "sync amax across data/tensor/expert parallel ranks");
    v.Field("sync_expert_weight_amax", s.sync_expert_weight_amax, false, "sync MoE expert weight amax too");
    v.Field("skip_forward_without_activation_calib", s.skip_forward_without_activation_calib, false,
            "skip the forward pass when no activation quantizer needs data");
    v.Field("shared_states", s.shared_states, std::nullopt, "fusible-sibling shared state patterns (spec §8.2)");
  }
};

struct MseCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"mse", false, true, true, "max, then per-weight MSE search of amax"};
  bool distributed_sync;
  double step_size, start_multiplier, stop_multiplier;
  bool fp8_scale_sweep;
  std::optional<SharedStatesConfig> shared_states;
  MseCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "mse");
    v.Field("distributed_sync", s.distributed_sync, true, "sync amax across ranks");
    v.Field("step_size", s.step_size, 0.1, "multiplier step (> 0)", CheckPositive);
    v.Field("start_multiplier", s.start_multiplier, 0.25, "first amax multiplier (> 0)", CheckPositive);
    v.Field("stop_multiplier", s.stop_multiplier, 4.0, "last amax multiplier (> 0)", CheckPositive);
    v.Field("fp8_scale_sweep", s.fp8_scale_sweep, false, "sweep the 126 FP8 scales for static NVFP4 weights");
    v.Field("shared_states", s.shared_states, std::nullopt, "fusible-sibling shared state patterns (spec §8.2)");
  }
};

struct LocalHessianCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"local_hessian", false, true, true, "max, then Hessian-weighted search of weight amax"};
  bool distributed_sync;
  double step_size, start_multiplier, stop_multiplier;
  bool fp8_scale_sweep;
  int64_t block_size;
  bool debug;
  std::optional<SharedStatesConfig> shared_states;
  LocalHessianCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "local_hessian");
    v.Field("distributed_sync", s.distributed_sync, true, "sync amax across ranks");
    v.Field("step_size", s.step_size, 0.1, "multiplier step (> 0)", CheckPositive);
    v.Field("start_multiplier", s.start_multiplier, 0.25, "first amax multiplier (> 0)", CheckPositive);
    v.Field("stop_multiplier", s.stop_multiplier, 4.0, "last amax multiplier (> 0)", CheckPositive);
    v.Field("fp8_scale_sweep", s.fp8_scale_sweep, true, "sweep the 126 FP8 scales for static NVFP4 weights");
    v.Field("block_size", s.block_size, int64_t{16}, "input block of the local Hessians (> 0)", CheckPositiveInt);
    v.Field("debug", s.debug, false, "keep debugging statistics");
    v.Field("shared_states", s.shared_states, std::nullopt, "fusible-sibling shared state patterns (spec §8.2)");
  }
};

struct Nvfp4ActHeadroomCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"nvfp4_act_headroom", false, true, false, "NVFP4 activation amax with headroom from block statistics"};
  double anchor_percentile, upper_percentile, rho;
  std::optional<NestedAlgorithm> weight_scale_algorithm;
  Nvfp4ActHeadroomCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "nvfp4_act_headroom");
    v.Field("anchor_percentile", s.anchor_percentile, 1.0, "percentile of the anchor block amax, (0, 100]",
            CheckPercentile);
    v.Field("upper_percentile", s.upper_percentile, 99.99, "percentile of the top block amax, (0, 100]",
            CheckPercentile);
    v.Field("rho", s.rho, 16384.0, "headroom factor, in (0, 28672)", CheckRho);
    v.Field("weight_scale_algorithm", s.weight_scale_algorithm, std::nullopt,
            "weight algorithm: max (null), mse or local_hessian");
  }
};

struct SmoothQuantCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"smoothquant", true, true, false, "SmoothQuant: migrate activation outliers into the weights"};
  double alpha;
  SmoothQuantCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "smoothquant");
    v.Field("alpha", s.alpha, 1.0, "migration strength in [0, 1]", CheckClosed01);
  }
};

struct AwqLiteCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"awq_lite", true, true, false, "AWQ scale search"};
  double alpha_step;
  bool debug;
  AwqLiteCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "awq_lite");
    v.Field("alpha_step", s.alpha_step, 0.1, "alpha grid step in (0, 1]", CheckOpenClosed01);
    v.Field("debug", s.debug, false, "keep debugging statistics");
  }
};

struct AwqClipCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"awq_clip", true, true, false, "AWQ weight clipping search"};
  int64_t max_co_batch_size, max_tokens_per_batch;
  double min_clip_ratio, shrink_step;
  bool debug;
  AwqClipCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "awq_clip");
    v.Field("max_co_batch_size", s.max_co_batch_size, int64_t{1024}, "output rows per chunk", CheckPositiveInt);
    v.Field("max_tokens_per_batch", s.max_tokens_per_batch, int64_t{64}, "tokens kept per batch", CheckPositiveInt);
    v.Field("min_clip_ratio", s.min_clip_ratio, 0.5, "smallest clip ratio in (0, 1)", CheckOpen01);
    v.Field("shrink_step", s.shrink_step, 0.05, "clip ratio step in (0, 1]", CheckOpenClosed01);
    v.Field("debug", s.debug, false, "keep debugging statistics");
  }
};

struct AwqFullCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"awq_full", true, true, false, "AWQ scale search then clipping search"};
  double alpha_step;
  int64_t max_co_batch_size, max_tokens_per_batch;
  double min_clip_ratio, shrink_step;
  bool debug;
  AwqFullCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "awq_full");
    v.Field("alpha_step", s.alpha_step, 0.1, "alpha grid step in (0, 1]", CheckOpenClosed01);
    v.Field("max_co_batch_size", s.max_co_batch_size, int64_t{1024}, "output rows per chunk", CheckPositiveInt);
    v.Field("max_tokens_per_batch", s.max_tokens_per_batch, int64_t{64}, "tokens kept per batch", CheckPositiveInt);
    v.Field("min_clip_ratio", s.min_clip_ratio, 0.5, "smallest clip ratio in (0, 1)", CheckOpen01);
    v.Field("shrink_step", s.shrink_step, 0.05, "clip ratio step in (0, 1]", CheckOpenClosed01);
    v.Field("debug", s.debug, false, "keep debugging statistics");
  }
};

struct SvdQuantConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"svdquant", true, false, false, "SVDQuant low-rank branch + AWQ"};
  int64_t lowrank;
  std::optional<std::vector<std::string>> skip_layers;
  SvdQuantConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "svdquant");
    v.Field("lowrank", s.lowrank, int64_t{32}, "rank of the low-rank branch", CheckPositiveInt);
    v.Field("skip_layers", s.skip_layers, std::nullopt, "globs of layers kept out of SVDQuant");
  }
};

struct GptqCalibConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"gptq", true, true, false, "GPTQ Hessian-based weight update"};
  double perc_damp;
  int64_t block_size;
  bool fused;
  bool act_order;                                 // qforge extension (kQforgeExtensionFields)
  std::optional<NestedAlgorithm> scale_algorithm;  // qforge extension
  GptqCalibConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "gptq");
    v.Field("perc_damp", s.perc_damp, 0.01, "Hessian dampening fraction in (0, 1]", CheckOpenClosed01);
    v.Field("block_size", s.block_size, int64_t{128}, "columns updated per block", CheckPositiveInt);
    v.Field("fused", s.fused, false, "fused static-NVFP4 kernel (the same update; qforge has one path)");
    v.Field("act_order", s.act_order, false,
            "qforge extension: update columns in order of decreasing Hessian diagonal (GPTQModel's and "
            "llm-compressor's act_order); ModelOpt refuses the field");
    v.Field("scale_algorithm", s.scale_algorithm, std::nullopt,
            "qforge extension: the weight scales GPTQ keeps fixed, from max (null) or mse (with its fields, e.g. "
            "fp8_scale_sweep); ModelOpt refuses the field");
  }
};

struct LsqConfig : AlgoBase {
  static constexpr AlgorithmTraits kTraits{"lsq", true, true, false, "learnable scales (QAT/QAD)"};
  LearnableAmax learnable_amax;
  bool tied_amax, quantize_pre_scale;
  std::optional<NestedAlgorithm> scale_algorithm;
  LsqConfig() { SetDefaults(*this); }
  template <class Self, class V>
  static void VisitFields(Self& s, V& v) {
    QF_ALGO_BASE_FIELDS(s, v, "lsq");
    v.Field("learnable_amax", s.learnable_amax, LearnableAmax{{"post"}, true},
            "'pre', 'post', both or [] (learnable scales)");
    v.Field("tied_amax", s.tied_amax, false, "tie pre and post amax (requires both or none learnable)");
    v.Field("quantize_pre_scale", s.quantize_pre_scale, true, "FP8-quantize the pre scale");
    v.Field("scale_algorithm", s.scale_algorithm, std::nullopt, "initial scales: mse (null), local_hessian, max");
  }
};

using AlgorithmVariant =
    std::variant<NullAlgorithmConfig, MaxCalibConfig, MseCalibConfig, LocalHessianCalibConfig,
                 Nvfp4ActHeadroomCalibConfig, SmoothQuantCalibConfig, AwqLiteCalibConfig, AwqClipCalibConfig,
                 AwqFullCalibConfig, SvdQuantConfig, GptqCalibConfig, LsqConfig>;

// The rows of AllAlgorithmTraits(): each config struct's kTraits, in AlgorithmVariant's order.
const std::vector<AlgorithmTraits>& AllAlgorithmTraits();
const AlgorithmTraits* FindAlgorithmTraits(const std::string& method);

struct AlgorithmConfig {
  AlgorithmVariant value;

  const std::string& method() const;
  const AlgorithmTraits& traits() const;
  const LayerwiseConfig& layerwise() const;
  std::optional<double> moe_calib_experts_ratio() const;  // the field every algorithm config has
  template <class T>
  const T* As() const { return std::get_if<T>(&value); }

  // Full dump (all fields with defaults) or only what was given (method always included).
  Json ToJson(bool exclude_unset = false) const;
};

// Constructs the config of `method` from `fields` (a dict, may contain "method"). `path` names the
// location in errors (e.g. "algorithm"). Deprecated legacy forms log a warning.
AlgorithmConfig ParseAlgorithmConfig(const std::string& method, const Json& fields, const std::string& path);

// `algorithm` of a QuantizeConfig: null | "name" | {"method": ...} | list of those.
struct AlgorithmSpec {
  enum class Kind { kNull, kName, kConfig, kList };
  Kind kind = Kind::kName;
  std::vector<AlgorithmConfig> configs;  // parsed; empty for null
  std::vector<Json> given;               // per config: the string or dict as written (validated)
  static AlgorithmSpec FromJson(const Json& j, const std::string& path);
  static AlgorithmSpec Default();  // "max"
  Json ToJson() const;             // as given (string / dict with given fields / null / list)
  bool is_null() const { return kind == Kind::kNull; }
};

}  // namespace qforge::config
