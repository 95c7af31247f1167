// HF `config.json` of a decoder checkpoint, parsed into what the forward pass needs (transformers v4 and
// v5 styles), and the rotary embedding tables derived from it (default, linear, llama3, yarn).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "qforge/model/architectures.h"
#include "qforge/tensor/dtype.h"

namespace qforge {

// Rotary embedding parameters: v5 `rope_parameters`, or v4 top-level `rope_theta` + `rope_scaling`.
struct RopeConfig {
  std::string type = "default";  // "default", "linear", "llama3", "yarn"
  double theta = 10000.0;
  double factor = 1.0;  // linear, llama3, yarn
  // llama3
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  // llama3 and yarn; 0 = absent
  int64_t original_max_position_embeddings = 0;
  // yarn (absent values as in transformers: attention_factor from mscale / factor)
  std::optional<double> attention_factor;
  std::optional<double> mscale;
  std::optional<double> mscale_all_dim;
  double beta_fast = 32.0;
  double beta_slow = 1.0;
  bool truncate = true;
};

struct ModelConfig {
  const ArchSpec* arch = nullptr;  // never null after parsing
  std::string model_type;
  std::string dtype;      // `dtype` (v5) or `torch_dtype` (v4) ("bfloat16"), checked against the weights on load
  std::string dtype_key;  // which of the two keys gave `dtype` ("" if neither)
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // dense MLP (and Qwen-MoE dense layers)
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;  // explicit `head_dim`, else hidden_size / num_heads
  int64_t vocab_size = 0;
  int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;
  RopeConfig rope;
  std::optional<int64_t> sliding_window;  // only when the model actually uses it
  // Biases resolved from the architecture's BiasRules.
  bool qkv_bias = false;
  bool o_bias = false;
  bool mlp_bias = false;
  // MoE (num_experts == 0 for dense models)
  int64_t num_experts = 0;
  int64_t top_k = 0;
  int64_t moe_intermediate_size = 0;
  int64_t shared_expert_intermediate_size = 0;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;

  // True if decoder layer `layer` has a sparse-MoE block (false: dense gated MLP).
  bool IsMoeLayer(int64_t layer) const;
};

// Upper bounds on config.json sizes (and on products of them), checked by ParseModelConfig before anything is
// allocated from them. Each is far above any released model (largest today: hidden 16384-25600, vocab ~1M,
// 512 experts, 10M positions) and keeps every product qforge forms (vocab x hidden, experts x intermediate x
// hidden x layers, ...) inside int64. A value above a limit is an error naming the file and key.
struct ModelSizeLimits {
  int64_t hidden_size = int64_t{1} << 20;
  int64_t intermediate_size = int64_t{1} << 22;  // also moe_ and shared_expert_intermediate_size
  int64_t num_layers = int64_t{1} << 14;         // num_hidden_layers (and decoder_sparse_step)
  int64_t num_heads = int64_t{1} << 14;          // num_attention_heads, num_key_value_heads
  int64_t head_dim = int64_t{1} << 14;
  int64_t attention_width = int64_t{1} << 22;    // num_attention_heads x head_dim
  int64_t vocab_size = int64_t{1} << 24;
  int64_t max_position_embeddings = int64_t{1} << 30;  // also sliding_window, original_max_position_embeddings
  int64_t num_experts = int64_t{1} << 16;
  int64_t tensor_elements = int64_t{1} << 40;  // elements of one weight matrix
  int64_t parameters = int64_t{1} << 46;       // all weight matrices together (~70 T parameters)
};
inline constexpr ModelSizeLimits kModelSizeLimits{};
// Largest config.json qforge reads (bytes): real ones are a few KB.
inline constexpr uint64_t kMaxConfigJsonBytes = uint64_t{16} << 20;

// One problem with the identity keys of a config.json: `architectures`, `model_type`, `dtype` / `torch_dtype`.
struct ConfigIdentityProblem {
  std::string key;      // the config key at fault ("model_type", "architectures", "dtype", "torch_dtype")
  std::string message;  // what is wrong, with the values; does not name the file
  bool unsupported_architecture = false;  // only: the class is not one qforge runs (check: a warning)
};

// Identity problems of config.json `j`, never throwing: `architectures` missing or not a non-empty list of
// strings, or a class qforge does not support; `model_type` missing, or not the one transformers pairs with the
// class (ArchSpec::model_types); `dtype` / `torch_dtype` not a floating torch dtype name (float32, float16,
// bfloat16, float64), or the two keys disagreeing.
std::vector<ConfigIdentityProblem> ConfigIdentityProblems(const nlohmann::json& j);

// The problem, if any, of config.json `j`'s `dtype` (or `torch_dtype`) against the checkpoint's tensors
// (name, dtype): the dtype must be that of at least one floating weight, i.e. an F32/F16/BF16/F64 tensor that
// is not an export scale (`*_scale`, `*_scale_2`) or a rotary `inv_freq` buffer. No claim (key absent) or no
// such tensor: nullopt.
std::optional<ConfigIdentityProblem> ConfigDtypeProblem(const nlohmann::json& j,
                                                        const std::vector<std::pair<std::string, DType>>& tensors);
// The same for an already parsed claim: `key` ("dtype" / "torch_dtype") holding `dtype`; nullopt if `key` is "".
std::optional<ConfigIdentityProblem> ConfigDtypeProblem(const std::string& key, const std::string& dtype,
                                                        const std::vector<std::pair<std::string, DType>>& tensors);

// Parses config.json text; `source` names the file in errors. Throws qforge::Error naming the file and
// key for an unknown architecture, a missing or mistyped key, inconsistent sizes, any ConfigIdentityProblem,
// or an rms_norm_eps that is not finite and positive.
ModelConfig ParseModelConfig(const nlohmann::json& j, const std::string& source);
// Reads `<dir>/config.json`.
ModelConfig LoadModelConfig(const std::filesystem::path& dir);

// Rotary frequencies as transformers computes them (fp32): inv_freq [head_dim/2] and the attention
// factor that multiplies cos and sin (1 except for yarn).
struct RopeFrequencies {
  std::vector<float> inv_freq;
  float attention_factor = 1.f;
};
RopeFrequencies ComputeRopeFrequencies(const RopeConfig& rope, int64_t head_dim, int64_t max_position_embeddings);

// cos/sin tables for positions 0..seq-1: cos, sin [seq, head_dim/2], already scaled by attention_factor
// (the layout Backend::Rope takes).
void RopeTables(const RopeFrequencies& f, int64_t seq, std::vector<float>* cos, std::vector<float>* sin);

}  // namespace qforge
