// The export quantization config: one struct that generates hf_quant_config.json and config.json's
// "quantization_config" (spec §10.5–§10.7, runtime contract §1–§3, §9, §10), and parses them back.
//
// Both files are always produced from the same HfQuantConfig, so they cannot disagree:
//
//   QuantConfigInput (per module: hub name + export format)      ──BuildQuantConfig──▶ HfQuantConfig
//   HfQuantConfig ──ToHfQuantConfigJson──▶ hf_quant_config.json   (nested legacy shape, §10.5)
//   HfQuantConfig ──ToInlineQuantizationConfig──▶ config.json["quantization_config"]  (flat shape, §10.7)
//   checkpoint dir ──ReadCheckpointQuantConfigs──▶ both parsed back into HfQuantConfig (for check / eval)
//
// Producer block. vLLM reads `producer.name` and recognises only "modelopt" (when a nested-shape config
// sits inside config.json it uses the name to set quant_method); TRT-LLM and SGLang ignore the block. So
// qforge writes name "modelopt" and marks itself in the version as a PEP 440 local label:
// `{"name": "modelopt", "version": "0.47.0+qforge.0.1.0"}` (the ModelOpt release whose format is followed,
// then qforge's own version). Loaders that parse the version as PEP 440 still can.
//
// Exclude list. For a single format, `exclude_modules` is ModelOpt's prefix-wildcard summary of the
// unquantized modules (§10.5), with one qforge addition: every entry is then checked against every quantized
// module with vLLM's three matching rules (contract §9; VllmExcludeHits). ModelOpt's algorithm already
// keeps fnmatch safe, but not the legacy substring rule: an entry `model.layers.1.mlp.gate` (a router) is a
// substring of a quantized `model.layers.1.mlp.gate_proj`. Such a candidate is skipped for the next longer
// one; if even the exact module name would be matched, BuildQuantConfig throws (no exclude entry can express
// it to vLLM, and writing it would silently dequantize a quantized layer).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qforge::exporter {

using Json = nlohmann::ordered_json;

// ModelOpt's per-module export formats (`get_quantization_format`, spec §10.2). Append only.
enum class ExportFormat : uint8_t {
  kNone,
  kFp8,
  kFp8PcPt,
  kFp8PbWo,
  kNvfp4,
  kW4a16Nvfp4,
  kMxfp8,
  kInt8Sq,
  kInt8Wo,
  kInt4Awq,
  kW4a8Awq,
  kNvfp4Awq,
  kW4a8Nvfp4Fp8,
  kW4a8Mxfp4Fp8,
  kMxfp4,
  kNvfp4Svdquant,
};

// How the on-disk `weight` tensor stores a [out, in] matrix.
enum class WeightStorage : uint8_t {
  kKeep,        // unquantized: model dtype, [out, in]
  kFp8,         // float8_e4m3fn [out, in]
  kInt8,        // int8 [out, in]
  kPackedIn4,   // uint8 [out, in/2]: two 4-bit codes per byte along the input dim (NVFP4, MXFP4)
  kPackedOut4,  // uint8 [out/2, in]: rows 2i, 2i+1 share a byte (INT4 AWQ)
};

// Shape and dtype of `weight_scale`.
enum class WeightScaleKind : uint8_t {
  kNone,
  kScalarF32,   // fp32 [] (per tensor)
  kChannelF32,  // fp32 [out] (per output channel)
  kBlock2dF32,  // fp32 [out/128, 1, in/128, 1] (FP8 128×128 blocks)
  kGroupF32,    // fp32 [out, in/group] (INT4 AWQ)
  kGroupF8,     // float8_e4m3fn [out, in/group] (NVFP4 family)
  kGroupE8M0,   // uint8 [out, in/group] (MX formats)
};

// Whether a tensor must, may or must not be present.
// kTolerated: should be absent, but runtimes drop it (W4A16_NVFP4's stray input_scale): a warning.
enum class Presence : uint8_t { kForbidden, kOptional, kRequired, kTolerated };

