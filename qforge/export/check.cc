// Checkpoint validation against the runtime contract's checklist (§12): configs, tensors, siblings, excludes.
#include "qforge/export/check.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <optional>
#include <set>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/base/read_limited.h"
#include "qforge/base/strings.h"
#include "qforge/base/utf8.h"
#include "qforge/export/quant_config.h"
#include "qforge/export/value_scan.h"
#include "qforge/io/json_limits.h"
#include "qforge/io/safetensors.h"
#include "qforge/model/model_config.h"

namespace qforge::exporter {
namespace {

// Sibling groups vLLM fuses into one kernel (packed_modules_mapping, per-expert w1/w3).
const std::vector<std::vector<std::string>> kSiblingSets = {
    {"q_proj", "k_proj", "v_proj"}, {"gate_proj", "up_proj"}, {"w1", "w3"}, {"q_a_proj", "kv_a_proj_with_mqa"}};

// Names that never occur in a hub checkpoint but do in wrapped in-memory models.
const std::vector<std::string> kInMemoryComponents = {"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module",
                                                      "base_layer"};

// vLLM leaves these unquantized whatever the config says (legacy hard-code, contract §9).
const std::vector<std::string> kVllmNeverQuantized = {"vision_tower", "vision_model", "vit_large_projector"};

const std::vector<std::string> kRouterNames = {"gate", "router", "shared_expert_gate"};

std::string LastComponent(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? name : name.substr(dot + 1);
}

std::string Parent(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

bool IsEmbeddingName(const std::string& module) {
  const std::string last = LastComponent(module);
  return last.find("embed") != std::string::npos || last == "wte" || last == "wpe" || last == "word_embeddings" ||
         last == "position_embeddings";
}

// "model.layers.3.mlp.experts.17.w1" -> "model.layers.3.mlp.experts"; "" if not an expert.
std::string ExpertsContainer(const std::string& module) {
  const std::string key = ".experts.";
  size_t pos = module.find(key);
  while (pos != std::string::npos) {
    size_t i = pos + key.size();
    size_t j = i;
    while (j < module.size() && std::isdigit(static_cast<unsigned char>(module[j]))) ++j;
    if (j > i && (j == module.size() || module[j] == '.')) return module.substr(0, pos + key.size() - 1);
    pos = module.find(key, pos + 1);
  }
  return "";
}

bool IsFloatStorage(DType d) { return d == DType::kF32 || d == DType::kF16 || d == DType::kBF16 || d == DType::kF64; }

std::string Describe(const TensorInfo& t) { return fmt::format("{} {}", DTypeName(t.dtype), ShapeToString(t.shape)); }

// float8_e4m3fn code -> value ([s:1][e:4][m:3], bias 7, no infinities, 0x7F/0xFF NaN).
float E4M3ToFloat(uint8_t b) {
  const int e = (b >> 3) & 0xF;
  const int m = b & 7;
  if ((b & 0x7F) == 0x7F) return NAN;
  const float mag = e == 0 ? std::ldexp(static_cast<float>(m), -9) : std::ldexp(1.0f + m / 8.0f, e - 7);
  return (b & 0x80) ? -mag : mag;
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

struct Module {
  std::string name;
  std::map<std::string, std::string> tensors;  // suffix -> full tensor name
  bool quantized_on_disk = false;
  bool is_linear = false;
  std::optional<LayerQuantConfig> layer;  // what the config says for it
  // Largest magnitude code (bits 0-6 of float8_e4m3fn; 0x7E = 448) of the FP8 weight or of the NVFP4 block
  // scales; -1 if not scanned.
  int peak_code = -1;
  bool Has(const std::string& suffix) const { return tensors.count(suffix) != 0; }
};

class Checker {
 public:
  Checker(const std::filesystem::path& dir, const CheckOptions& options, CheckReport* report)
      : dir_(dir), options_(options), report_(report) {}

  void Run() {
    CheckConfigs();
    CheckIdentity();
    CheckAlgoAccepted();
    if (!OpenTensors()) return;
    IndexTensors();
    CheckModules();
    CheckFloatValues();
    CheckSiblings();
    CheckPeaks();
    CheckMixedExperts();
    CheckKvScales();
    CheckTied();
  }

 private:
  template <typename... Args>
  void Error(const char* rule, const std::string& subject, fmt::format_string<Args...> f, Args&&... args) {
    report_->findings.push_back({Severity::kError, rule, subject, fmt::format(f, std::forward<Args>(args)...)});
  }
  template <typename... Args>
  void Warn(const char* rule, const std::string& subject, fmt::format_string<Args...> f, Args&&... args) {
    report_->findings.push_back({Severity::kWarning, rule, subject, fmt::format(f, std::forward<Args>(args)...)});
  }

  // ---- 1. config files ------------------------------------------------------------------------------------
  void CheckConfigs() {
    std::error_code ec;  // a symlink loop counts as present: reading it then gives a finding naming the file
    if (!std::filesystem::exists(std::filesystem::symlink_status(dir_ / "config.json", ec))) {
      Error("files.config_json", "config.json", "config.json is missing from {}", dir_.string());
    } else {
      try {
        config_json_ = ParseJsonBounded<nlohmann::ordered_json>(
            ReadFileLimited(dir_ / "config.json", kMaxConfigJsonBytes, "a config.json"), "config.json");
      } catch (const std::exception& e) {
        Error("config.parse", "config.json", "cannot parse config.json: {}", e.what());
      }
    }
    try {
      configs_ = ReadCheckpointQuantConfigs(dir_);
    } catch (const qforge::Error& e) {
      Error("config.parse", "quantization config", "{}", e.what());
      return;
    }
    const auto& legacy = configs_.hf_quant_config;
    const auto& inl = configs_.inline_config;
    if (!legacy && !inl) {
      Error("config.missing", "hf_quant_config.json",
            "neither hf_quant_config.json nor config.json[\"quantization_config\"] exists: not a quantized "
            "ModelOpt-format checkpoint");
      return;
    }
    if (!legacy) {
      Error("files.hf_quant_config", "hf_quant_config.json",
            "hf_quant_config.json is missing (TRT-LLM treats it as authoritative; both files must be written)");
    }
    if (!inl) {
      Error("files.inline_config", "config.json:quantization_config",
            "config.json has no \"quantization_config\" (vLLM reads it first; both files must be written)");
    }
    cfg_ = configs_.Effective();
    report_->quant_algo = cfg_->quant_algo.value_or("");
    report_->kv_cache_quant_algo = cfg_->kv_cache_quant_algo.value_or("");

    for (const auto* c : {legacy ? &*legacy : nullptr, inl ? &*inl : nullptr}) {
      if (c == nullptr) continue;
      const char* where = c == &*legacy ? "hf_quant_config.json:producer" : "config.json:quantization_config.producer";
      if (c->producer.name.empty()) {
        Error("config.producer", where, "the producer block (name, version) is missing");
      } else if (c->producer.name != "modelopt") {
        Warn("config.producer", where,
             "producer name is '{}'; vLLM recognises a nested-shape config only with producer name 'modelopt'",
             c->producer.name);
      }
    }
    if (inl && configs_.inline_json.contains("quantization")) {
      // The nested shape inside config.json (older exports). vLLM derives quant_method from the producer name
      // for FP8-family and NVFP4 only and raises for anything else.
      const std::string algo = Upper(inl->quant_algo.value_or(""));
      const bool known = algo == "FP8" || algo == "FP8_PER_CHANNEL_PER_TOKEN" || algo == "FP8_PB_WO" || algo == "NVFP4";
      if (inl->producer.name != "modelopt" || !known) {
        Error("config.inline_shape", "config.json:quantization_config",
              "config.json holds the nested hf_quant_config shape; vLLM accepts it only with producer name "
              "'modelopt' and quant_algo FP8/FP8_PER_CHANNEL_PER_TOKEN/FP8_PB_WO/NVFP4 (got '{}', '{}'); write the "
              "flat shape (convert_hf_quant_config_format)",
              inl->producer.name, inl->quant_algo.value_or("null"));
      } else {
        Warn("config.inline_shape", "config.json:quantization_config",
             "config.json holds the nested hf_quant_config shape (older ModelOpt); current exports write the flat "
             "shape");
      }
    } else if (inl) {
      // A quant_method of the wrong type is reported as the value it is (value() would throw type_error).
      const auto qm = configs_.inline_json.find("quant_method");
      const std::string method = qm == configs_.inline_json.end() ? std::string()
                                 : qm->is_string()                 ? qm->get<std::string>()
                                                                   : qm->dump();
      if (!StartsWith(ToLower(method), "modelopt")) {
        Error("config.quant_method", "config.json:quantization_config.quant_method",
              "quant_method is '{}'; runtimes pick the ModelOpt loader only if it starts with 'modelopt'", method);
      }
    }
    if (legacy) CheckLegacyRequiredKeys(configs_.hf_quant_config_json);
    if (legacy && inl) CompareConfigs(*legacy, *inl);
  }

  void CheckLegacyRequiredKeys(const nlohmann::ordered_json& j) {
    if (!j.contains("quantization") || !j["quantization"].is_object()) return;
    const auto& q = j["quantization"];
    const std::string algo =
        Upper(q.value("quant_algo", nlohmann::ordered_json()).is_string() ? q["quant_algo"].get<std::string>()
                                                                          : std::string());
    std::vector<std::string> required;
    if (algo == "NVFP4" || algo == "W4A16_NVFP4") required = {"group_size", "kv_cache_quant_algo", "exclude_modules"};
    if (algo == "MXFP8") required = {"kv_cache_quant_algo", "exclude_modules"};
    if (!q.contains("kv_cache_quant_algo") && required.empty()) {
      Warn("config.keys", "hf_quant_config.json:quantization.kv_cache_quant_algo",
           "the key kv_cache_quant_algo is absent (ModelOpt always writes it, null when unused)");
    }
    for (const auto& k : required) {
      if (!q.contains(k)) {
        Error("config.keys", "hf_quant_config.json:quantization." + k,
              "vLLM refuses a {} hf_quant_config.json without the key \"{}\"", algo, k);
      }
    }
  }

  void CompareConfigs(const HfQuantConfig& a, const HfQuantConfig& b) {
    auto show = [](const std::optional<std::string>& s) { return s ? "'" + *s + "'" : std::string("null"); };
    if (a.quant_algo != b.quant_algo) {
      Error("config.agree", "quant_algo", "hf_quant_config.json says {} but config.json says {}", show(a.quant_algo),
            show(b.quant_algo));
    }
    if (a.kv_cache_quant_algo != b.kv_cache_quant_algo) {
      Error("config.agree", "kv_cache_quant_algo",
            "hf_quant_config.json says {} but config.json's kv_cache_scheme means {}", show(a.kv_cache_quant_algo),
            show(b.kv_cache_quant_algo));
    }
    if (a.group_size && b.group_size && *a.group_size != *b.group_size) {
      Error("config.agree", "group_size", "hf_quant_config.json says {} but config.json says {}", *a.group_size,
            *b.group_size);
    }
    const std::vector<std::string> ea = a.exclude_modules.value_or(std::vector<std::string>{});
    const std::vector<std::string> eb = b.exclude_modules.value_or(std::vector<std::string>{});
    if (ea != eb) {
      Error("config.agree", "exclude_modules",
            "hf_quant_config.json exclude_modules [{}] differ from config.json ignore [{}]", Join(ea, ", "),
            Join(eb, ", "));
    }
    std::map<std::string, LayerQuantConfig> la(a.quantized_layers.begin(), a.quantized_layers.end());
    std::map<std::string, LayerQuantConfig> lb(b.quantized_layers.begin(), b.quantized_layers.end());
    if (la != lb) {
      std::string first;
      for (const auto& [k, v] : la) {
        auto it = lb.find(k);
        if (it == lb.end() || !(it->second == v)) {
          first = k;
          break;
        }
      }
      if (first.empty()) {
        for (const auto& [k, v] : lb) {
          if (!la.count(k)) {
            first = k;
            break;
          }
        }
      }
      Error("config.agree", "quantized_layers", "the two files' quantized_layers differ (first difference at '{}')",
            first);
    }
    if (!a.producer.name.empty() && !b.producer.name.empty() &&
        (a.producer.name != b.producer.name || a.producer.version != b.producer.version)) {
      Warn("config.agree", "producer", "producers differ: {} {} vs {} {}", a.producer.name, a.producer.version,
           b.producer.name, b.producer.version);
    }
  }

  // ---- 2. algorithms accepted by the target runtime ---------------------------------------------------------
  bool Accepted(const ExportFormatTraits& t, bool per_layer) const {
    switch (options_.target) {
      case TargetRuntime::kVllm:
        return per_layer ? t.vllm_mixed : t.vllm;
      case TargetRuntime::kTrtllm:
        return t.trtllm;
      case TargetRuntime::kAny:
        return true;
    }
    return true;
  }
  const char* TargetName() const {
    switch (options_.target) {
      case TargetRuntime::kVllm:
        return "vLLM";
      case TargetRuntime::kTrtllm:
        return "TRT-LLM";
      case TargetRuntime::kAny:
        return "any runtime";
    }
    return "";
  }

  void CheckAlgoAccepted() {
    if (cfg_ == nullptr) return;
    if (cfg_->quant_algo) {
      const std::string& algo = *cfg_->quant_algo;
      if (cfg_->is_mixed()) {
        for (const auto& [name, lc] : cfg_->quantized_layers) {
          auto f = ExportFormatFromQuantAlgo(lc.quant_algo);
          if (!f) {
            Error("algo.unknown", "quantized_layers." + name, "unknown per-layer quant_algo '{}'", lc.quant_algo);
          } else if (!Accepted(Traits(*f), /*per_layer=*/true)) {
            Error("algo.runtime", "quantized_layers." + name,
                  "{} does not accept per-layer quant_algo '{}' in MIXED_PRECISION (the layer would load unquantized)",
                  TargetName(), lc.quant_algo);
          }
        }
      } else {
        auto f = ExportFormatFromQuantAlgo(algo);
        if (!f) {
          Error("algo.unknown", "quant_algo", "unknown quant_algo '{}'", algo);
        } else if (!Accepted(Traits(*f), /*per_layer=*/false)) {
          Error("algo.runtime", "quant_algo", "{} does not load quant_algo '{}' through its ModelOpt path",
                TargetName(), algo);
        }
      }
    }
    if (cfg_->kv_cache_quant_algo) {
      const std::string kv = Upper(*cfg_->kv_cache_quant_algo);
      auto k = KvCacheAlgoFromName(kv);
      bool ok = k.has_value();
      if (ok && options_.target == TargetRuntime::kVllm) ok = kv == "FP8" || kv == "NVFP4";
      if (ok && options_.target == TargetRuntime::kTrtllm) ok = kv == "FP8" || kv == "NVFP4" || kv == "INT8";
      if (!ok) {
        Error("algo.runtime", "kv_cache_quant_algo", "{} does not accept kv_cache_quant_algo '{}'", TargetName(),
              *cfg_->kv_cache_quant_algo);
      }
    }
  }

  // ---- 3. tensors -----------------------------------------------------------------------------------------
  bool OpenTensors() {
    try {
      ckpt_.emplace(CheckpointTensors::Open(dir_));
    } catch (const qforge::Error& e) {
      Error("files.tensors", "safetensors", "cannot open the checkpoint's tensors: {}", e.what());
      return false;
    }
    report_->tensors = static_cast<int>(ckpt_->names().size());
    return true;
  }

  void IndexTensors() {
    for (const auto& name : ckpt_->names()) {
      const auto parts = Split(name, '.');
      bool leftover = !parts.empty() && StartsWith(parts.back(), "_");
      bool in_memory = false;
      for (const auto& p : parts) {
        if (EndsWith(p, "_quantizer")) leftover = true;
        if (std::find(kInMemoryComponents.begin(), kInMemoryComponents.end(), p) != kInMemoryComponents.end()) {
          in_memory = true;
        }
      }
      if (leftover) {
        Error("tensor.leftover", name, "internal quantizer buffer left in the checkpoint (runtimes do not expect it)");
        continue;
      }
      if (in_memory) {
        Error("names.hub", name, "not a hub tensor name (contains a wrapper component of the in-memory model)");
      }
      const std::string module = Parent(name);
      const std::string suffix = LastComponent(name);
      for (const char* tail : {"_weight_scale", "_weight_scale_2", "_input_scale"}) {
        if (EndsWith(suffix, tail)) {
          Warn("tensor.unchecked", name,
               "scale of a non-default weight name ('{}'); qforge check validates only '<module>.weight' layouts",
               suffix);
          break;
        }
      }
      Module& m = modules_[module];
      m.name = module;
      m.tensors[suffix] = name;
    }
  }

  const TensorInfo& Info(const std::string& tensor) const { return ckpt_->Info(tensor); }

  // The value of a scalar scale, after checking it is 0-d fp32, finite and > 0. nullopt if unreadable.
  std::optional<float> CheckScalar(const std::string& tensor, const Shape& lead = {}) {
    const TensorInfo& t = Info(tensor);
    if (t.dtype != DType::kF32) {
      Error("tensor.dtype", tensor, "scalar scale must be float32, got {}", Describe(t));
      if (!IsFloat(t.dtype)) return std::nullopt;
    }
    if (t.shape != lead) {
      Error("tensor.shape", tensor, "scalar scale must have shape {}, got {}", ShapeToString(lead), Describe(t));
    }
    Tensor raw = ckpt_->Get(tensor);
    Tensor v;
    if (raw.dtype() == DType::kF8E4M3) {
      std::vector<float> vals;
      for (uint8_t b : raw.span<uint8_t>()) vals.push_back(E4M3ToFloat(b));
      v = Tensor::FromF32(raw.shape(), vals);
    } else {
      v = raw.ToF32();
    }
    float first = v.numel() > 0 ? v.data<float>()[0] : NAN;
    for (int64_t i = 0; i < v.numel(); ++i) {
      const float x = v.data<float>()[i];
      if (!std::isfinite(x) || !(x > 0.0f)) {
        Error("scale.value", tensor, "scale must be finite and > 0, got {}", x);
        return std::nullopt;
      }
    }
    return first;
  }

  void ExpectTensor(const std::string& tensor, DType dtype, const Shape& shape, const char* what) {
    const TensorInfo& t = Info(tensor);
    if (t.dtype != dtype) {
      Error("tensor.dtype", tensor, "{} must be {}, got {}", what, DTypeName(dtype), Describe(t));
    } else if (t.shape != shape) {
      Error("tensor.shape", tensor, "{} must have shape {}, got {}", what, ShapeToString(shape), Describe(t));
    }
  }

  // Scans per-block scales for NaN / non-positive entries. Returns the largest finite positive E4M3 code
  // for float8 scales (-1 otherwise).
  int ScanBlockScales(const std::string& tensor, DType dtype) {
    if (!options_.scan_values) return -1;
    const TensorInfo& t = Info(tensor);
    if (t.dtype != dtype) return -1;
    Tensor v = ckpt_->Get(tensor);
    int64_t nan = 0, nonpos = 0, zero = 0;
    int peak = -1;
    if (dtype == DType::kF8E4M3) {
      for (uint8_t b : v.span<uint8_t>()) {
        if ((b & 0x80) == 0 && b != 0x7F) peak = std::max<int>(peak, b);
        if ((b & 0x7F) == 0x7F) {
          ++nan;
        } else if ((b & 0x7F) == 0) {
          ++zero;
        } else if (b & 0x80) {
          ++nonpos;
        }
      }
    } else if (dtype == DType::kU8) {  // E8M0: 0xFF is NaN
      for (uint8_t b : v.span<uint8_t>()) nan += b == 0xFF;
    } else if (dtype == DType::kF32) {
      for (float x : v.span<float>()) {
        if (std::isnan(x) || std::isinf(x)) {
          ++nan;
        } else if (x == 0.0f) {
          ++zero;
        } else if (x < 0.0f) {
          ++nonpos;
        }
      }
    }
    ckpt_->Release(tensor);
    if (nan) Error("scale.value", tensor, "{} per-block scales are NaN or infinite", nan);
    if (nonpos) Error("scale.value", tensor, "{} per-block scales are negative", nonpos);
    if (zero) Warn("scale.value", tensor, "{} per-block scales are zero (their blocks dequantize to 0)", zero);
    return peak;
  }

  // Scans an FP8 weight for NaN codes; returns the largest finite magnitude code.
  int ScanFp8Weight(const std::string& tensor) {
    if (!options_.scan_values) return -1;
    Tensor v = ckpt_->Get(tensor);
    int64_t nan = 0;
    int peak = -1;
    for (uint8_t b : v.span<uint8_t>()) {
      const int mag = b & 0x7F;
      if (mag == 0x7F) {
        ++nan;
      } else {
        peak = std::max(peak, mag);
      }
    }
    ckpt_->Release(tensor);
    if (nan) Error("tensor.value", tensor, "{} float8_e4m3fn weight elements are NaN", nan);
    return peak;
  }

  bool IsRouter(const Module& m) const {
    const std::string last = LastComponent(m.name);
    if (std::find(kRouterNames.begin(), kRouterNames.end(), last) == kRouterNames.end()) return false;
    return experts_parents_.count(Parent(m.name)) != 0;
  }

  void CheckModules() {
    for (const auto& [name, m] : modules_) {
      const std::string c = ExpertsContainer(name);
      if (!c.empty()) experts_parents_.insert(Parent(c));
    }
    for (auto& [name, m] : modules_) {
      if (!m.Has("weight")) {
        for (const char* s : {"weight_scale", "weight_scale_2", "input_scale"}) {
          if (m.Has(s)) Error("tensor.orphan", m.tensors[s], "scale tensor without a weight in module '{}'", name);
        }
        continue;
      }
      const TensorInfo& w = Info(m.tensors["weight"]);
      const bool has_scales = m.Has("weight_scale") || m.Has("weight_scale_2") || m.Has("input_scale");
      m.quantized_on_disk = !IsFloatStorage(w.dtype) || has_scales;
      m.is_linear = w.shape.size() == 2 && !IsEmbeddingName(name);
      if (cfg_ != nullptr) m.layer = cfg_->LayerConfigFor(name);

      if (!m.quantized_on_disk) {
        if (!m.is_linear) continue;
        ++report_->unquantized_linears;
        if (m.layer && cfg_ != nullptr) {
          Error(cfg_->is_mixed() ? "mixed.unquantized_listed" : "exclude.missing", name,
                "Linear '{}' has only {} tensors but the config quantizes it as {} ({}); a runtime would load the "
                "{} weight as quantized data",
                name, DTypeName(w.dtype), m.layer->quant_algo,
                cfg_->is_mixed() ? "listed in quantized_layers" : "not matched by exclude_modules", DTypeName(w.dtype));
        }
        continue;
      }

      ++report_->quantized_modules;
      if (IsRouter(m)) {
        Error("router.quantized", name, "MoE router '{}' is quantized; routers must stay in the model dtype", name);
      }
      if (IsEmbeddingName(name)) {
        Error("embedding.quantized", name,
              "embedding '{}' is quantized; runtimes' ModelOpt paths load embeddings "
              "unquantized",
              name);
      }
      if (options_.target == TargetRuntime::kVllm) {
        for (const auto& v : kVllmNeverQuantized) {
          if (name.find(v) != std::string::npos) {
            Error("names.vllm_unquantized", name,
                  "vLLM never quantizes modules whose name contains '{}', but '{}' carries quantized tensors", v, name);
          }
        }
      }
      if (cfg_ == nullptr) continue;
      if (!m.layer) {
        if (cfg_->is_mixed()) {
          Error("mixed.unlisted", name, "module '{}' carries quantized tensors but is not in quantized_layers", name);
        } else if (!cfg_->quant_algo) {
          Error("config.null_algo", name, "module '{}' carries quantized tensors but quant_algo is null", name);
        } else {
          std::string entry, why;
          for (const auto& e : cfg_->exclude_modules.value_or(std::vector<std::string>{})) {
            why = VllmExcludeMatch(name, e);
            if (!why.empty()) {
              entry = e;
              break;
            }
          }
          Error("exclude.quantized", name,
                "module '{}' carries quantized tensors but exclude entry '{}' excludes it ({}), so vLLM would load "
                "it as unquantized",
                name, entry, why);
        }
        continue;
      }
      auto f = ExportFormatFromQuantAlgo(m.layer->quant_algo);
      if (!f) continue;  // reported by CheckAlgoAccepted
      CheckLayout(m, Traits(*f), m.layer->group_size);
    }
  }

  void CheckLayout(Module& m, const ExportFormatTraits& t, std::optional<int> group_size) {
    const std::string wname = m.tensors["weight"];
    const TensorInfo& w = Info(wname);
    const std::string algo(t.quant_algo);
    if (w.shape.size() < 2) {
      Error("tensor.shape", wname, "{} weight must be at least 2-D, got {}", algo, Describe(w));
      return;
    }
    const Shape lead(w.shape.begin(), w.shape.end() - 2);
    const int64_t rows = w.shape[w.shape.size() - 2];
    const int64_t cols = w.shape.back();
    int64_t out = rows, in = cols;
    DType wdtype = DType::kF8E4M3;
    const char* layout = "[out, in]";
    switch (t.weight) {
      case WeightStorage::kKeep:
        wdtype = w.dtype;
        break;
      case WeightStorage::kFp8:
        wdtype = DType::kF8E4M3;
        break;
      case WeightStorage::kInt8:
        wdtype = DType::kI8;
        break;
      case WeightStorage::kPackedIn4:
        wdtype = DType::kU8;
        in = cols * 2;
        layout = "[out, in/2] (two 4-bit codes per byte)";
        break;
      case WeightStorage::kPackedOut4:
        wdtype = DType::kU8;
        out = rows * 2;
        layout = "[out/2, in] (rows paired)";
        break;
    }
    if (w.dtype != wdtype) {
      Error("tensor.dtype", wname, "{} weight must be {} {}, got {}", algo, DTypeName(wdtype), layout, Describe(w));
      return;
    }
    if (t.weight == WeightStorage::kFp8) {
      const int peak = ScanFp8Weight(wname);
      if (t.weight_scale == WeightScaleKind::kScalarF32) m.peak_code = peak;
    }
    const int g = group_size && *group_size > 0 ? *group_size : t.default_group_size;
    const bool grouped = t.weight_scale == WeightScaleKind::kGroupF8 || t.weight_scale == WeightScaleKind::kGroupE8M0 ||
                         t.weight_scale == WeightScaleKind::kGroupF32;
    if (grouped && (g <= 0 || in % g != 0)) {
      Error("tensor.dims", wname, "{} needs the input dimension ({}) divisible by the group size {}", algo, in, g);
      return;
    }
    auto with_lead = [&](Shape s) {
      Shape r = lead;
      r.insert(r.end(), s.begin(), s.end());
      return r;
    };

    // weight_scale
    if (t.weight_scale != WeightScaleKind::kNone) {
      if (!m.Has("weight_scale")) {
        Error("tensor.missing", wname, "{} module '{}' lacks weight_scale", algo, m.name);
      } else {
        const std::string s = m.tensors["weight_scale"];
        switch (t.weight_scale) {
          case WeightScaleKind::kNone:
            break;
          case WeightScaleKind::kScalarF32:
            CheckScalar(s, lead);
            break;
          case WeightScaleKind::kChannelF32:
            ExpectTensor(s, DType::kF32, with_lead({out}), "per-channel weight_scale");
            ScanBlockScales(s, DType::kF32);
            break;
          case WeightScaleKind::kBlock2dF32:
            if (out % 128 != 0 || in % 128 != 0) {
              Error("tensor.dims", wname, "{} needs both dimensions divisible by 128, weight is [{}, {}]", algo, out,
                    in);
            }
            ExpectTensor(s, DType::kF32, with_lead({(out + 127) / 128, 1, (in + 127) / 128, 1}),
                         "128x128-block weight_scale");
            ScanBlockScales(s, DType::kF32);
            break;
          case WeightScaleKind::kGroupF32:
            ExpectTensor(s, DType::kF32, with_lead({out, in / g}), "per-group weight_scale");
            ScanBlockScales(s, DType::kF32);
            break;
          case WeightScaleKind::kGroupF8:
            ExpectTensor(s, DType::kF8E4M3, with_lead({out, in / g}), "per-block weight_scale (linear layout)");
            if (const int peak = ScanBlockScales(s, DType::kF8E4M3);
                t.format == ExportFormat::kNvfp4 || t.format == ExportFormat::kNvfp4Awq ||
                t.format == ExportFormat::kW4a16Nvfp4) {
              m.peak_code = peak;
            }
            break;
          case WeightScaleKind::kGroupE8M0:
            ExpectTensor(s, DType::kU8, with_lead({out, in / g}), "E8M0 per-block weight_scale");
            ScanBlockScales(s, DType::kU8);
            break;
        }
      }
    }
    CheckScalarSlot(m, "weight_scale_2", t.weight_scale_2, algo, lead);
    CheckScalarSlot(m, "input_scale", t.input_scale, algo, lead);
    CheckPreQuantScale(m, t, algo, with_lead({in}));
  }

  // <linear>.pre_quant_scale (SmoothQuant, AWQ): where the format takes one, a floating [.., in] vector of
  // positive factors (NaN / Inf: CheckFloatValues); elsewhere no runtime applies it, so the layer's outputs
  // would be wrong.
  void CheckPreQuantScale(Module& m, const ExportFormatTraits& t, const std::string& algo, const Shape& want) {
    if (!m.Has("pre_quant_scale")) return;
    const std::string name = m.tensors["pre_quant_scale"];
    if (t.pre_quant_scale == Presence::kForbidden) {
      Error("tensor.unexpected", name, "{} takes no pre_quant_scale (no runtime applies it to this format's inputs)",
            algo);
      return;
    }
    const TensorInfo& ti = Info(name);
    if (!IsFloatStorage(ti.dtype)) {
      Error("tensor.dtype", name, "pre_quant_scale must be a floating tensor (the checkpoint's dtype), got {}",
            Describe(ti));
      return;
    }
    if (ti.shape != want) {
      Error("tensor.shape", name, "pre_quant_scale must have shape {} (one factor per input feature), got {}",
            ShapeToString(want), Describe(ti));
      return;
    }
    if (!options_.scan_values) return;
    const Tensor v = ckpt_->Get(name).ToF32();
    ckpt_->Release(name);
    int64_t nonpos = 0;
    for (float x : v.span<float>()) nonpos += x <= 0.0f ? 1 : 0;  // (NaN compares false: CheckFloatValues)
    if (nonpos > 0) {
      Error("scale.value", name, "{} of {} pre_quant_scale factors are zero or negative (the smoothing divides the "
            "weights by them)", nonpos, v.numel());
    }
  }

  void CheckScalarSlot(Module& m, const std::string& suffix, Presence p, const std::string& algo, const Shape& lead) {
    const bool has = m.Has(suffix);
    const std::string subject = has ? m.tensors[suffix] : m.name + "." + suffix;
    if (!has) {
      if (p == Presence::kRequired) {
        const bool expert = !ExpertsContainer(m.name).empty();
        Error("tensor.missing", subject, "{} module '{}' lacks {}{}", algo, m.name, suffix,
              expert && suffix == "input_scale"
                  ? " (every MoE expert needs a finite, positive input_scale, also experts that saw no tokens)"
                  : "");
      }
      return;
    }
    if (p == Presence::kForbidden) {
      Error("tensor.unexpected", subject, "{} takes no {} (the runtime would not read it)", algo, suffix);
      return;
    }
    if (p == Presence::kTolerated) {
      Warn("tensor.unexpected", subject, "{} takes no {}; runtimes drop it", algo, suffix);
    }
    CheckScalar(subject, lead);
  }

  // ---- 5. siblings ----------------------------------------------------------------------------------------
  std::optional<uint32_t> ScalarBits(const Module& m, const std::string& suffix) const {
    auto it = m.tensors.find(suffix);
    if (it == m.tensors.end()) return std::nullopt;
    const TensorInfo& t = Info(it->second);
    if (t.dtype != DType::kF32 || NumElements(t.shape) != 1) return std::nullopt;
    uint32_t bits;
    std::memcpy(&bits, ckpt_->Get(it->second).raw(), 4);
    return bits;
  }

  void CheckSiblings() {
    for (const auto& set : kSiblingSets) {
      // parent -> members present
      std::map<std::string, std::vector<const Module*>> groups;
      for (const auto& [name, m] : modules_) {
        if (!m.Has("weight")) continue;
        const std::string last = LastComponent(name);
        if (std::find(set.begin(), set.end(), last) != set.end()) groups[Parent(name)].push_back(&m);
      }
      for (const auto& [parent, members] : groups) {
        if (members.size() < 2) continue;
        auto rank = [&](const Module* m) {
          return std::find(set.begin(), set.end(), LastComponent(m->name)) - set.begin();
        };
        std::vector<const Module*> sorted = members;
        std::sort(sorted.begin(), sorted.end(), [&](const Module* a, const Module* b) { return rank(a) < rank(b); });
        CheckSiblingGroup(parent, sorted);
      }
    }
  }

  void CheckSiblingGroup(const std::string& parent, const std::vector<const Module*>& members) {
    const Module& first = *members.front();
    std::string names;
    for (const Module* m : members) names += (names.empty() ? "" : ", ") + LastComponent(m->name);
    const std::string subject = parent + ".{" + names + "}";
    bool same = true;
    for (const Module* m : members) {
      if (m->quantized_on_disk != first.quantized_on_disk || m->layer != first.layer) same = false;
    }
    if (!same) {
      std::string detail;
      for (const Module* m : members) {
        detail += fmt::format("{}{}={}", detail.empty() ? "" : ", ", LastComponent(m->name),
                              m->layer ? m->layer->quant_algo : (m->quantized_on_disk ? "unlisted" : "unquantized"));
      }
      Error("siblings.format", subject, "fused siblings must share one format (vLLM fuses them into one layer): {}",
            detail);
      return;
    }
    if (!first.layer || !first.quantized_on_disk) return;
    auto f = ExportFormatFromQuantAlgo(first.layer->quant_algo);
    if (!f) return;
    const auto& t = Traits(*f);
    const bool has_global = t.weight_scale_2 != Presence::kForbidden;
    const bool fp8_scalar = t.weight_scale == WeightScaleKind::kScalarF32;
    std::vector<std::string> keys;
    if (has_global) keys = {"weight_scale_2", "input_scale"};
    if (fp8_scalar) keys = {"weight_scale", "input_scale"};
    CheckSiblingPreQuantScales(subject, members, t);
    for (const auto& key : keys) {
      std::set<uint32_t> values;
      std::string listing;
      bool all_present = true;
      for (const Module* m : members) {
        auto b = ScalarBits(*m, key);
        if (!b) {
          all_present = false;
          break;
        }
        values.insert(*b);
        float v;
        std::memcpy(&v, &*b, 4);
        listing += fmt::format("{}{}={}", listing.empty() ? "" : ", ", LastComponent(m->name), v);
      }
      if (!all_present || values.size() <= 1) continue;
      if (has_global) {
        Error("siblings.nvfp4", subject + "." + key,
              "fused {} siblings must have bit-identical {} (vLLM takes the max and mis-scales the other shards; "
              "TRT-LLM asserts): {}",
              t.quant_algo, key, listing);
      } else {
        Warn("siblings.fp8", subject + "." + key,
             "FP8 siblings have different {} (vLLM requantizes them to the max at load time): {}", key, listing);
      }
    }
  }

  // Fused siblings read one input, so a runtime scales it once: their pre_quant_scale (all or none) must be
  // bit-identical (ModelOpt's export averages them and re-smooths the weights), and for INT8 SmoothQuant their
  // input_scale too (ModelOpt's export takes the group max).
  void CheckSiblingPreQuantScales(const std::string& subject, const std::vector<const Module*>& members,
                                  const ExportFormatTraits& t) {
    if (t.pre_quant_scale == Presence::kForbidden) return;
    int with = 0;
    for (const Module* m : members) with += m->Has("pre_quant_scale") ? 1 : 0;
    if (with == 0) return;
    if (with != static_cast<int>(members.size())) {
      Error("siblings.pre_quant_scale", subject, "{} of {} fused siblings carry a pre_quant_scale: a runtime scales "
            "their shared input once, for all or none of them", with, members.size());
      return;
    }
    const std::string first = members.front()->tensors.at("pre_quant_scale");
    const Tensor a = ckpt_->Get(first);
    for (const Module* m : members) {
      const std::string other = m->tensors.at("pre_quant_scale");
      const Tensor b = ckpt_->Get(other);
      if (b.dtype() != a.dtype() || b.shape() != a.shape() || std::memcmp(a.raw(), b.raw(), a.nbytes()) != 0) {
        Error("siblings.pre_quant_scale", other, "fused siblings must have bit-identical pre_quant_scale (a runtime "
              "scales their shared input once): differs from {}", first);
      }
    }
    if (t.format == ExportFormat::kInt8Sq) {
      std::set<uint32_t> values;
      for (const Module* m : members) {
        if (auto bits = ScalarBits(*m, "input_scale")) values.insert(*bits);
      }
      if (values.size() > 1) {
        Error("siblings.int8_sq", subject + ".input_scale", "fused {} siblings must have bit-identical input_scale "
              "(one scale for their shared, smoothed input)", t.quant_algo);
      }
    }
  }

  // Scale consistency (checklist item 9): a per-tensor scale of amax/448 (FP8) or a global scale of amax/2688
  // (NVFP4) puts the largest weight of a tensor, or of a group of fused siblings sharing the scale, exactly at
  // code 448 (0x7E). A group whose peak stays below was given a scale larger than its weights need.
  void CheckPeaks() {
    std::map<std::string, std::vector<const Module*>> groups;  // group key -> members
    for (const auto& [name, m] : modules_) {
      if (m.peak_code < 0) continue;
      std::string key = name;
      for (size_t i = 0; i < kSiblingSets.size(); ++i) {
        const auto& set = kSiblingSets[i];
        if (std::find(set.begin(), set.end(), LastComponent(name)) != set.end()) {
          key = Parent(name) + "#" + std::to_string(i);
        }
      }
      groups[key].push_back(&m);
    }
    for (const auto& [key, members] : groups) {
      int peak = -1;
      std::string names;
      for (const Module* m : members) {
        peak = std::max(peak, m->peak_code);
        names += (names.empty() ? "" : ", ") + m->name;
      }
      if (peak == 0x7E) continue;
      const float value = E4M3ToFloat(static_cast<uint8_t>(peak));
      Warn("scale.global", names,
           "the largest {} is {} instead of 448: the per-tensor / global scale is larger than the weights need "
           "(expected amax/448 for FP8, amax/2688 for NVFP4), which wastes precision",
           members.front()->layer && members.front()->layer->quant_algo == "FP8" ? "FP8 weight code"
                                                                                 : "NVFP4 block scale",
           value);
    }
  }

  // MIXED_PRECISION: vLLM resolves routed experts by the first key under the experts' prefix.
  void CheckMixedExperts() {
    if (cfg_ == nullptr || !cfg_->is_mixed()) return;
    std::map<std::string, std::set<std::string>> algos;
    for (const auto& [name, lc] : cfg_->quantized_layers) {
      const std::string c = ExpertsContainer(name);
      if (!c.empty()) algos[c].insert(lc.quant_algo);
    }
    for (const auto& [c, set] : algos) {
      if (set.size() > 1) {
        Error("mixed.experts", c, "all experts of one MoE layer must share one quant_algo in MIXED_PRECISION, got {}",
              Join(set, ", "));
      }
    }
  }

  // ---- KV-cache scales ------------------------------------------------------------------------------------
  void CheckKvScales() {
    int count = 0;
    for (auto& [name, m] : modules_) {
      for (const char* s : {"k_scale", "v_scale", "kv_scale"}) {
        if (!m.Has(s)) continue;
        ++count;
        CheckScalar(m.tensors[s]);
      }
    }
    const bool kv = cfg_ != nullptr && cfg_->kv_cache_quant_algo.has_value();
    if (kv && count == 0) {
      // ModelOpt's "cast" KV recipes (use_constant_amax) write no scales at all (spec §10.2).
      Warn("kv.missing", "kv_cache_quant_algo",
           "kv_cache_quant_algo is {} but the checkpoint has no k_scale / v_scale tensors; runtimes use 1.0",
           *cfg_->kv_cache_quant_algo);
    }
    if (kv && count > 0) CheckKvComplete();
    if (!kv && count > 0 && cfg_ != nullptr) {
      Warn("kv.unused", "kv_cache_quant_algo",
           "the checkpoint has {} KV-cache scales but kv_cache_quant_algo is null, so runtimes ignore them", count);
    }
  }

  // Every attention layer (the parent of a `k_proj` / `v_proj` with a weight) has both k_scale and v_scale
  // once any layer has one: a runtime would use 1.0 for the missing ones, a silently wrong KV cache.
  // Scales sit at <attn>.k_proj.k_scale / <attn>.v_proj.v_scale (ModelOpt), or <attn>.k_scale / kv_scale.
  void CheckKvComplete() {
    struct Kv {
      bool k = false, v = false;
    };
    std::map<std::string, Kv> layers;  // attention module -> which scales it has
    for (const auto& [name, m] : modules_) {
      const std::string last = LastComponent(name);
      const bool proj = last == "k_proj" || last == "v_proj";
      if (proj && m.Has("weight")) layers[Parent(name)];
      const std::string attn = proj ? Parent(name) : name;
      if (m.Has("k_scale") || m.Has("kv_scale")) layers[attn].k = true;
      if (m.Has("v_scale") || m.Has("kv_scale")) layers[attn].v = true;
    }
    int with = 0;
    for (const auto& [attn, kv] : layers) with += kv.k || kv.v ? 1 : 0;
    for (const auto& [attn, kv] : layers) {
      if (kv.k && kv.v) continue;
      const char* missing = !kv.k && !kv.v ? "k_scale and v_scale" : !kv.k ? "k_scale" : "v_scale";
      Error("kv.incomplete", attn,
            "attention layer '{}' has no {} while kv_cache_quant_algo is {} and {} of {} attention layers carry KV "
            "scales; runtimes would use 1.0 for the missing scale (only exports without any KV scale, ModelOpt's "
            "cast recipes, may omit them)",
            attn, missing, *cfg_->kv_cache_quant_algo, with, layers.size());
    }
  }

  // Model identity in config.json: architectures, model_type and dtype agree (an unsupported architecture
  // cannot be verified: a warning).
  void CheckIdentity() {
    if (!config_json_.is_object()) return;  // reported by CheckConfigs
    const nlohmann::json j = nlohmann::json::parse(config_json_.dump());
    for (const auto& p : ConfigIdentityProblems(j)) {
      if (p.unsupported_architecture) {
        Warn("config.identity", "config.json:" + p.key, "{}; model_type and layout not verified", p.message);
      } else {
        Error("config.identity", "config.json:" + p.key, "\"{}\" {}", p.key, p.message);
      }
    }
  }

  // NaN / Inf in any floating tensor (F32/F16/BF16/F64: unquantized weights, norms, embeddings, biases), and the
  // config's dtype against them. Scales and FP8 weights have their own rules (CheckScalar, ScanBlockScales,
  // ScanFp8Weight).
  void CheckFloatValues() {
    std::vector<std::pair<std::string, DType>> dtypes;
    for (const auto& name : ckpt_->names()) dtypes.emplace_back(name, Info(name).dtype);
    if (config_json_.is_object()) {
      if (auto p = ConfigDtypeProblem(nlohmann::json::parse(config_json_.dump()), dtypes)) {
        Error("config.identity", "config.json:" + p->key, "\"{}\" {}", p->key, p->message);
      }
    }
    if (!options_.scan_values) return;
    static const std::set<std::string> kScaleSuffixes = {"weight_scale", "weight_scale_2", "input_scale",
                                                         "k_scale",      "v_scale",        "kv_scale"};
    for (const auto& [name, dtype] : dtypes) {
      if (!IsFloatStorage(dtype) || kScaleSuffixes.count(LastComponent(name))) continue;
      const NonFiniteScan scan = ScanNonFinite(ckpt_->Get(name));
      ckpt_->Release(name);
      if (scan.count > 0) {
        Error("tensor.value", name, "{} of {} elements are NaN or infinite (first at flat index {}) in {}",
              scan.count, NumElements(Info(name).shape), scan.first, ckpt_->FileOf(name));
      }
    }
  }

  void CheckTied() {
    if (!config_json_.is_object()) return;
    const auto tied = config_json_.find("tie_word_embeddings");
    if (tied == config_json_.end() || !tied->is_boolean() || !tied->get<bool>()) return;
    if (modules_.count("lm_head") && modules_["lm_head"].Has("weight")) {
      for (const auto& [name, m] : modules_) {
        if (LastComponent(name) == "embed_tokens" && m.Has("weight") && !modules_["lm_head"].quantized_on_disk) {
          Warn("tied.duplicate", "lm_head.weight",
               "config.json ties word embeddings but lm_head.weight is stored besides {}.weight", name);
        }
      }
    }
  }

  std::filesystem::path dir_;
  CheckOptions options_;
  CheckReport* report_;
  nlohmann::ordered_json config_json_;
  CheckpointQuantConfigs configs_;
  const HfQuantConfig* cfg_ = nullptr;
  std::optional<CheckpointTensors> ckpt_;
  std::map<std::string, Module> modules_;
  std::set<std::string> experts_parents_;  // modules that contain an `experts` list
};

}  // namespace

int CheckReport::errors() const {
  return static_cast<int>(
      std::count_if(findings.begin(), findings.end(), [](const Finding& f) { return f.severity == Severity::kError; }));
}

int CheckReport::warnings() const { return static_cast<int>(findings.size()) - errors(); }

std::string CheckReport::ToText() const {
  std::string out;
  for (const auto& f : findings) {
    out += fmt::format("{} [{}] {}: {}\n", f.severity == Severity::kError ? "error" : "warning", f.rule, f.subject,
                       f.message);
  }
  out += fmt::format(
      "{}: {} (quant_algo {}, kv_cache_quant_algo {}; {} tensors, {} quantized modules, {} "
      "unquantized Linear modules): {} error(s), {} warning(s)\n",
      dir.string(), ok() ? "PASS" : "FAIL", quant_algo.empty() ? "null" : quant_algo,
      kv_cache_quant_algo.empty() ? "null" : kv_cache_quant_algo, tensors, quantized_modules, unquantized_linears,
      errors(), warnings());
  return out;
}

nlohmann::ordered_json CheckReport::ToJson() const {
  // Subjects and messages quote bytes of the checked files (tensor names, parser errors with the offending
  // token, quant_algo values), which need not be UTF-8: dump() would throw type_error 316 on them.
  nlohmann::ordered_json j;
  j["dir"] = ToValidUtf8(dir.string());
  j["ok"] = ok();
  j["errors"] = errors();
  j["warnings"] = warnings();
  j["quant_algo"] = quant_algo.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(ToValidUtf8(quant_algo));
  j["kv_cache_quant_algo"] = kv_cache_quant_algo.empty() ? nlohmann::ordered_json()
                                                         : nlohmann::ordered_json(ToValidUtf8(kv_cache_quant_algo));
  j["tensors"] = tensors;
  j["quantized_modules"] = quantized_modules;
  j["unquantized_linears"] = unquantized_linears;
  j["findings"] = nlohmann::ordered_json::array();
  for (const auto& f : findings) {
    j["findings"].push_back({{"severity", f.severity == Severity::kError ? "error" : "warning"},
                             {"rule", f.rule},
                             {"subject", ToValidUtf8(f.subject)},
                             {"message", ToValidUtf8(f.message)}});
  }
  return j;
}

CheckReport CheckCheckpoint(const std::filesystem::path& dir, const CheckOptions& options) {
  CheckReport report;
  report.dir = dir;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    report.findings.push_back({Severity::kError, "files.dir", dir.string(), "not a directory"});
    return report;
  }
  // `check` runs on untrusted checkpoints: no input may escape as an exception. A qforge::Error is a damaged
  // file discovered mid-way (e.g. a shard listed in the index but unreadable); anything else is a gap in
  // qforge's own validation, reported as rule "internal" (the check fuzzer treats it as a bug) rather than
  // a crash, so the findings so far are still printed.
  try {
    Checker(dir, options, &report).Run();
  } catch (const qforge::Error& e) {
    report.findings.push_back({Severity::kError, "files.read", dir.string(), e.what()});
  } catch (const std::bad_alloc&) {
    report.findings.push_back({Severity::kError, "internal", dir.string(),
                               "out of memory while checking (a size in the checkpoint is larger than this machine "
                               "can hold)"});
  } catch (const std::exception& e) {
    report.findings.push_back(
        {Severity::kError, "internal", dir.string(), fmt::format("unexpected error while checking: {}", e.what())});
  }
  return report;
}

TargetRuntime TargetRuntimeFromName(const std::string& name) {
  const std::string n = ToLower(name);
  if (n == "vllm") return TargetRuntime::kVllm;
  if (n == "trtllm" || n == "trt-llm" || n == "tensorrt-llm") return TargetRuntime::kTrtllm;
  if (n == "any") return TargetRuntime::kAny;
  QF_FAIL("unknown target runtime '{}' (expected vllm, trtllm or any)", name);
}

}  // namespace qforge::exporter
