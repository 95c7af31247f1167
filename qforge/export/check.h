// `qforge check`: validates an exported checkpoint against the runtime contract's checklist (§12).
//
// Every finding names the tensor or config key it is about. Hard rules of the contract are errors (a
// runtime would refuse the checkpoint or compute wrong values); its "ideally" / "optional" items are
// warnings. The checker never throws on a bad checkpoint: unreadable files become findings too.
//
// Which modules are Linear. A module is judged by the tensors under its name: a 2-D `.weight` is a Linear
// weight unless the module is an embedding (last name component contains "embed", or is wte / wpe /
// word_embeddings / position_embeddings); 1-D weights (norms) and weights of rank ≥ 3 (convolutions,
// fused 3-D experts) are not Linear. A module is "quantized on disk" if its weight has a non-float dtype
// (uint8, int8, float8) or it carries weight_scale / weight_scale_2 / input_scale. Then:
//   * a quantized-on-disk module must be quantized by the config (not excluded, listed in quantized_layers);
//   * a Linear module with only BF16/F16/F32 tensors must not be (it must be excluded / not listed);
//   * the config's format for it decides exactly which tensors, dtypes and shapes must be present.
//
// Sibling groups (fused by vLLM into one kernel): q/k/v_proj, gate/up_proj, w1/w3, q_a_proj +
// kv_a_proj_with_mqa, under the same parent module (so per expert for MoE experts).
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qforge::exporter {

enum class Severity { kError, kWarning };

struct Finding {
  Severity severity = Severity::kError;
  std::string rule;     // short id of the checklist item, e.g. "config.agree", "tensor.dtype", "siblings.nvfp4"
  std::string subject;  // the tensor name, module name or config key the finding is about
  std::string message;  // complete sentence with the offending values
};

// Runtime whose accepted quant_algo set is enforced (contract §4).
enum class TargetRuntime { kVllm, kTrtllm, kAny };

struct CheckOptions {
  TargetRuntime target = TargetRuntime::kVllm;
  // Read every scale and FP8 weight to find NaN / non-positive values (O(checkpoint size), mmap-backed).
  bool scan_values = true;
};

struct CheckReport {
  std::filesystem::path dir;
  std::vector<Finding> findings;
  std::string quant_algo;  // effective quant_algo ("" if none)
  std::string kv_cache_quant_algo;
  int quantized_modules = 0;    // modules with quantized tensors on disk
  int unquantized_linears = 0;  // Linear modules left in BF16/F16/F32
  int tensors = 0;

  int errors() const;
  int warnings() const;
  bool ok() const { return errors() == 0; }
  // Human-readable listing: one line per finding ("error [rule] subject: message"), then a summary line.
  std::string ToText() const;
  nlohmann::ordered_json ToJson() const;
};

// Validates the checkpoint in `dir` (config.json, hf_quant_config.json, safetensors shards).
CheckReport CheckCheckpoint(const std::filesystem::path& dir, const CheckOptions& options = {});

// Parses "vllm" / "trtllm" / "any"; throws qforge::Error naming the value otherwise.
TargetRuntime TargetRuntimeFromName(const std::string& name);

}  // namespace qforge::exporter