// One row per export format: its names, JSON keys, on-disk tensors and what each runtime accepts.
struct ExportFormatTraits {
  ExportFormat format;
  std::string_view name;        // ModelOpt's format string ("fp8", "nvfp4", ...)
  std::string_view quant_algo;  // value written as quant_algo ("" for none); not always upper case
  bool writes_group_size;       // the layer config carries "group_size"
  bool awq_keys;                // the layer config carries has_zero_point=false, pre_quant_scale=true
  int default_group_size;       // block size along `in` for block formats (0: not a block format)
  WeightStorage weight;
  WeightScaleKind weight_scale;
  Presence weight_scale_2;  // fp32 [] global scale
  Presence input_scale;     // fp32 [] static activation scale
  // <linear>.pre_quant_scale [in], the checkpoint's dtype: the smoothing vector the runtime multiplies the
  // input by (SmoothQuant's INT8, the AWQ family; absent where ModelOpt folded it into a preceding layer).
  Presence pre_quant_scale;
  bool vllm;                // accepted as the top-level quant_algo by vLLM's ModelOpt path
  bool vllm_mixed;          // accepted per layer inside MIXED_PRECISION by vLLM
  bool trtllm;              // accepted by TRT-LLM (after its own canonicalisation)
};

// The traits of `f`.
const ExportFormatTraits& Traits(ExportFormat f);
// All rows, kNone first.
const std::vector<ExportFormatTraits>& AllExportFormats();
// By ModelOpt format string ("nvfp4"); nullopt if unknown.
std::optional<ExportFormat> ExportFormatFromName(std::string_view name);
// By quant_algo as found in a config (case-insensitive: vLLM upper-cases); nullopt if unknown.
std::optional<ExportFormat> ExportFormatFromQuantAlgo(std::string_view quant_algo);

// KV-cache quantization algorithm (spec §10.5). Names: "FP8", "NVFP4", "NVFP4_AFFINE", "INT8".
enum class KvCacheAlgo : uint8_t { kNone, kFp8, kNvfp4, kNvfp4Affine, kInt8 };
std::string_view KvCacheAlgoName(KvCacheAlgo a);                        // "" for kNone
std::optional<KvCacheAlgo> KvCacheAlgoFromName(std::string_view name);  // case-insensitive

// The per-layer config ModelOpt writes for one module (`process_layer_quant_config`).
struct LayerQuantConfig {
  std::string quant_algo;
  std::optional<int> group_size;
  std::optional<bool> has_zero_point;
  std::optional<bool> pre_quant_scale;

  // The layer config of a module exported as `f` with weight block size `group_size` (0 = none).
  static LayerQuantConfig For(ExportFormat f, int group_size);
  // {"quant_algo": ..., ["group_size": ...], ...} in ModelOpt's key order.
  Json ToJson() const;
  // Parses a quantized_layers entry; throws naming `where` on a malformed one.
  static LayerQuantConfig FromJson(const Json& j, const std::string& where);
  bool operator==(const LayerQuantConfig&) const = default;
};

struct Producer {
  std::string name = "modelopt";
  std::string version;
};

// The default producer: {"modelopt", "<ModelOpt format version>+qforge.<qforge version>"}.
Producer QforgeProducer();

// What the exporter knows about the model (input of BuildQuantConfig).
struct ModuleExport {
  std::string name;                           // hub module name, e.g. "model.layers.0.self_attn.q_proj"
  ExportFormat format = ExportFormat::kNone;  // kNone: owns a quantizer slot but is not quantized
  int group_size = 0;                         // weight quantizer block_sizes[-1] (0 if none); ignored for kNone
};

struct QuantConfigInput {
  // Every module that owns a weight or input quantizer slot, in model order (order of quantized_layers).
  std::vector<ModuleExport> modules;
  // Further unquantized modules that must be excluded although they own no quantizer slot (routers:
  // `gate`, `router`, `shared_expert_gate` of MoE blocks, spec §10.4).
  std::vector<std::string> extra_unquantized;
  // MTP layer prefixes, excluded as "<prefix>*" in every mode (spec §10.1 step 4).
  std::vector<std::string> mtp_prefixes;
  KvCacheAlgo kv_cache = KvCacheAlgo::kNone;
  Producer producer = QforgeProducer();
};

