// A HuggingFace decoder checkpoint: its config, its modules under their hub names (the contract with quant/
// and export/), checkpoint validation, and host-side weight access (per-layer f32 residency, weight
// overrides). This is the naming/structure half of a model; it needs no compute backend. The forward pass
// lives in forward/ (ForwardModel runs a Model on a runtime/ Backend).
//
// Weights (bf16 / f16 / f32 on disk) are converted to f32 host tensors when a layer is loaded.
//
// Thread-safety: a Model is used from one thread at a time.
#pragma once

#include <cstdint>
#include <filesystem>
#include <array>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "qforge/io/safetensors.h"
#include "qforge/model/architectures.h"
#include "qforge/model/model_config.h"
#include "qforge/model/tokenizer.h"
#include "qforge/tensor/tensor.h"

namespace qforge {

// Modules that carry quantizers in ModelOpt (spec §9), plus sparse-MoE blocks (no quantizers of their own,
// listed because MoE calibration works per block). RMSNorm modules are not quantized modules in ModelOpt
// and are not listed.
enum class ModuleKind : uint8_t { kEmbedding, kAttention, kLinear, kMoeBlock };

struct ModuleKindTraits {
  ModuleKind kind;
  std::string_view name;                         // "linear"
  std::span<const std::string_view> quantizers;  // quantizer attribute names, in ModelOpt's creation order
};
const ModuleKindTraits& Traits(ModuleKind kind);

// Which input of the attention products a KV-cache / bmm quantizer sees (q_bmm_quantizer, ...).
enum class BmmInput : uint8_t { kQ, kK, kV };

struct ModuleInfo {
  std::string name;       // hub name as transformers v4 names it: "model.layers.0.mlp.experts.3.gate_proj"
  std::string class_key;  // ModelOpt registry key of the original class: "nn.Linear", "hf.LlamaAttention",
                          // "nn.Embedding", "hf.Qwen2MoeSparseMoeBlock"
  ModuleKind kind = ModuleKind::kLinear;
  int layer = -1;  // decoder layer index; -1 for embed_tokens and lm_head
  // Linear modules only:
  LinearRole role = LinearRole::kQ;
  int expert = -1;                // routed expert index, -1 otherwise
  bool in_shared_expert = false;  // a Linear of Qwen2-MoE's mlp.shared_expert
  int64_t in_features = 0;
  int64_t out_features = 0;
  // Checkpoint tensors (Linear and Embedding): weight [out_features, in_features] ([vocab, hidden] for
  // the embedding; lm_head of a tied model names the embedding's tensor) and bias [out_features] or "".
  std::string weight_tensor;
  std::string bias_tensor;
};

struct ModelLoadOptions {
  // Load (convert to f32) every layer at Load(); otherwise layers load on first use or LoadLayer().
  bool load_all_layers = true;
  // Tensors supplied instead of the checkpoint's: `provides(name)` says which, `provide(name)` returns it as
  // f32 in its logical shape (e.g. a quantized checkpoint's weights, dequantized by export/). The stored
  // tensor's dtype and shape are then not validated (the provided shape is).
  std::function<bool(const std::string& name)> provides;
  std::function<Tensor(const std::string& name)> provide;
  // Checkpoint tensors the loader ignores instead of rejecting (scales of a quantized checkpoint).
  std::function<bool(const std::string& name)> ignore_tensor;
};

class Model {
 public:
  // Reads `<dir>/config.json` and the checkpoint in `dir` (model.safetensors or sharded + index) and checks
  // every expected tensor's presence, dtype (F32 / F16 / BF16) and shape, and that no unknown tensor is
  // present, before converting anything. Errors name the file, the tensor and what was expected.
  static std::unique_ptr<Model> Load(const std::filesystem::path& dir, const ModelLoadOptions& options = {});

  const ModelConfig& config() const { return config_; }
  const ArchSpec& arch() const { return *config_.arch; }
  const std::filesystem::path& dir() const { return dir_; }
  int num_layers() const { return static_cast<int>(config_.num_layers); }

  // Every quantizable module in transformers' named_modules() order (stable): embed_tokens, then per layer
  // self_attn, its q/k/v/o_proj, the MLP's Linears (MoE: block, router, experts.0.*, ..., shared_expert.*,
  // shared_expert_gate), then lm_head.
  const std::vector<ModuleInfo>& modules() const { return modules_; }
  // Index into modules() of `name`, or -1.
  int FindModule(std::string_view name) const;
  // Indices of the Linear modules (in modules() order).
  const std::vector<int>& linear_modules() const { return linear_modules_; }
  // The Linear modules of decoder layer `layer`, or (-1) those outside the decoder layers (lm_head), in
  // modules() order.
  const std::vector<int>& linear_modules(int layer) const {
    return layer < 0 ? outside_linears_ : layer_modules(layer).linears;
  }
  // Index of decoder layer `layer`'s attention module.
  int attention_module(int layer) const;

  // Parameter count (tied embeddings counted once) and the dtypes of the checkpoint's tensors.
  int64_t num_parameters() const { return num_parameters_; }
  std::vector<std::pair<DType, int64_t>> dtype_histogram() const;  // dtype -> number of tensors

  // --- weight residency ---
  void LoadLayer(int layer);
  // Frees the layer's f32 weights and drops its pages of the mmap. Weight overrides are kept.
  void ReleaseLayer(int layer);
  bool IsLayerLoaded(int layer) const;

