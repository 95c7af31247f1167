// The generic decoder: module list from the architecture table, checkpoint validation, weight residency
// and the fp32 forward pass over runtime ops.
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

// Routers (and Qwen-MoE's shared_expert_gate) are never quantized, so no weight amax looks at their values: a
// NaN or Inf there makes every routing weight NaN, and the first error would name a later expert quantizer.
// `w` is the f32 weight of `mi`, read from `file`.
void CheckRouterFinite(const ModuleInfo& mi, const Tensor& w, const std::string& file) {
  if (mi.role != LinearRole::kRouter && mi.role != LinearRole::kSharedExpertGate) return;
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

float* Grow(std::vector<float>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
  return v.data();
}

// Rows of the head computed at once by TokenNll (bounds the logits buffer to kHeadChunk x vocab).
constexpr int64_t kHeadChunk = 256;

}  // namespace

const ModuleKindTraits& Traits(ModuleKind kind) { return kModuleKinds[static_cast<size_t>(kind)]; }

struct Model::Layer {
  int attention = -1;
  int q = -1, k = -1, v = -1, o = -1;
  bool moe = false;
  int mlp[3] = {-1, -1, -1};  // dense MLP: gate, up, down (role order)
  int moe_block = -1;
  int router = -1;
  std::vector<std::array<int, 3>> experts;  // per expert: gate, up, down
  int shared[3] = {-1, -1, -1};
  int shared_gate = -1;
  std::vector<int> linears;  // every Linear module of the layer
  std::string input_norm_name, post_norm_name, q_norm_name, k_norm_name;
  Tensor input_norm, post_norm, q_norm, k_norm;  // f32
  bool loaded = false;
};

struct Model::Workspace {
  std::vector<float> xn, q, k, v, qh, kh, vh, attn, probs, gate, up, hook_in, hook_out, router, moe_out, xe, eo, so, gl,
      final_xn, logits;
  std::vector<int32_t> topk_ids, expert_rows;
  std::vector<float> topk_w, expert_w;
};

Model::~Model() = default;