// The in-memory form of both config files.
struct HfQuantConfig {
  Producer producer;
  std::optional<std::string> quant_algo;           // null: nothing quantized
  std::optional<std::string> kv_cache_quant_algo;  // null: no KV quantization (key always present)
  // Single format only: the layer config keys copied to the top level.
  std::optional<int> group_size;
  std::optional<bool> has_zero_point;
  std::optional<bool> pre_quant_scale;
  // Present in single-format mode (possibly empty) and in MIXED_PRECISION only if MTP prefixes exist.
  std::optional<std::vector<std::string>> exclude_modules;
  // MIXED_PRECISION only: hub module name → layer config, in model order.
  std::vector<std::pair<std::string, LayerQuantConfig>> quantized_layers;

  bool is_mixed() const { return quant_algo && *quant_algo == "MIXED_PRECISION"; }
  // True iff the files should be written at all (quant_algo or kv algo non-null, spec §10.1 step 8).
  bool has_quantization() const { return quant_algo.has_value() || kv_cache_quant_algo.has_value(); }
  // The layer config that applies to module `name`: its quantized_layers entry (mixed), the top-level one
  // (single format, unless excluded by exclude_modules under vLLM's rules), or nullopt.
  std::optional<LayerQuantConfig> LayerConfigFor(const std::string& name) const;
};

// Aggregates per-module formats into the config (spec §10.5): >1 distinct layer config ⇒ MIXED_PRECISION
// with quantized_layers; exactly one ⇒ its keys at top level and exclude_modules from the prefix-wildcard
// summary made vLLM-safe (see the file comment); none ⇒ quant_algo null. Throws qforge::Error if a module
// name repeats, is empty, or an unquantized module cannot be excluded without also excluding a quantized
// one under vLLM's rules.
HfQuantConfig BuildQuantConfig(const QuantConfigInput& input);

// hf_quant_config.json content (nested shape).
Json ToHfQuantConfigJson(const HfQuantConfig& c);
// config.json["quantization_config"] content (flat shape, `convert_hf_quant_config_format`).
Json ToInlineQuantizationConfig(const HfQuantConfig& c);

// Parse the nested / flat shapes back. Throws qforge::Error naming `source` and the key on a malformed
// document (wrong types, missing "quantization"). Unknown keys are ignored.
HfQuantConfig ParseHfQuantConfigJson(const Json& j, const std::string& source);
HfQuantConfig ParseInlineQuantizationConfig(const Json& j, const std::string& source);

// Both configs of a checkpoint directory; either may be absent.
struct CheckpointQuantConfigs {
  std::optional<HfQuantConfig> hf_quant_config;  // from hf_quant_config.json
  std::optional<HfQuantConfig> inline_config;    // from config.json["quantization_config"]
  Json hf_quant_config_json;                     // raw documents (null if absent)
  Json inline_json;
  // The config a loader should use: TRT-LLM treats hf_quant_config.json as authoritative, so it wins.
  const HfQuantConfig* Effective() const;
};
// Reads `dir`/hf_quant_config.json and `dir`/config.json. Throws on unreadable or malformed JSON.
CheckpointQuantConfigs ReadCheckpointQuantConfigs(const std::filesystem::path& dir);

// ModelOpt's `_prefix_wildcard_summarize_exclude_modules` (spec §10.5), exactly: a sorted list of
// patterns covering every name in `unquantized` and matching no name in `quantized` under fnmatch.
std::vector<std::string> PrefixWildcardSummary(const std::vector<std::string>& unquantized,
                                               const std::vector<std::string>& quantized);

// How vLLM's `is_layer_excluded` would treat `module` given one exclude entry (contract §9), after its
// `foo*` → {`foo`, `foo.*`} rewrite. Returns a description of the first rule that matches ("fnmatch",
// "substring", "split fnmatch 'foo.*'", ...) or "" if none does.
std::string VllmExcludeMatch(std::string_view module, std::string_view entry);
// True iff vLLM would exclude `module` under any entry of `entries`.
bool VllmIsExcluded(std::string_view module, const std::vector<std::string>& entries);

}  // namespace qforge::exporter
