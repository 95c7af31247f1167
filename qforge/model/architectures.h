// Declarative descriptions of the supported HF decoder architectures: one ArchSpec row per
// `architectures[0]` class name, consumed by the generic decoder (model.h) and the config parser.
//
// Adding an architecture = adding one row to kArchitectures in architectures.cc: its module names (as
// transformers v4 names them), its features (biases, q/k norm, MoE kind) and the config keys it reads.
#pragma once

#include <array>
#include <span>
#include <string_view>
#include <vector>

namespace qforge {

// What a Linear computes inside a decoder layer (or the head).
enum class LinearRole : uint8_t {
  kQ,                 // attention q_proj
  kK,                 // attention k_proj
  kV,                 // attention v_proj
  kO,                 // attention o_proj
  kGate,              // gated MLP: down(silu(gate(x)) * up(x))
  kUp,                // gated MLP up projection
  kDown,              // gated MLP down projection
  kRouter,            // MoE router (an nn.Linear in transformers v4), [num_experts, hidden]
  kSharedExpertGate,  // Qwen2-MoE sigmoid gate of the shared expert, [1, hidden]
  kLmHead,
};
std::string_view LinearRoleName(LinearRole role);

// A Linear's attribute name in its parent module and its role.
struct NamedLinear {
  std::string_view name;
  LinearRole role;
};

// Whether a group of Linears has a bias: `config_key` (if non-empty) is a boolean config.json field
// read with `default_value` when absent; an empty key means always `default_value`.
struct BiasRule {
  std::string_view config_key;
  bool default_value;
};

enum class MoeKind : uint8_t {
  kNone,     // dense gated MLP in every layer
  kMixtral,  // softmax top-k, always renormalized; no shared expert
  kQwen,     // softmax top-k renormalized iff norm_topk_prob; optional shared expert + sigmoid gate;
             // decoder_sparse_step / mlp_only_layers choose which layers are sparse
};

struct ArchSpec {
  std::string_view architecture;          // config.json "architectures"[0], e.g. "LlamaForCausalLM"
  // config.json "model_type" values transformers pairs with this class (its config class's model_type);
  // unused slots are "". A config whose model_type is not listed describes another model.
  std::array<std::string_view, 2> model_types;
  std::string_view attention_class;       // ModelOpt registry key of the attention module, "hf.LlamaAttention"
  std::string_view moe_block_class;       // registry key of the sparse-MoE block ("" for dense models)
  std::string_view mlp_name;              // attribute of the MLP / MoE block in a decoder layer: "mlp"
  std::array<NamedLinear, 3> dense_mlp;   // Linears of a dense MLP, in definition order
  std::array<NamedLinear, 3> expert_mlp;  // Linears of one routed expert, in definition order
  BiasRule qkv_bias;
  BiasRule o_bias;
  BiasRule mlp_bias;
  bool qk_norm;  // per-head RMSNorm q_norm / k_norm on q, k before RoPE (Qwen3)
  MoeKind moe;
  bool shared_expert;                     // Qwen2-MoE: mlp.shared_expert (dense MLP) + mlp.shared_expert_gate
  std::string_view router_name;           // attribute of the router inside the MoE block: "gate"
  std::string_view experts_name;          // attribute of the expert list: "experts"
  std::string_view moe_intermediate_key;  // config key of one expert's intermediate size
  bool norm_topk_default;                 // default of norm_topk_prob (kQwen) when config.json omits it
  // ModelOpt's export folds an NVFP4-AWQ o_proj / down_proj pre_quant_scale into v_proj / up_proj for this
  // class's attention and MLPs (its PQS_FUSE_MODULE_MAPPING: Llama, Qwen3, Qwen3-MoE).
  bool prequant_fold = false;
};

// Every supported architecture, in a stable order.
std::span<const ArchSpec> Architectures();
// The row for `architecture`, or nullptr.
const ArchSpec* FindArchitecture(std::string_view architecture);
// True iff `model_type` is one of `arch`'s model_types.
bool HasModelType(const ArchSpec& arch, std::string_view model_type);
// The rows whose model_types contain `model_type` (to suggest the right architecture in errors).
std::vector<const ArchSpec*> ArchitecturesWithModelType(std::string_view model_type);

}  // namespace qforge