std::unique_ptr<Model> Model::Load(const std::filesystem::path& dir, const ModelLoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  m->config_ = LoadModelConfig(dir);
  m->ckpt_ = CheckpointTensors::Open(dir);
  m->backend_ = options.backend != nullptr ? options.backend : &DefaultCpuBackend();
  m->options_ = options;
  m->ws_ = std::make_unique<Workspace>();
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
  m->final_norm_ = m->ReadF32("model.norm.weight");
  m->rope_ = ComputeRopeFrequencies(m->config_.rope, m->config_.head_dim, m->config_.max_position_embeddings);
  if (options.load_all_layers) {
    for (int i = 0; i < m->num_layers(); ++i) m->LoadLayer(i);
    m->EnsureHead();
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
    if (layer >= 0) layers_[layer]->linears.push_back(id);
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
  rows_seen_.assign(modules_.size(), 0);
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
  L.input_norm = ReadF32(L.input_norm_name);
  L.post_norm = ReadF32(L.post_norm_name);
  if (!L.q_norm_name.empty()) {
    L.q_norm = ReadF32(L.q_norm_name);
    L.k_norm = ReadF32(L.k_norm_name);
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
  L.input_norm = L.post_norm = L.q_norm = L.k_norm = Tensor();
  L.loaded = false;
}

bool Model::IsLayerLoaded(int layer) const { return layers_.at(layer)->loaded; }

Tensor Model::LinearWeight(int module) const {
  QF_CHECK(module >= 0 && module < static_cast<int>(modules_.size()) && modules_[module].kind == ModuleKind::kLinear,
           "module {} is not a Linear", module);
  if (Present(overrides_[module])) return overrides_[module];
  if (Present(weights_[module])) return weights_[module];
  // Not resident: convert a fresh copy and let the mmap pages go, so streaming over the weights (export,
  // layerwise calibration) never accumulates the checkpoint in RSS.
  Tensor w = ReadF32(modules_[module].weight_tensor);
  CheckRouterFinite(modules_[module], w, FileOfTensor(modules_[module].weight_tensor));
  ckpt_.Release(modules_[module].weight_tensor);
  return w;
}

void Model::SetLinearWeight(int module, Tensor weight) {
  QF_CHECK(module >= 0 && module < static_cast<int>(modules_.size()) && modules_[module].kind == ModuleKind::kLinear,
           "module {} is not a Linear", module);
  const ModuleInfo& mi = modules_[module];
  QF_CHECK(weight.dtype() == DType::kF32, "SetLinearWeight({}): weight must be F32, got {}", mi.name,
           DTypeName(weight.dtype()));
  QF_CHECK(weight.shape() == Shape({mi.out_features, mi.in_features}),
           "SetLinearWeight({}): weight has shape {}, expected [{}, {}]", mi.name, ShapeToString(weight.shape()),
           mi.out_features, mi.in_features);
  overrides_[module] = std::move(weight);
}

void Model::RestoreLinearWeight(int module) {
  QF_CHECK(module >= 0 && module < static_cast<int>(modules_.size()), "module {} out of range", module);
  overrides_[module] = Tensor();
}

const float* Model::Weight(int module) const {
  if (Present(overrides_[module])) return overrides_[module].data<float>();
  QF_ASSERT(Present(weights_[module]), "weight of {} not loaded", modules_[module].name);
  return weights_[module].data<float>();
}

const float* Model::Bias(int module) const {
  return Present(biases_[module]) ? biases_[module].data<float>() : nullptr;
}

void Model::ResetRowsSeen() { std::fill(rows_seen_.begin(), rows_seen_.end(), 0); }

void Model::EnsureRope(int64_t seq) {
  if (seq <= rope_len_) return;
  RopeTables(rope_, seq, &rope_cos_, &rope_sin_);
  rope_len_ = seq;
}

void Model::EnsureHead() {
  if (!Present(weights_[lm_head_module_])) weights_[lm_head_module_] = ReadF32(modules_[lm_head_module_].weight_tensor);
}

HiddenStates Model::Embed(std::span<const int32_t> ids, int64_t batch, int64_t seq) const {
  QF_CHECK(batch > 0 && seq > 0 && static_cast<int64_t>(ids.size()) == batch * seq,
           "Embed: {} ids for batch {} x seq {}", ids.size(), batch, seq);
  const int64_t H = config_.hidden_size;
  HiddenStates h{Tensor::Zeros(DType::kF32, {batch * seq, H}), batch, seq};
  float* out = h.hidden.mutable_data<float>();
  const auto* base = static_cast<const std::byte*>(embed_raw_.raw());
  const size_t row_bytes = H * DTypeSize(embed_raw_.dtype());
  for (int64_t t = 0; t < batch * seq; ++t) {
    const int32_t id = ids[t];
    QF_CHECK(id >= 0 && id < config_.vocab_size, "token id {} at position {} is outside the vocabulary [0, {})", id, t,
             config_.vocab_size);
    ConvertToF32(embed_raw_.dtype(), base + id * row_bytes, out + t * H, H);
  }
  return h;
}

void Model::Linear(int module, const float* x, int64_t rows, float* y, bool accumulate, ForwardHooks* hooks) {
  const ModuleInfo& mi = modules_[module];
  rows_seen_[module] += rows;
  const float* w = Weight(module);
  const float* b = Bias(module);
  if (hooks == nullptr) {
    backend_->Gemm(x, w, b, y, rows, mi.out_features, mi.in_features, accumulate);
    return;
  }
  const float* in = x;
  if (hooks->ModifiesActivations()) {
    float* copy = Grow(ws_->hook_in, rows * mi.in_features);
    std::memcpy(copy, x, rows * mi.in_features * sizeof(float));
    hooks->OnLinearInput(module, copy, rows, mi.in_features);
    in = copy;
  } else {
    hooks->OnLinearInput(module, const_cast<float*>(x), rows, mi.in_features);
  }
  if (accumulate) {
    float* tmp = Grow(ws_->hook_out, rows * mi.out_features);
    backend_->Gemm(in, w, b, tmp, rows, mi.out_features, mi.in_features, false);
    hooks->OnLinearOutput(module, tmp, rows, mi.out_features);
    backend_->Add(y, tmp, rows * mi.out_features);
  } else {
    backend_->Gemm(in, w, b, y, rows, mi.out_features, mi.in_features, false);
    hooks->OnLinearOutput(module, y, rows, mi.out_features);
  }
}

void Model::GatedMlp(const int ids[3], const float* x, int64_t rows, float* out, bool accumulate, ForwardHooks* hooks) {
  const int64_t inter = modules_[ids[0]].out_features;
  float* g = Grow(ws_->gate, rows * inter);
  float* u = Grow(ws_->up, rows * inter);
  Linear(ids[0], x, rows, g, false, hooks);
  Linear(ids[1], x, rows, u, false, hooks);
  backend_->SiluMul(g, u, g, rows * inter);
  Linear(ids[2], g, rows, out, accumulate, hooks);
}

void Model::Attention(int layer, HiddenStates& h, ForwardHooks* hooks) {
  const ModelConfig& c = config_;
  Layer& L = *layers_[layer];
  const int64_t B = h.batch, S = h.seq, T = B * S, H = c.hidden_size, D = c.head_dim;
  const int64_t Hq = c.num_heads, Hkv = c.num_kv_heads;
  float* hid = h.hidden.mutable_data<float>();
  float* xn = Grow(ws_->xn, T * H);
  backend_->RmsNorm(hid, L.input_norm.data<float>(), xn, T, H, static_cast<float>(c.rms_norm_eps));
  float* q = Grow(ws_->q, T * Hq * D);
  float* k = Grow(ws_->k, T * Hkv * D);
  float* v = Grow(ws_->v, T * Hkv * D);
  Linear(L.q, xn, T, q, false, hooks);
  Linear(L.k, xn, T, k, false, hooks);
  Linear(L.v, xn, T, v, false, hooks);
  if (Present(L.q_norm)) {
    backend_->RmsNorm(q, L.q_norm.data<float>(), q, T * Hq, D, static_cast<float>(c.rms_norm_eps));
    backend_->RmsNorm(k, L.k_norm.data<float>(), k, T * Hkv, D, static_cast<float>(c.rms_norm_eps));
  }
  float* qh = Grow(ws_->qh, T * Hq * D);
  float* kh = Grow(ws_->kh, T * Hkv * D);
  float* vh = Grow(ws_->vh, T * Hkv * D);
  backend_->SwapMiddleAxes(q, qh, B, S, Hq, D);
  backend_->SwapMiddleAxes(k, kh, B, S, Hkv, D);
  backend_->SwapMiddleAxes(v, vh, B, S, Hkv, D);
  EnsureRope(S);
  backend_->Rope(qh, B, Hq, S, D, rope_cos_.data(), rope_sin_.data());
  backend_->Rope(kh, B, Hkv, S, D, rope_cos_.data(), rope_sin_.data());
  if (hooks != nullptr) {
    hooks->OnAttentionBmm(L.attention, BmmInput::kQ, qh, B, Hq, S, D);
    hooks->OnAttentionBmm(L.attention, BmmInput::kK, kh, B, Hkv, S, D);
    hooks->OnAttentionBmm(L.attention, BmmInput::kV, vh, B, Hkv, S, D);
  }
  float* attn = Grow(ws_->attn, T * Hq * D);
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  if (hooks != nullptr && hooks->WantsAttentionProbs(L.attention)) {
    float* probs = Grow(ws_->probs, B * Hq * S * S);
    backend_->CausalAttentionProbs(qh, kh, probs, B, Hq, Hkv, S, D, scale);
    hooks->OnAttentionProbs(L.attention, probs, B, Hq, S);
    backend_->AttentionApply(probs, vh, attn, B, Hq, Hkv, S, D);
  } else {
    backend_->CausalAttention(qh, kh, vh, attn, B, Hq, Hkv, S, D, scale);
  }
  Linear(L.o, attn, T, hid, /*accumulate=*/true, hooks);
}

void Model::MoeBlock(int layer, const float* x, int64_t rows, float* h, ForwardHooks* hooks) {
  const ModelConfig& c = config_;
  Layer& L = *layers_[layer];
  const int64_t E = c.num_experts, K = c.top_k, H = c.hidden_size;
  float* logits = Grow(ws_->router, rows * E);
  Linear(L.router, x, rows, logits, false, hooks);
  ws_->topk_ids.resize(rows * K);
  ws_->topk_w.resize(rows * K);
  backend_->TopKRouting(logits, rows, E, static_cast<int>(K), c.norm_topk_prob, ws_->topk_ids.data(),
                        ws_->topk_w.data());
  // Group the (token, weight) pairs by expert, tokens in increasing order within an expert.
  std::vector<int64_t> start(E + 1, 0);
  for (int32_t e : ws_->topk_ids) ++start[e + 1];
  for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
  ws_->expert_rows.resize(rows * K);
  ws_->expert_w.resize(rows * K);
  {
    std::vector<int64_t> fill(start.begin(), start.end() - 1);
    for (int64_t t = 0; t < rows; ++t) {
      for (int64_t s = 0; s < K; ++s) {
        const int32_t e = ws_->topk_ids[t * K + s];
        ws_->expert_rows[fill[e]] = static_cast<int32_t>(t);
        ws_->expert_w[fill[e]] = ws_->topk_w[t * K + s];
        ++fill[e];
      }
    }
  }
  float* acc = Grow(ws_->moe_out, rows * H);
  std::fill(acc, acc + rows * H, 0.f);
  for (int64_t e = 0; e < E; ++e) {
    const int64_t n = start[e + 1] - start[e];
    if (n == 0) continue;
    const int32_t* idx = ws_->expert_rows.data() + start[e];
    float* xe = Grow(ws_->xe, n * H);
    float* eo = Grow(ws_->eo, n * H);
    backend_->GatherRows(x, idx, xe, n, H);
    GatedMlp(L.experts[e].data(), xe, n, eo, false, hooks);
    backend_->ScatterAddRows(eo, idx, ws_->expert_w.data() + start[e], acc, n, H);
  }
  if (L.shared_gate >= 0) {
    float* so = Grow(ws_->so, rows * H);
    float* gl = Grow(ws_->gl, rows);
    GatedMlp(L.shared, x, rows, so, false, hooks);
    Linear(L.shared_gate, x, rows, gl, false, hooks);
    backend_->SigmoidScaleRows(so, gl, rows, H);
    backend_->Add(acc, so, rows * H);
  }
  backend_->Add(h, acc, rows * H);
}

void Model::RunLayer(int layer, HiddenStates& h, ForwardHooks* hooks) {
  QF_CHECK(layer >= 0 && layer < num_layers(), "layer {} out of range [0, {})", layer, num_layers());
  QF_CHECK(h.hidden.dtype() == DType::kF32 && h.hidden.shape() == Shape({h.batch * h.seq, config_.hidden_size}),
           "RunLayer: hidden states have shape {}, expected [{} x {}, {}]", ShapeToString(h.hidden.shape()), h.batch,
           h.seq, config_.hidden_size);
  QF_CHECK(!config_.sliding_window || h.seq <= *config_.sliding_window,
           "sequence length {} exceeds the model's sliding_window {} (sliding-window attention is not implemented)",
           h.seq, *config_.sliding_window);
  LoadLayer(layer);
  Layer& L = *layers_[layer];
  const int64_t T = h.batch * h.seq, H = config_.hidden_size;
  Attention(layer, h, hooks);
  float* hid = h.hidden.mutable_data<float>();
  float* xn = Grow(ws_->xn, T * H);
  backend_->RmsNorm(hid, L.post_norm.data<float>(), xn, T, H, static_cast<float>(config_.rms_norm_eps));
  if (L.moe) {
    MoeBlock(layer, xn, T, hid, hooks);
  } else {
    GatedMlp(L.mlp, xn, T, hid, /*accumulate=*/true, hooks);
  }
}

const float* Model::FinalNormed(const HiddenStates& h) {
  const int64_t T = h.batch * h.seq, H = config_.hidden_size;
  QF_CHECK(h.hidden.shape() == Shape({T, H}), "hidden states have shape {}, expected [{}, {}]",
           ShapeToString(h.hidden.shape()), T, H);
  float* xn = Grow(ws_->final_xn, T * H);
  backend_->RmsNorm(h.hidden.data<float>(), final_norm_.data<float>(), xn, T, H,
                    static_cast<float>(config_.rms_norm_eps));
  return xn;
}

Tensor Model::Logits(const HiddenStates& h, ForwardHooks* hooks) {
  EnsureHead();
  const float* xn = FinalNormed(h);
  const int64_t T = h.batch * h.seq;
  Tensor logits = Tensor::Zeros(DType::kF32, {T, config_.vocab_size});
  Linear(lm_head_module_, xn, T, logits.mutable_data<float>(), false, hooks);
  return logits;
}

void Model::TokenNll(const HiddenStates& h, std::span<const int32_t> targets, std::span<double> nll,
                     ForwardHooks* hooks) {
  const int64_t T = h.batch * h.seq, V = config_.vocab_size, H = config_.hidden_size;
  QF_CHECK(static_cast<int64_t>(targets.size()) == T && static_cast<int64_t>(nll.size()) == T,
           "TokenNll: {} targets and {} outputs for {} rows", targets.size(), nll.size(), T);
  for (int64_t t = 0; t < T; ++t) {
    QF_CHECK(targets[t] >= 0 && targets[t] < V, "target id {} at row {} is outside the vocabulary [0, {})", targets[t],
             t, V);
  }
  EnsureHead();
  const float* xn = FinalNormed(h);
  for (int64_t r0 = 0; r0 < T; r0 += kHeadChunk) {
    const int64_t n = std::min(kHeadChunk, T - r0);
    float* logits = Grow(ws_->logits, n * V);
    Linear(lm_head_module_, xn + r0 * H, n, logits, false, hooks);
    backend_->CrossEntropy(logits, targets.data() + r0, nll.data() + r0, n, V);
  }
}

Tensor Model::Forward(std::span<const int32_t> ids, int64_t batch, int64_t seq, ForwardHooks* hooks) {
  HiddenStates h = Embed(ids, batch, seq);
  for (int l = 0; l < num_layers(); ++l) RunLayer(l, h, hooks);
  return Logits(h, hooks);
}

}  // namespace qforge
