// The architecture table: one declarative row per supported HF class (see architectures.h).
#include "qforge/model/architectures.h"

namespace qforge {
namespace {

constexpr std::array<NamedLinear, 3> kGatedMlp = {
    {{"gate_proj", LinearRole::kGate}, {"up_proj", LinearRole::kUp}, {"down_proj", LinearRole::kDown}}};
// Mixtral experts define w1 (gate), w2 (down), w3 (up) in that order.
constexpr std::array<NamedLinear, 3> kMixtralExpert = {
    {{"w1", LinearRole::kGate}, {"w2", LinearRole::kDown}, {"w3", LinearRole::kUp}}};

constexpr BiasRule kNoBias{"", false};
constexpr BiasRule kAttentionBias{"attention_bias", false};

constexpr ArchSpec kArchitectures[] = {
    {.architecture = "LlamaForCausalLM",
     .model_types = {"llama", ""},
     .attention_class = "hf.LlamaAttention",
     .moe_block_class = "",
     .mlp_name = "mlp",
     .dense_mlp = kGatedMlp,
     .expert_mlp = kGatedMlp,
     .qkv_bias = kAttentionBias,
     .o_bias = kAttentionBias,
     .mlp_bias = {"mlp_bias", false},
     .qk_norm = false,
     .moe = MoeKind::kNone,
     .shared_expert = false,
     .router_name = "",
     .experts_name = "",
     .moe_intermediate_key = "",
     .norm_topk_default = false,
     .prequant_fold = true},
    {.architecture = "MistralForCausalLM",
     .model_types = {"mistral", ""},
     .attention_class = "hf.MistralAttention",
     .moe_block_class = "",
     .mlp_name = "mlp",
     .dense_mlp = kGatedMlp,
     .expert_mlp = kGatedMlp,
     .qkv_bias = kNoBias,
     .o_bias = kNoBias,
     .mlp_bias = kNoBias,
     .qk_norm = false,
     .moe = MoeKind::kNone,
     .shared_expert = false,
     .router_name = "",
     .experts_name = "",
     .moe_intermediate_key = "",
     .norm_topk_default = false},
    {.architecture = "Qwen2ForCausalLM",
     .model_types = {"qwen2", ""},
     .attention_class = "hf.Qwen2Attention",
     .moe_block_class = "",
     .mlp_name = "mlp",
     .dense_mlp = kGatedMlp,
     .expert_mlp = kGatedMlp,
     .qkv_bias = {"", true},
     .o_bias = kNoBias,
     .mlp_bias = kNoBias,
     .qk_norm = false,
     .moe = MoeKind::kNone,
     .shared_expert = false,
     .router_name = "",
     .experts_name = "",
     .moe_intermediate_key = "",
     .norm_topk_default = false},
    {.architecture = "Qwen3ForCausalLM",
     .model_types = {"qwen3", ""},
     .attention_class = "hf.Qwen3Attention",
     .moe_block_class = "",
     .mlp_name = "mlp",
     .dense_mlp = kGatedMlp,
     .expert_mlp = kGatedMlp,
     .qkv_bias = kAttentionBias,
     .o_bias = kAttentionBias,
     .mlp_bias = kNoBias,
     .qk_norm = true,
     .moe = MoeKind::kNone,
     .shared_expert = false,
     .router_name = "",
     .experts_name = "",
     .moe_intermediate_key = "",
     .norm_topk_default = false,
     .prequant_fold = true},
    {.architecture = "MixtralForCausalLM",
     .model_types = {"mixtral", ""},
     .attention_class = "hf.MixtralAttention",
     .moe_block_class = "hf.MixtralSparseMoeBlock",
     .mlp_name = "block_sparse_moe",
     .dense_mlp = kMixtralExpert,
     .expert_mlp = kMixtralExpert,
     .qkv_bias = kNoBias,
     .o_bias = kNoBias,
     .mlp_bias = kNoBias,
     .qk_norm = false,
     .moe = MoeKind::kMixtral,
     .shared_expert = false,
     .router_name = "gate",
     .experts_name = "experts",
     .moe_intermediate_key = "intermediate_size",
     .norm_topk_default = true},
    {.architecture = "Qwen2MoeForCausalLM",
     .model_types = {"qwen2_moe", ""},
     .attention_class = "hf.Qwen2MoeAttention",
     .moe_block_class = "hf.Qwen2MoeSparseMoeBlock",
     .mlp_name = "mlp",
     .dense_mlp = kGatedMlp,
     .expert_mlp = kGatedMlp,
     .qkv_bias = {"qkv_bias", true},
     .o_bias = kNoBias,
     .mlp_bias = kNoBias,
     .qk_norm = false,
     .moe = MoeKind::kQwen,
     .shared_expert = true,
     .router_name = "gate",
     .experts_name = "experts",
     .moe_intermediate_key = "moe_intermediate_size",
     .norm_topk_default = false},
    {.architecture = "Qwen3MoeForCausalLM",
     .model_types = {"qwen3_moe", ""},
     .attention_class = "hf.Qwen3MoeAttention",
     .moe_block_class = "hf.Qwen3MoeSparseMoeBlock",
     .mlp_name = "mlp",
     .dense_mlp = kGatedMlp,
     .expert_mlp = kGatedMlp,
     .qkv_bias = kAttentionBias,
     .o_bias = kAttentionBias,
     .mlp_bias = kNoBias,
     .qk_norm = true,
     .moe = MoeKind::kQwen,
     .shared_expert = false,
     .router_name = "gate",
     .experts_name = "experts",
     .moe_intermediate_key = "moe_intermediate_size",
     .norm_topk_default = false,
     .prequant_fold = true},
};

}  // namespace

std::string_view LinearRoleName(LinearRole role) {
  static constexpr std::string_view kNames[] = {
      "q", "k", "v", "o", "gate", "up", "down", "router", "shared_expert_gate", "lm_head"};
  return kNames[static_cast<size_t>(role)];
}

std::span<const ArchSpec> Architectures() { return kArchitectures; }

const ArchSpec* FindArchitecture(std::string_view architecture) {
  for (const auto& a : kArchitectures) {
    if (a.architecture == architecture) return &a;
  }
  return nullptr;
}

bool HasModelType(const ArchSpec& arch, std::string_view model_type) {
  for (std::string_view t : arch.model_types) {
    if (!t.empty() && t == model_type) return true;
  }
  return false;
}

std::vector<const ArchSpec*> ArchitecturesWithModelType(std::string_view model_type) {
  std::vector<const ArchSpec*> out;
  for (const auto& a : kArchitectures) {
    if (HasModelType(a, model_type)) out.push_back(&a);
  }
  return out;
}

}  // namespace qforge