  // --- weight replacement (fake-quantized weights) ---
  // The weight Linear `module` computes with: the override if set, else the checkpoint's, as f32
  // [out_features, in_features] (read from the checkpoint if the layer is not loaded).
  Tensor LinearWeight(int module) const;
  // True if LinearWeight returns a held tensor without reading the checkpoint (an override or a loaded layer).
  bool HasHostWeight(int module) const;
  // LinearWeight's values converted into `out` (out_features * in_features floats), for callers that stream
  // over many weights with one buffer (export) instead of a fresh allocation per weight.
  void LinearWeightInto(int module, std::span<float> out) const;
  // The weight as stored, for uploads that convert on the device: the override or a provided tensor (f32),
  // the resident f32 copy, else the checkpoint tensor as on disk (an mmap view, F32 / F16 / BF16). Routers
  // come converted and checked like LinearWeight. ReleaseStoredPages drops the mmap pages afterwards.
  Tensor StoredLinearWeight(int module) const;
  // The dtype of Linear `module`'s weight in the checkpoint (F32 / F16 / BF16; F32 for a provided tensor):
  // what an algorithm that changes weights rounds them to, as ModelOpt writes them back in the model's dtype.
  DType CheckpointWeightDType(int module) const;
  void ReleaseStoredPages(int module) const;
  // Replaces the weight of Linear `module` by `weight` (f32 [out_features, in_features]; shape checked).
  // Survives ReleaseLayer / LoadLayer until RestoreLinearWeight.
  void SetLinearWeight(int module, Tensor weight);
  void RestoreLinearWeight(int module);
  // True while SetLinearWeight's replacement of `module` is in place.
  bool HasWeightOverride(int module) const;

  // --- what a forward pass needs (forward/) ---
  // The modules of decoder layer `layer`, by role.
  struct LayerModules {
    int attention = -1;
    int q = -1, k = -1, v = -1, o = -1;
    bool moe = false;
    int mlp[3] = {-1, -1, -1};  // dense MLP: gate, up, down (role order)
    int moe_block = -1;
    int router = -1;
    std::vector<std::array<int, 3>> experts;  // per expert: gate, up, down
    int shared[3] = {-1, -1, -1};              // Qwen2-MoE shared expert: gate, up, down
    int shared_gate = -1;
    std::vector<int> linears;  // every Linear module of the layer
    std::string input_norm_name, post_norm_name, q_norm_name, k_norm_name;  // "" when absent
  };
  const LayerModules& layer_modules(int layer) const;
  int embed_module() const { return embed_module_; }
  int lm_head_module() const { return lm_head_module_; }
  // The embedding as stored ([vocab, hidden], F32 / F16 / BF16; an mmap view, or f32 when provided).
  const Tensor& embed_table() const { return embed_raw_; }
  const RopeFrequencies& rope() const { return rope_; }
  // A checkpoint tensor (or a provided one) as f32 in its logical shape; norms and biases.
  Tensor ReadF32(const std::string& tensor) const;
  // The bias of Linear `module` as f32 [out_features], or an undefined Tensor when it has none.
  Tensor LinearBias(int module) const;
  // Counts SetLinearWeight / RestoreLinearWeight calls on `module`, so a device copy knows it is stale.
  int64_t weight_version(int module) const { return weight_versions_[static_cast<size_t>(module)]; }

  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model();

 private:
  Model() = default;
  struct Layer;
  void BuildModules();
  void CheckModuleCountFitsCheckpoint() const;  // the config's module count against the checkpoint's tensors
  int64_t ValidateCheckpoint() const;  // returns the parameter count
  std::string FileOfTensor(const std::string& tensor) const;  // its shard file, or the model dir if provided
  // modules()[module], after checking that it is a Linear (QF_CHECK naming the index).
  const ModuleInfo& LinearInfo(int module) const;
  // The weight must be read through LinearWeight: it is held (override or loaded layer), provided, or a
  // routing weight that is checked for finiteness on every read.
  bool ReadsThroughLinearWeight(int module) const;

  std::filesystem::path dir_;
  ModelConfig config_;
  ModelLoadOptions options_;
  mutable std::map<std::string, Shape> provided_shapes_;  // logical shapes of provided tensors
  CheckpointTensors ckpt_;
  std::vector<ModuleInfo> modules_;
  std::vector<int> linear_modules_;
  std::vector<int> outside_linears_;  // Linears outside the decoder layers
  std::vector<int> attention_modules_;
  std::vector<std::unique_ptr<Layer>> layers_;
  int embed_module_ = -1;
  int lm_head_module_ = -1;
  int64_t num_parameters_ = 0;
  // Per module (indexed like modules_): loaded f32 weight / bias, and overrides.
  std::vector<Tensor> weights_;
  std::vector<Tensor> biases_;
  std::vector<Tensor> overrides_;
  std::vector<int64_t> weight_versions_;
  Tensor embed_raw_;   // the embedding as stored (mmap view), rows converted on demand
  RopeFrequencies rope_;
};

// Throws qforge::Error, naming both files and both sizes, when `tokenizer` (read from `tokenizer_dir`) has
// token ids the embedding has no row for (tokenizer.vocab_size() > config.json vocab_size, the rows of
// model.embed_tokens.weight). A smaller tokenizer is fine: embeddings are often padded.
void CheckTokenizerFitsModel(const Tokenizer& tokenizer, const std::filesystem::path& tokenizer_dir,
                             const Model& model);

}  // namespace qforge
