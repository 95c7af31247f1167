// HF `config.json` of a decoder checkpoint, parsed into what the forward pass needs (transformers v4 and
// v5 styles), and the rotary embedding tables derived from it (default, linear, llama3, yarn).
#pragma once

#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "qforge/model/architectures.h"

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
  std::string dtype;  // `dtype` (v5) or `torch_dtype` (v4), informational ("bfloat16")
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

// Parses config.json text; `source` names the file in errors. Throws qforge::Error naming the file and
// key for an unknown architecture, a missing or mistyped key, or inconsistent sizes.
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
