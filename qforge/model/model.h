// A HuggingFace decoder checkpoint loaded for the CPU forward pass: its modules under their hub names
// (the contract with quant/), per-layer weight residency, hooks at every quantization point, and a forward
// that can run one decoder layer at a time.
//
// Numerics: weights (bf16 / f16 / f32 on disk) are converted to f32 when a layer is loaded; everything is
// computed in fp32 on a Backend (runtime/backend.h), as transformers does with an fp32 model.
//
// Batches: `batch` sequences of equal length `seq`, positions 0..seq-1 in every sequence (no padding, no
// KV cache). Hidden states are the residual stream [batch*seq, hidden_size], token-major.
//
// Thread-safety: a Model is used from one thread at a time (ops parallelize internally).
#pragma once

#include <cstdint>
#include <filesystem>
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
#include "qforge/runtime/backend.h"
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

// Callbacks at the quantization points of the forward pass. quant/ and calib/ implement them; model/
// knows nothing about quantizers. All arrays are f32, row-major; `module` indexes Model::modules().
// With hooks == nullptr the forward makes no call and no copy.
class ForwardHooks {
 public:
  virtual ~ForwardHooks() = default;
  // False if the hooks only read activations (amax collection): the forward then passes its buffers
  // without copying, and hooks must not write to them.
  virtual bool ModifiesActivations() const { return true; }
  // The activation entering Linear `module`: x [rows, cols = in_features]. May be changed in place (fake
  // quant); each Linear gets its own copy when ModifiesActivations(), so q/k/v (and gate/up) never see
  // each other's changes. For a routed expert only the rows routed to it are passed; an expert that got no
  // token is not called.
  virtual void OnLinearInput(int module, float* x, int64_t rows, int64_t cols) {}
  // The output of Linear `module` (bias included): y [rows, cols = out_features], changeable in place.
  virtual void OnLinearOutput(int module, float* y, int64_t rows, int64_t cols) {}
  // q, k or v of attention `module` after RoPE (and q_norm / k_norm), heads-major
  // [batch, heads, seq, head_dim] (heads = num_kv_heads for k and v), changeable in place.
  virtual void OnAttentionBmm(int module, BmmInput which, float* x, int64_t batch, int64_t heads, int64_t seq,
                              int64_t head_dim) {}
  // Whether attention `module` should expose its softmax probabilities (p_bmm_quantizer). When true the
  // forward computes attention in two steps (probabilities materialized, [batch, heads, seq, seq] f32)
  // and calls OnAttentionProbs in between; otherwise the fused kernel runs.
  virtual bool WantsAttentionProbs(int module) const { return false; }
  // probs [batch, heads, seq, seq]: row i holds the softmax over keys j ≤ i (zeros for j > i); changeable
  // in place before they multiply v.
  virtual void OnAttentionProbs(int module, float* probs, int64_t batch, int64_t heads, int64_t seq) {}
};

// The residual stream of a batch: hidden [batch*seq, hidden_size] f32 (owned).
struct HiddenStates {
  Tensor hidden;
  int64_t batch = 0;
  int64_t seq = 0;
};

struct ModelLoadOptions {
  // Load (convert to f32) every layer at Load(); otherwise layers load on first use or LoadLayer().
  bool load_all_layers = true;
  // Compute backend; nullptr = DefaultCpuBackend(). Not owned; must outlive the model.
  Backend* backend = nullptr;
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
  Backend& backend() const { return *backend_; }
  int num_layers() const { return static_cast<int>(config_.num_layers); }

  // Every quantizable module in transformers' named_modules() order (stable): embed_tokens, then per layer
  // self_attn, its q/k/v/o_proj, the MLP's Linears (MoE: block, router, experts.0.*, ..., shared_expert.*,
  // shared_expert_gate), then lm_head.
  const std::vector<ModuleInfo>& modules() const { return modules_; }
  // Index into modules() of `name`, or -1.
  int FindModule(std::string_view name) const;
  // Indices of the Linear modules (in modules() order).
  const std::vector<int>& linear_modules() const { return linear_modules_; }
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
  // Replaces the weight of Linear `module` by `weight` (f32 [out_features, in_features]; shape checked).
  // Survives ReleaseLayer / LoadLayer until RestoreLinearWeight.
  void SetLinearWeight(int module, Tensor weight);
  void RestoreLinearWeight(int module);

