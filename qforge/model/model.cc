// The generic decoder's structure: module list from the architecture table, checkpoint validation and
// host weight residency (the forward pass is forward/forward_model.cc).
#include "qforge/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "qforge/base/error.h"
#include "qforge/base/log.h"
#include "qforge/base/strings.h"

namespace qforge {
namespace {

constexpr std::string_view kLinearQuantizers[] = {"input_quantizer", "output_quantizer", "weight_quantizer"};
constexpr std::string_view kEmbeddingQuantizers[] = {"weight_quantizer", "input_quantizer", "output_quantizer"};
constexpr std::string_view kAttentionQuantizers[] = {"q_bmm_quantizer", "k_bmm_quantizer", "v_bmm_quantizer",
                                                     "p_bmm_quantizer"};

const ModuleKindTraits kModuleKinds[] = {
    {ModuleKind::kEmbedding, "embedding", kEmbeddingQuantizers},
    {ModuleKind::kAttention, "attention", kAttentionQuantizers},
    {ModuleKind::kLinear, "linear", kLinearQuantizers},
    {ModuleKind::kMoeBlock, "moe_block", {}},
};

bool Present(const Tensor& t) { return t.raw() != nullptr; }

// A router or Qwen-MoE's shared_expert_gate: its weight is checked for finiteness whenever it is read.
bool IsRoutingWeight(const ModuleInfo& mi) {
  return mi.role == LinearRole::kRouter || mi.role == LinearRole::kSharedExpertGate;
}

// Routers (and Qwen-MoE's shared_expert_gate) are never quantized, so no weight amax looks at their values: a
// NaN or Inf there makes every routing weight NaN, and the first error would name a later expert quantizer.
// `w` is the f32 weight of `mi`, read from `file`.
void CheckRouterFinite(const ModuleInfo& mi, const Tensor& w, const std::string& file) {
  if (!IsRoutingWeight(mi)) return;
  int64_t bad = 0, first = -1;
  const float* x = w.data<float>();
  for (int64_t i = 0; i < w.numel(); ++i) {
    if (std::isfinite(x[i])) continue;
    if (bad++ == 0) first = i;
  }
  QF_CHECK(bad == 0, "MoE {} weight '{}' in {} has {} non-finite value(s) (first at [{}, {}]); routing would be NaN "
           "for every token", LinearRoleName(mi.role), mi.weight_tensor, file, bad, first / mi.in_features,
           first % mi.in_features);
}

}  // namespace

const ModuleKindTraits& Traits(ModuleKind kind) { return kModuleKinds[static_cast<size_t>(kind)]; }

struct Model::Layer : Model::LayerModules {
  bool loaded = false;  // f32 weights of the layer's Linears resident in weights_ / biases_
};

Model::~Model() = default;

std::unique_ptr<Model> Model::Load(const std::filesystem::path& dir, const ModelLoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  m->config_ = LoadModelConfig(dir);
  m->ckpt_ = CheckpointTensors::Open(dir);
  m->options_ = options;
  m->BuildModules();
  m->num_parameters_ = m->ValidateCheckpoint();
  {
    // The config's dtype claim against the weights (a mismatch means config and weights are from different models).
    std::vector<std::pair<std::string, DType>> tensors;
    for (const auto& n : m->ckpt_.names()) tensors.emplace_back(n, m->ckpt_.Info(n).dtype);
    if (auto p = ConfigDtypeProblem(m->config_.dtype_key, m->config_.dtype, tensors)) {
      QF_FAIL("{}: \"{}\" {}", (dir / "config.json").string(), p->key, p->message);
    }
  }
  m->embed_raw_ = options.provides && options.provides("model.embed_tokens.weight")
                      ? m->ReadF32("model.embed_tokens.weight")
                      : m->ckpt_.Get("model.embed_tokens.weight");
  m->rope_ = ComputeRopeFrequencies(m->config_.rope, m->config_.head_dim, m->config_.max_position_embeddings);
  if (options.load_all_layers) {
    for (int i = 0; i < m->num_layers(); ++i) m->LoadLayer(i);
    m->weights_[m->lm_head_module_] = m->ReadF32(m->modules_[m->lm_head_module_].weight_tensor);
  }
  return m;
}

void Model::BuildModules() {
  const ModelConfig& c = config_;
  const ArchSpec& a = *c.arch;
  CheckModuleCountFitsCheckpoint();
  auto add = [&](ModuleInfo mi) {
    modules_.push_back(std::move(mi));
    return static_cast<int>(modules_.size()) - 1;
  };
  auto add_linear = [&](std::string name, LinearRole role, int layer, int64_t in, int64_t out, bool bias,
                        int expert = -1, bool shared = false) {
    ModuleInfo mi;
    mi.weight_tensor = name + ".weight";
    if (bias) mi.bias_tensor = name + ".bias";
    mi.name = std::move(name);
    mi.class_key = "nn.Linear";
    mi.kind = ModuleKind::kLinear;
    mi.layer = layer;
    mi.role = role;
    mi.expert = expert;
    mi.in_shared_expert = shared;
    mi.in_features = in;
    mi.out_features = out;
    const int id = add(std::move(mi));
    linear_modules_.push_back(id);
    if (layer >= 0) {
      layers_[layer]->linears.push_back(id);
    } else {
      outside_linears_.push_back(id);
    }
    return id;
  };
  // The three Linears of a gated MLP in definition order; returns their ids in role order gate, up, down.
  auto add_mlp = [&](const std::array<NamedLinear, 3>& names, const std::string& prefix, int layer, int64_t inter,
                     bool bias, int expert, bool shared, int out[3]) {
    for (const auto& nl : names) {
      const bool down = nl.role == LinearRole::kDown;
      const int id = add_linear(prefix + std::string(nl.name), nl.role, layer, down ? inter : c.hidden_size,
                                down ? c.hidden_size : inter, bias, expert, shared);
      out[nl.role == LinearRole::kGate ? 0 : nl.role == LinearRole::kUp ? 1 : 2] = id;
    }
  };

  {
    ModuleInfo e;
    e.name = "model.embed_tokens";
    e.class_key = "nn.Embedding";
    e.kind = ModuleKind::kEmbedding;
    e.in_features = c.vocab_size;
    e.out_features = c.hidden_size;
    e.weight_tensor = "model.embed_tokens.weight";
    embed_module_ = add(std::move(e));
  }
  const int64_t qdim = c.num_heads * c.head_dim;
  const int64_t kvdim = c.num_kv_heads * c.head_dim;
  for (int l = 0; l < num_layers(); ++l) {
    layers_.push_back(std::make_unique<Layer>());
    Layer& L = *layers_.back();
    const std::string p = fmt::format("model.layers.{}.", l);
    ModuleInfo attn;
    attn.name = p + "self_attn";
    attn.class_key = std::string(a.attention_class);
    attn.kind = ModuleKind::kAttention;
    attn.layer = l;
    L.attention = add(std::move(attn));
    attention_modules_.push_back(L.attention);
    L.q = add_linear(p + "self_attn.q_proj", LinearRole::kQ, l, c.hidden_size, qdim, c.qkv_bias);
    L.k = add_linear(p + "self_attn.k_proj", LinearRole::kK, l, c.hidden_size, kvdim, c.qkv_bias);
    L.v = add_linear(p + "self_attn.v_proj", LinearRole::kV, l, c.hidden_size, kvdim, c.qkv_bias);
    L.o = add_linear(p + "self_attn.o_proj", LinearRole::kO, l, qdim, c.hidden_size, c.o_bias);
    const std::string mlp = p + std::string(a.mlp_name);
    L.moe = c.IsMoeLayer(l);
    if (L.moe) {
      ModuleInfo blk;
      blk.name = mlp;
      blk.class_key = std::string(a.moe_block_class);
      blk.kind = ModuleKind::kMoeBlock;
      blk.layer = l;
      L.moe_block = add(std::move(blk));
      L.router = add_linear(mlp + "." + std::string(a.router_name), LinearRole::kRouter, l, c.hidden_size,
                            c.num_experts, false);
      L.experts.resize(c.num_experts);
      for (int e = 0; e < c.num_experts; ++e) {
        add_mlp(a.expert_mlp, fmt::format("{}.{}.{}.", mlp, a.experts_name, e), l, c.moe_intermediate_size, false, e,
                false, L.experts[e].data());
      }
      if (a.shared_expert) {
        add_mlp(a.dense_mlp, mlp + ".shared_expert.", l, c.shared_expert_intermediate_size, false, -1, true, L.shared);
        L.shared_gate =
            add_linear(mlp + ".shared_expert_gate", LinearRole::kSharedExpertGate, l, c.hidden_size, 1, false);
      }
    } else {
      add_mlp(a.dense_mlp, mlp + ".", l, c.intermediate_size, c.mlp_bias, -1, false, L.mlp);
    }
    L.input_norm_name = p + "input_layernorm.weight";
    L.post_norm_name = p + "post_attention_layernorm.weight";
    if (a.qk_norm) {
      L.q_norm_name = p + "self_attn.q_norm.weight";
      L.k_norm_name = p + "self_attn.k_norm.weight";
    }
  }
  lm_head_module_ = add_linear("lm_head", LinearRole::kLmHead, -1, c.hidden_size, c.vocab_size, false);
  if (c.tie_word_embeddings) modules_[lm_head_module_].weight_tensor = "model.embed_tokens.weight";
  weights_.resize(modules_.size());
  biases_.resize(modules_.size());
  overrides_.resize(modules_.size());
  weight_versions_.assign(modules_.size(), 0);
}

void Model::CheckModuleCountFitsCheckpoint() const {
  // Every Linear, norm and the embedding the config describes is one tensor in the checkpoint, so the
  // checkpoint's tensor count bounds what the config may ask for: a config.json claiming 10^9 experts fails
  // here, before 10^9 module records are built. The sizes are within kModelSizeLimits, so this cannot overflow.
  const ModelConfig& c = config_;
  const ArchSpec& a = *c.arch;
  int64_t want = 2 + (c.tie_word_embeddings ? 0 : 1);  // embed_tokens, norm, lm_head
  for (int64_t l = 0; l < c.num_layers; ++l) {
    want += 2 + 4;  // two norms, q/k/v/o
    want += c.IsMoeLayer(l) ? 1 + 3 * c.num_experts + (a.shared_expert ? 4 : 0) : 3;
  }
  const int64_t have = static_cast<int64_t>(ckpt_.names().size());
  QF_CHECK(want <= have,
           "checkpoint '{}' holds {} tensors but {} (num_hidden_layers {}, num_experts {}) describes a model with at "
           "least {}; the config and the weights do not match",
           ckpt_.dir().string(), have, (dir_ / "config.json").string(), c.num_layers, c.num_experts, want);
}

int64_t Model::ValidateCheckpoint() const {
  const ModelConfig& c = config_;
  // name -> (expected shape, what it is)
  std::map<std::string, std::pair<Shape, std::string>> expected;
  expected["model.embed_tokens.weight"] = {{c.vocab_size, c.hidden_size}, "[vocab_size, hidden_size]"};
  expected["model.norm.weight"] = {{c.hidden_size}, "[hidden_size]"};
  for (const auto& mi : modules_) {
    if (mi.kind != ModuleKind::kLinear) continue;
    if (!expected.count(mi.weight_tensor)) {
      expected[mi.weight_tensor] = {{mi.out_features, mi.in_features},
                                    fmt::format("[out_features, in_features] of Linear {}", mi.name)};
    }
    if (!mi.bias_tensor.empty()) {
      expected[mi.bias_tensor] = {{mi.out_features}, fmt::format("[out_features] of Linear {}", mi.name)};
    }
  }
  for (const auto& L : layers_) {
    expected[L->input_norm_name] = {{c.hidden_size}, "[hidden_size]"};
    expected[L->post_norm_name] = {{c.hidden_size}, "[hidden_size]"};
    if (!L->q_norm_name.empty()) {
      expected[L->q_norm_name] = {{c.head_dim}, "[head_dim]"};
      expected[L->k_norm_name] = {{c.head_dim}, "[head_dim]"};
    }
  }
  const std::string where = ckpt_.dir().string();
  for (const auto& [name, exp] : expected) {
    if (options_.provides && options_.provides(name)) {  // checked when provided (ReadF32)
      provided_shapes_[name] = exp.first;
      continue;
    }
    QF_CHECK(ckpt_.Contains(name),
             "checkpoint '{}' ({}): missing tensor '{}' (expected shape {} {}; check config.json's sizes and "
             "architecture)",
             where, c.arch->architecture, name, ShapeToString(exp.first), exp.second);
    const TensorInfo& info = ckpt_.Info(name);
    const std::string file = ckpt_.FileOf(name);
    QF_CHECK(info.dtype == DType::kF32 || info.dtype == DType::kF16 || info.dtype == DType::kBF16,
             "checkpoint '{}': tensor '{}' in {} has dtype {}, expected F32, F16 or BF16", where, name, file,
             DTypeName(info.dtype));
    QF_CHECK(info.shape == exp.first, "checkpoint '{}': tensor '{}' in {} has shape {}, expected {} {} (from {})",
             where, name, file, ShapeToString(info.shape), ShapeToString(exp.first), exp.second,
             (dir_ / "config.json").string());
  }
  std::vector<std::string> unknown;
  for (const auto& n : ckpt_.names()) {
    if (expected.count(n)) continue;
    if (EndsWith(n, "rotary_emb.inv_freq")) continue;              // a buffer old checkpoints saved
    if (n == "lm_head.weight" && c.tie_word_embeddings) continue;  // tied: transformers ignores it too
    if (options_.ignore_tensor && options_.ignore_tensor(n)) continue;
    unknown.push_back(n);
  }
  QF_CHECK(unknown.empty(),
           "checkpoint '{}': {} tensor(s) that {} with this config.json does not have, e.g. '{}' (in {}); the "
           "config and the weights do not match",
           where, unknown.size(), c.arch->architecture, unknown.front(), ckpt_.FileOf(unknown.front()));
  int64_t params = 0;
  for (const auto& [name, exp] : expected) params += NumElements(exp.first);
  return params;
}

std::vector<std::pair<DType, int64_t>> Model::dtype_histogram() const {
  std::map<DType, int64_t> h;
  for (const auto& n : ckpt_.names()) ++h[ckpt_.Info(n).dtype];
  return {h.begin(), h.end()};
}

int Model::FindModule(std::string_view name) const {
  for (size_t i = 0; i < modules_.size(); ++i) {
    if (modules_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int Model::attention_module(int layer) const {
  QF_ASSERT(layer >= 0 && layer < num_layers(), "layer {} out of range", layer);
  return attention_modules_[layer];
}

std::string Model::FileOfTensor(const std::string& tensor) const {
  return ckpt_.Contains(tensor) ? ckpt_.FileOf(tensor) : dir_.string();
}

void CheckTokenizerFitsModel(const Tokenizer& tokenizer, const std::filesystem::path& tokenizer_dir,
                             const Model& model) {
  const int64_t rows = model.config().vocab_size;  // ValidateCheckpoint: embed_tokens is [vocab_size, hidden]
  const int64_t ids = static_cast<int64_t>(tokenizer.vocab_size());
  QF_CHECK(ids <= rows, "vocabulary mismatch: the tokenizer in {} has {} token ids but the embedding "
           "'model.embed_tokens.weight' of {} has {} rows (config.json vocab_size {}); ids {} and above would have "
           "no embedding: the tokenizer and the model do not belong together",
           (tokenizer_dir / "tokenizer.json").string(), ids, model.dir().string(), rows, rows, rows);
}

Tensor Model::ReadF32(const std::string& tensor) const {
  if (options_.provides && options_.provides(tensor)) {
    Tensor t = options_.provide(tensor);
    QF_CHECK(t.dtype() == DType::kF32, "tensor '{}' supplied to the loader must be F32", tensor);
    auto it = provided_shapes_.find(tensor);
    QF_CHECK(it == provided_shapes_.end() || it->second == t.shape(),
             "checkpoint '{}': tensor '{}' decodes to shape {}, expected {}", dir_.string(), tensor,
             ShapeToString(t.shape()), ShapeToString(it->second));
    return t;
  }
  return ckpt_.Get(tensor).ToF32();
}

void Model::LoadLayer(int layer) {
  QF_CHECK(layer >= 0 && layer < num_layers(), "layer {} out of range [0, {})", layer, num_layers());
  Layer& L = *layers_[layer];
  if (L.loaded) return;
  for (int m : L.linears) {
    weights_[m] = ReadF32(modules_[m].weight_tensor);
    CheckRouterFinite(modules_[m], weights_[m], FileOfTensor(modules_[m].weight_tensor));
    if (!modules_[m].bias_tensor.empty()) biases_[m] = ReadF32(modules_[m].bias_tensor);
  }
  L.loaded = true;
}

void Model::ReleaseLayer(int layer) {
  QF_CHECK(layer >= 0 && layer < num_layers(), "layer {} out of range [0, {})", layer, num_layers());
  Layer& L = *layers_[layer];
  if (!L.loaded) return;
  for (int m : L.linears) {
    weights_[m] = Tensor();
    biases_[m] = Tensor();
    ckpt_.Release(modules_[m].weight_tensor);
    if (!modules_[m].bias_tensor.empty()) ckpt_.Release(modules_[m].bias_tensor);
  }
  L.loaded = false;
}

bool Model::IsLayerLoaded(int layer) const { return layers_.at(layer)->loaded; }

const ModuleInfo& Model::LinearInfo(int module) const {
  QF_CHECK(module >= 0 && module < static_cast<int>(modules_.size()) && modules_[module].kind == ModuleKind::kLinear,
           "module {} is not a Linear", module);
  return modules_[module];
}

bool Model::ReadsThroughLinearWeight(int module) const {
  const ModuleInfo& mi = modules_[module];
  return HasHostWeight(module) || IsRoutingWeight(mi) || (options_.provides && options_.provides(mi.weight_tensor));
}

Tensor Model::LinearWeight(int module) const {
  const ModuleInfo& mi = LinearInfo(module);
  if (Present(overrides_[module])) return overrides_[module];
  if (Present(weights_[module])) return weights_[module];
  // Not resident: convert a fresh copy and let the mmap pages go, so streaming over the weights (export,
  // layerwise calibration) never accumulates the checkpoint in RSS.
  Tensor w = ReadF32(mi.weight_tensor);
  CheckRouterFinite(mi, w, FileOfTensor(mi.weight_tensor));
  ckpt_.Release(mi.weight_tensor);
  return w;
}

bool Model::HasHostWeight(int module) const {
  QF_CHECK(module >= 0 && module < static_cast<int>(modules_.size()), "module {} out of range", module);
  return Present(overrides_[module]) || Present(weights_[module]);
}

void Model::LinearWeightInto(int module, std::span<float> out) const {
  const ModuleInfo& mi = LinearInfo(module);
  QF_CHECK(static_cast<int64_t>(out.size()) == mi.out_features * mi.in_features,
           "LinearWeightInto({}): {} floats for a [{}, {}] weight", mi.name, out.size(), mi.out_features,
           mi.in_features);
  if (ReadsThroughLinearWeight(module)) {
    const Tensor w = LinearWeight(module);
    std::copy(w.span<float>().begin(), w.span<float>().end(), out.begin());
    return;
  }
  const Tensor raw = ckpt_.Get(mi.weight_tensor);  // validated F32 / F16 / BF16 [out, in] at Load
  ConvertToF32(raw.dtype(), raw.raw(), out.data(), raw.numel());
  ckpt_.Release(mi.weight_tensor);
}

Tensor Model::StoredLinearWeight(int module) const {
  const ModuleInfo& mi = LinearInfo(module);
  if (ReadsThroughLinearWeight(module)) return LinearWeight(module);
  return ckpt_.Get(mi.weight_tensor);  // validated F32 / F16 / BF16 at Load
}

DType Model::CheckpointWeightDType(int module) const {
  const ModuleInfo& mi = LinearInfo(module);
  return ckpt_.Contains(mi.weight_tensor) ? ckpt_.Info(mi.weight_tensor).dtype : DType::kF32;
}

void Model::ReleaseStoredPages(int module) const {
  const ModuleInfo& mi = modules_.at(module);
  if (ckpt_.Contains(mi.weight_tensor)) ckpt_.Release(mi.weight_tensor);
}

void Model::SetLinearWeight(int module, Tensor weight) {
  const ModuleInfo& mi = LinearInfo(module);
  QF_CHECK(weight.dtype() == DType::kF32, "SetLinearWeight({}): weight must be F32, got {}", mi.name,
           DTypeName(weight.dtype()));
  QF_CHECK(weight.shape() == Shape({mi.out_features, mi.in_features}),
           "SetLinearWeight({}): weight has shape {}, expected [{}, {}]", mi.name, ShapeToString(weight.shape()),
           mi.out_features, mi.in_features);
  overrides_[module] = std::move(weight);
  ++weight_versions_[module];
}

void Model::RestoreLinearWeight(int module) {
  QF_CHECK(module >= 0 && module < static_cast<int>(modules_.size()), "module {} out of range", module);
  if (Present(overrides_[module])) ++weight_versions_[module];
  overrides_[module] = Tensor();
}

bool Model::HasWeightOverride(int module) const {
  QF_CHECK(module >= 0 && module < static_cast<int>(modules_.size()), "module {} out of range", module);
  return Present(overrides_[module]);
}

const Model::LayerModules& Model::layer_modules(int layer) const {
  QF_CHECK(layer >= 0 && layer < num_layers(), "layer {} out of range [0, {})", layer, num_layers());
  return *layers_[layer];
}

Tensor Model::LinearBias(int module) const {
  const ModuleInfo& mi = modules_.at(module);
  if (mi.bias_tensor.empty()) return Tensor();
  if (Present(biases_[module])) return biases_[module];
  return ReadF32(mi.bias_tensor);
}

}  // namespace qforge