  // --- forward ---
  // Token embeddings of ids [batch, seq] (row-major). Ids outside [0, vocab) throw naming the position.
  HiddenStates Embed(std::span<const int32_t> ids, int64_t batch, int64_t seq) const;
  // Runs decoder layer `layer` on `h` in place (loading the layer first if needed).
  void RunLayer(int layer, HiddenStates& h, ForwardHooks* hooks = nullptr);
  // Final norm + lm_head: logits [batch*seq, vocab] f32.
  Tensor Logits(const HiddenStates& h, ForwardHooks* hooks = nullptr);
  // Final norm + lm_head + cross entropy without materializing all logits: nll[r] = −log p(targets[r] | row r)
  // for the batch*seq rows of h; targets [batch*seq]. nll has batch*seq entries.
  void TokenNll(const HiddenStates& h, std::span<const int32_t> targets, std::span<double> nll,
                ForwardHooks* hooks = nullptr);
  // Embed + every layer + Logits.
  Tensor Forward(std::span<const int32_t> ids, int64_t batch, int64_t seq, ForwardHooks* hooks = nullptr);

  // Rows each Linear module has processed since the last reset (per-expert token counts for MoE).
  const std::vector<int64_t>& rows_seen() const { return rows_seen_; }
  void ResetRowsSeen();

  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model();

 private:
  Model() = default;
  struct Layer;
  struct Workspace;
  void BuildModules();
  void CheckModuleCountFitsCheckpoint() const;  // the config's module count against the checkpoint's tensors
  int64_t ValidateCheckpoint() const;  // returns the parameter count
  Tensor ReadF32(const std::string& tensor) const;
  std::string FileOfTensor(const std::string& tensor) const;  // its shard file, or the model dir if provided
  const float* Weight(int module) const;
  const float* Bias(int module) const;
  void Linear(int module, const float* x, int64_t rows, float* y, bool accumulate, ForwardHooks* hooks);
  void GatedMlp(const int ids[3], const float* x, int64_t rows, float* out, bool accumulate, ForwardHooks* hooks);
  void Attention(int layer, HiddenStates& h, ForwardHooks* hooks);
  void MoeBlock(int layer, const float* x, int64_t rows, float* h, ForwardHooks* hooks);
  void EnsureRope(int64_t seq);
  const float* FinalNormed(const HiddenStates& h);
  void EnsureHead();

  std::filesystem::path dir_;
  ModelConfig config_;
  ModelLoadOptions options_;
  mutable std::map<std::string, Shape> provided_shapes_;  // logical shapes of provided tensors
  CheckpointTensors ckpt_;
  Backend* backend_ = nullptr;
  std::vector<ModuleInfo> modules_;
  std::vector<int> linear_modules_;
  std::vector<int> attention_modules_;
  std::vector<std::unique_ptr<Layer>> layers_;
  int embed_module_ = -1;
  int lm_head_module_ = -1;
  int64_t num_parameters_ = 0;
  // Per module (indexed like modules_): loaded f32 weight / bias, and overrides.
  std::vector<Tensor> weights_;
  std::vector<Tensor> biases_;
  std::vector<Tensor> overrides_;
  std::vector<int64_t> rows_seen_;
  Tensor embed_raw_;   // the embedding as stored (mmap view), rows converted on demand
  Tensor final_norm_;  // [hidden] f32
  RopeFrequencies rope_;
  std::vector<float> rope_cos_, rope_sin_;  // [rope_len_, head_dim/2]
  int64_t rope_len_ = 0;
  std::unique_ptr<Workspace> ws_;
};

// Throws qforge::Error, naming both files and both sizes, when `tokenizer` (read from `tokenizer_dir`) has
// token ids the embedding has no row for (tokenizer.vocab_size() > config.json vocab_size, the rows of
// model.embed_tokens.weight). A smaller tokenizer is fine: embeddings are often padded.
void CheckTokenizerFitsModel(const Tokenizer& tokenizer, const std::filesystem::path& tokenizer_dir,
                             const Model& model);

}  // namespace qforge
