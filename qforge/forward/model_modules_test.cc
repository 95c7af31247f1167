// Module list (hub names, classes, order), hooks, layer streaming, weight replacement and the errors a
// new user meets with a damaged or mismatched checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/io/safetensors.h"
#include "qforge/forward/forward_model.h"
#include "qforge/model/model.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
const fs::path kModels = fs::path(QF_SHARED_DIR) / "data" / "models";

std::vector<int32_t> SomeIds(int64_t n, int64_t vocab) {
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<int32_t>((i * 37 + 11) % vocab);
  return ids;
}

// Options that load layers on first use (a designated initializer would leave the std::function members to
// -Wmissing-field-initializers).
ModelLoadOptions Lazy() {
  ModelLoadOptions o;
  o.load_all_layers = false;
  return o;
}

float MaxDiff(const Tensor& a, const Tensor& b) {
  float m = 0;
  for (int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::fabs(a.data<float>()[i] - b.data<float>()[i]));
  return m;
}

TEST(ModuleList, Qwen2MoeHubNamesInDefinitionOrder) {
  auto m = Model::Load(kModels / "qwen2moe-25M", Lazy());
  const auto& mods = m->modules();
  std::vector<std::string> names;
  for (const auto& mi : mods) names.push_back(mi.name);
  ASSERT_GE(names.size(), 12u);
  const std::vector<std::string> head = {"model.embed_tokens",
                                         "model.layers.0.self_attn",
                                         "model.layers.0.self_attn.q_proj",
                                         "model.layers.0.self_attn.k_proj",
                                         "model.layers.0.self_attn.v_proj",
                                         "model.layers.0.self_attn.o_proj",
                                         "model.layers.0.mlp",
                                         "model.layers.0.mlp.gate",
                                         "model.layers.0.mlp.experts.0.gate_proj",
                                         "model.layers.0.mlp.experts.0.up_proj",
                                         "model.layers.0.mlp.experts.0.down_proj",
                                         "model.layers.0.mlp.experts.1.gate_proj"};
  EXPECT_EQ(std::vector<std::string>(names.begin(), names.begin() + head.size()), head);
  const int se = m->FindModule("model.layers.0.mlp.shared_expert.gate_proj");
  ASSERT_GE(se, 0);
  EXPECT_EQ(names[se - 1], "model.layers.0.mlp.experts.7.down_proj");
  EXPECT_EQ(names[se + 1], "model.layers.0.mlp.shared_expert.up_proj");
  EXPECT_EQ(names[se + 2], "model.layers.0.mlp.shared_expert.down_proj");
  EXPECT_EQ(names[se + 3], "model.layers.0.mlp.shared_expert_gate");
  EXPECT_EQ(names[se + 4], "model.layers.1.self_attn");
  EXPECT_EQ(names.back(), "lm_head");
  // 4 layers x (q, k, v, o, router, 8 experts x 3, shared x 3, shared gate) + lm_head.
  EXPECT_EQ(m->linear_modules().size(), 4u * (4 + 1 + 24 + 3 + 1) + 1);

  const auto& q = mods[m->FindModule("model.layers.0.self_attn.q_proj")];
  EXPECT_EQ(q.class_key, "nn.Linear");
  EXPECT_EQ(q.bias_tensor, "model.layers.0.self_attn.q_proj.bias");
  EXPECT_EQ(q.in_features, 384);
  EXPECT_EQ(q.out_features, 384);
  const auto& o = mods[m->FindModule("model.layers.0.self_attn.o_proj")];
  EXPECT_EQ(o.bias_tensor, "");
  const auto& attn = mods[m->FindModule("model.layers.2.self_attn")];
  EXPECT_EQ(attn.class_key, "hf.Qwen2MoeAttention");
  EXPECT_EQ(attn.kind, ModuleKind::kAttention);
  EXPECT_EQ(m->attention_module(2), m->FindModule("model.layers.2.self_attn"));
  const auto& block = mods[m->FindModule("model.layers.0.mlp")];
  EXPECT_EQ(block.class_key, "hf.Qwen2MoeSparseMoeBlock");
  EXPECT_TRUE(Traits(block.kind).quantizers.empty());
  const auto& router = mods[m->FindModule("model.layers.0.mlp.gate")];
  EXPECT_EQ(router.role, LinearRole::kRouter);
  EXPECT_EQ(router.out_features, 8);
  const auto& sg = mods[m->FindModule("model.layers.3.mlp.shared_expert_gate")];
  EXPECT_EQ(sg.role, LinearRole::kSharedExpertGate);
  EXPECT_EQ(sg.out_features, 1);
  const auto& ex = mods[m->FindModule("model.layers.1.mlp.experts.5.down_proj")];
  EXPECT_EQ(ex.expert, 5);
  EXPECT_EQ(ex.in_features, 384);
  EXPECT_EQ(ex.weight_tensor, "model.layers.1.mlp.experts.5.down_proj.weight");
  EXPECT_TRUE(mods[se].in_shared_expert);
  EXPECT_EQ(mods[se].out_features, 768);
  const auto& emb = mods[0];
  EXPECT_EQ(emb.class_key, "nn.Embedding");
  EXPECT_EQ(std::vector<std::string_view>(Traits(emb.kind).quantizers.begin(), Traits(emb.kind).quantizers.end()),
            (std::vector<std::string_view>{"weight_quantizer", "input_quantizer", "output_quantizer"}));
  EXPECT_EQ(
      std::vector<std::string_view>(Traits(ModuleKind::kAttention).quantizers.begin(),
                                    Traits(ModuleKind::kAttention).quantizers.end()),
      (std::vector<std::string_view>{"q_bmm_quantizer", "k_bmm_quantizer", "v_bmm_quantizer", "p_bmm_quantizer"}));
  EXPECT_EQ(m->num_parameters(), 25578880);  // the index's total_parameters
}

TEST(ModuleList, MixtralExpertsAndTiedHead) {
  auto m = Model::Load(kModels / "stories260K-moe-upcycled" / "hf", Lazy());
  const int w1 = m->FindModule("model.layers.0.block_sparse_moe.experts.3.w1");
  ASSERT_GE(w1, 0);
  const auto& mods = m->modules();
  EXPECT_EQ(mods[w1 + 1].name, "model.layers.0.block_sparse_moe.experts.3.w2");
  EXPECT_EQ(mods[w1 + 2].name, "model.layers.0.block_sparse_moe.experts.3.w3");
  EXPECT_EQ(mods[w1].role, LinearRole::kGate);
  EXPECT_EQ(mods[w1 + 1].role, LinearRole::kDown);
  EXPECT_EQ(mods[w1 + 1].in_features, 172);
  EXPECT_EQ(mods[m->FindModule("model.layers.0.block_sparse_moe")].class_key, "hf.MixtralSparseMoeBlock");
  EXPECT_EQ(mods[m->FindModule("model.layers.0.block_sparse_moe.gate")].role, LinearRole::kRouter);
  EXPECT_EQ(mods[m->FindModule("model.layers.0.self_attn")].class_key, "hf.MixtralAttention");
  const auto& head = mods[m->FindModule("lm_head")];
  EXPECT_EQ(head.weight_tensor, "model.embed_tokens.weight");  // tied
}

TEST(ModelConfig, QwenMoeSparseStepAndMlpOnlyLayers) {
  json j = json::parse(ReadFileToString(kModels / "qwen2moe-25M" / "config.json"));
  j["num_hidden_layers"] = 6;
  j["decoder_sparse_step"] = 2;
  j["mlp_only_layers"] = {3};
  const ModelConfig c = ParseModelConfig(j, "test config.json");
  std::vector<bool> moe;
  for (int l = 0; l < 6; ++l) moe.push_back(c.IsMoeLayer(l));
  EXPECT_EQ(moe, (std::vector<bool>{false, true, false, false, false, true}));
  EXPECT_FALSE(c.norm_topk_prob);
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_EQ(c.head_dim, 64);  // hidden 384 / 6 heads
  EXPECT_EQ(c.rope.theta, 10000.0);
}

TEST(ModelConfig, RopeStylesAndScalingTypes) {
  const ModelConfig v5 = LoadModelConfig(kModels / "tiny" / "llama_rope_llama3");
  const ModelConfig v4 = LoadModelConfig(kModels / "tiny" / "llama_rope_llama3_v4config");
  EXPECT_EQ(v5.rope.type, "llama3");
  EXPECT_EQ(v4.rope.type, "llama3");
  EXPECT_EQ(v4.rope.theta, 500000.0);
  const auto a = ComputeRopeFrequencies(v5.rope, v5.head_dim, v5.max_position_embeddings);
  const auto b = ComputeRopeFrequencies(v4.rope, v4.head_dim, v4.max_position_embeddings);
  EXPECT_EQ(a.inv_freq, b.inv_freq);
  const ModelConfig yarn = LoadModelConfig(kModels / "tiny" / "llama_rope_yarn");
  const auto y = ComputeRopeFrequencies(yarn.rope, yarn.head_dim, yarn.max_position_embeddings);
  EXPECT_NEAR(y.attention_factor, 0.1 * std::log(4.0) + 1.0, 1e-6);
  json j = json::parse(ReadFileToString(kModels / "tiny" / "llama_rope_yarn" / "config.json"));
  j["rope_parameters"]["rope_type"] = "dynamic";
  try {
    ParseModelConfig(j, "cfg.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"dynamic\" is not supported"), std::string::npos) << e.what();
  }
}

// Records every hook call; optionally scales the input of one Linear.
class RecordingHooks : public ForwardHooks {
 public:
  bool modifies = false;
  int scale_module = -1;
  float scale = 1.f;
  std::map<int, int64_t> input_rows;
  std::map<int, int64_t> output_rows;
  std::vector<std::tuple<int, BmmInput, int64_t, int64_t, int64_t, int64_t>> bmm;

  bool ModifiesActivations() const override { return modifies; }
  void OnLinearInput(Backend&, int module, float* x, int64_t rows, int64_t cols) override {
    input_rows[module] += rows;
    if (module == scale_module) {
      for (int64_t i = 0; i < rows * cols; ++i) x[i] *= scale;
    }
  }
  void OnLinearOutput(Backend&, int module, float* y, int64_t rows, int64_t cols) override { output_rows[module] += rows; }
  void OnAttentionBmm(Backend&, int module, BmmInput which, float* x, int64_t b, int64_t h, int64_t s, int64_t d) override {
    bmm.emplace_back(module, which, b, h, s, d);
  }
};

TEST(Hooks, ObserveEveryLinearAndPerExpertRows) {
  auto fm = ForwardModel::Load(kModels / "tiny" / "qwen3_moe");
  Model* m = &fm->model();
  const auto ids = SomeIds(2 * 16, m->config().vocab_size);
  Tensor plain = fm->Forward(ids, 2, 16);
  RecordingHooks hooks;
  fm->ResetRowsSeen();
  Tensor hooked = fm->Forward(ids, 2, 16, &hooks);
  EXPECT_EQ(MaxDiff(plain, hooked), 0.f);  // observing hooks change nothing
  int64_t expert_rows = 0;
  for (int id : m->linear_modules()) {
    const ModuleInfo& mi = m->modules()[id];
    EXPECT_EQ(hooks.input_rows[id], fm->rows_seen()[id]) << mi.name;
    EXPECT_EQ(hooks.output_rows[id], fm->rows_seen()[id]) << mi.name;
    if (mi.expert < 0) {
      EXPECT_EQ(fm->rows_seen()[id], 32) << mi.name;
    } else if (mi.layer == 0 && mi.role == LinearRole::kGate) {
      expert_rows += fm->rows_seen()[id];
    }
  }
  EXPECT_EQ(expert_rows, 32 * m->config().top_k);
  // q, k, v per layer after RoPE, heads-major.
  ASSERT_EQ(hooks.bmm.size(), 2u * 3);
  EXPECT_EQ(hooks.bmm[0],
            std::make_tuple(m->attention_module(0), BmmInput::kQ, int64_t{2}, int64_t{4}, int64_t{16}, int64_t{16}));
  EXPECT_EQ(hooks.bmm[1],
            std::make_tuple(m->attention_module(0), BmmInput::kK, int64_t{2}, int64_t{2}, int64_t{16}, int64_t{16}));
  EXPECT_EQ(std::get<1>(hooks.bmm[2]), BmmInput::kV);
}

TEST(Hooks, ModifyingAnInputEqualsScalingTheWeight) {
  auto fm = ForwardModel::Load(kModels / "tiny" / "qwen2");
  Model* m = &fm->model();
  const auto ids = SomeIds(2 * 8, m->config().vocab_size);
  // k_proj has a bias, so scale the input of o_proj (no bias): o(2x) == (2W) x.
  const int o = m->FindModule("model.layers.1.self_attn.o_proj");
  RecordingHooks hooks;
  hooks.modifies = true;
  hooks.scale_module = o;
  hooks.scale = 2.f;
  Tensor a = fm->Forward(ids, 2, 8, &hooks);
  Tensor w = m->LinearWeight(o).Clone();
  for (float& v : w.mutable_span<float>()) v *= 2.f;
  m->SetLinearWeight(o, w);
  Tensor b = fm->Forward(ids, 2, 8);
  EXPECT_LT(MaxDiff(a, b), 1e-5f);
  m->RestoreLinearWeight(o);
  Tensor c = fm->Forward(ids, 2, 8);
  EXPECT_GT(MaxDiff(b, c), 1e-3f);
  // The q/k/v copies are separate: scaling q_proj's input does not touch k_proj's.
  RecordingHooks only_q;
  only_q.modifies = true;
  only_q.scale_module = m->FindModule("model.layers.0.self_attn.q_proj");
  only_q.scale = 0.f;
  Tensor d = fm->Forward(ids, 2, 8, &only_q);
  Tensor wq = m->LinearWeight(only_q.scale_module).Clone();
  for (float& v : wq.mutable_span<float>()) v = 0.f;
  m->SetLinearWeight(only_q.scale_module, wq);
  Tensor e = fm->Forward(ids, 2, 8);
  EXPECT_LT(MaxDiff(d, e), 1e-5f);
  EXPECT_THROW(m->SetLinearWeight(o, Tensor::Zeros(DType::kF32, {3, 3})), Error);
}

// Exposes the attention probabilities of one layer and optionally zeroes all but the diagonal.
class ProbsHooks : public ForwardHooks {
 public:
  int module = -1;
  bool diagonal_only = false;
  int calls = 0;
  bool WantsAttentionProbs(int m) const override { return m == module; }
  void OnAttentionProbs(Backend&, int m, float* p, int64_t b, int64_t h, int64_t s) override {
    ++calls;
    EXPECT_EQ(m, module);
    for (int64_t r = 0; r < b * h * s; ++r) {
      const int64_t i = r % s;
      double sum = 0;
      for (int64_t j = 0; j < s; ++j) {
        sum += p[r * s + j];
        if (diagonal_only) p[r * s + j] = j == i ? 1.f : 0.f;
      }
      EXPECT_NEAR(sum, 1.0, 1e-5);
    }
  }
};

TEST(Hooks, AttentionProbabilities) {
  auto fm = ForwardModel::Load(kModels / "tiny" / "llama_rope_yarn");
  Model* m = &fm->model();
  const auto ids = SomeIds(2 * 12, m->config().vocab_size);
  Tensor plain = fm->Forward(ids, 2, 12);
  ProbsHooks hooks;
  hooks.module = m->attention_module(1);
  Tensor two_step = fm->Forward(ids, 2, 12, &hooks);
  EXPECT_EQ(hooks.calls, 1);
  EXPECT_LT(MaxDiff(plain, two_step), 1e-5f);
  hooks.diagonal_only = true;  // every token attends to itself only: the output changes
  Tensor changed = fm->Forward(ids, 2, 12, &hooks);
  EXPECT_GT(MaxDiff(plain, changed), 1e-3f);
}

TEST(LayerStreaming, OneLayerAtATimeEqualsWholeModel) {
  const fs::path dir = kModels / "tiny" / "mixtral";
  auto whole = ForwardModel::Load(dir);
  auto streamed = ForwardModel::Load(dir, Lazy());
  EXPECT_FALSE(streamed->IsLayerLoaded(0));
  EXPECT_FALSE(streamed->model().IsLayerLoaded(0));
  const auto ids = SomeIds(3 * 10, whole->config().vocab_size);
  Tensor want = whole->Forward(ids, 3, 10);
  const int q = streamed->model().FindModule("model.layers.1.self_attn.q_proj");
  Tensor wq = streamed->model().LinearWeight(q).Clone();  // read from the checkpoint while not resident
  streamed->model().SetLinearWeight(q, wq);               // an override survives release / reload
  HiddenStates h = streamed->Embed(ids, 3, 10);
  for (int l = 0; l < streamed->num_layers(); ++l) {
    streamed->LoadLayer(l);
    streamed->RunLayer(l, h);
    streamed->ReleaseLayer(l);
    EXPECT_FALSE(streamed->IsLayerLoaded(l));
  }
  Tensor got = streamed->Logits(h);
  EXPECT_EQ(MaxDiff(want, got), 0.f);
}

// --- errors a new user meets ---

class BrokenCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("qf_broken_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    const fs::path src = kModels / "tiny" / "qwen2";
    fs::copy_file(src / "config.json", dir_ / "config.json");
    auto f = SafetensorsFile::Open(src / "model.safetensors");
    for (const auto& n : f->names()) tensors_.emplace_back(n, f->Get(n).Clone());
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write() { WriteSafetensors(dir_ / "model.safetensors", tensors_); }
  std::string LoadError() {
    try {
      Model::Load(dir_);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  void EditConfig(const std::function<void(json&)>& edit) {
    json j = json::parse(ReadFileToString(dir_ / "config.json"));
    edit(j);
    WriteFileAtomic(dir_ / "config.json", j.dump(2));
  }
  fs::path dir_;
  std::vector<std::pair<std::string, Tensor>> tensors_;
};

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

TEST_F(BrokenCheckpoint, MissingTensor) {
  std::erase_if(tensors_, [](const auto& p) { return p.first == "model.layers.1.self_attn.k_proj.bias"; });
  Write();
  const std::string e = LoadError();
  EXPECT_HAS(e, "missing tensor 'model.layers.1.self_attn.k_proj.bias'");
  EXPECT_HAS(e, "[32]");
}

TEST_F(BrokenCheckpoint, ShapeMismatchNamesFileTensorAndExpected) {
  Write();
  EditConfig([](json& j) { j["intermediate_size"] = 96; });
  const std::string e = LoadError();
  EXPECT_HAS(e, "'model.layers.0.mlp.down_proj.weight' in model.safetensors has shape [64, 128], expected [64, 96]");
}

TEST_F(BrokenCheckpoint, DtypeMismatch) {
  for (auto& [n, t] : tensors_) {
    if (n == "model.norm.weight") t = Tensor::Zeros(DType::kI32, t.shape());
  }
  Write();
  EXPECT_HAS(LoadError(), "'model.norm.weight' in model.safetensors has dtype I32, expected F32, F16 or BF16");
}

TEST_F(BrokenCheckpoint, UnknownArchitectureAndMissingKey) {
  Write();
  EditConfig([](json& j) { j["architectures"] = {"FalconForCausalLM"}; });
  std::string e = LoadError();
  EXPECT_HAS(e, "architecture \"FalconForCausalLM\" is not supported");
  EXPECT_HAS(e, "Qwen2MoeForCausalLM");
  EXPECT_HAS(e, "config.json");
  EditConfig([](json& j) {
    j["architectures"] = {"Qwen2ForCausalLM"};
    j.erase("hidden_size");
  });
  e = LoadError();
  EXPECT_HAS(e, "missing required key \"hidden_size\"");
  EXPECT_HAS(e, (dir_ / "config.json").string());
}

TEST_F(BrokenCheckpoint, UnexpectedTensor) {
  tensors_.emplace_back("model.layers.0.self_attn.o_proj.bias", Tensor::Zeros(DType::kF32, {64}));
  Write();
  EXPECT_HAS(LoadError(), "'model.layers.0.self_attn.o_proj.bias'");
}

TEST_F(BrokenCheckpoint, TruncatedFile) {
  Write();
  fs::resize_file(dir_ / "model.safetensors", fs::file_size(dir_ / "model.safetensors") - 100);
  EXPECT_HAS(LoadError(), "model.safetensors");
}

TEST_F(BrokenCheckpoint, MissingShard) {
  // Two shards + index, then delete the second shard.
  std::vector<std::pair<std::string, Tensor>> a, b;
  json map = json::object();
  for (auto& p : tensors_) {
    const bool first = p.first.find("layers.1.") == std::string::npos;
    (first ? a : b).push_back(p);
    map[p.first] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  WriteSafetensors(dir_ / "model-00001-of-00002.safetensors", a);
  WriteSafetensors(dir_ / "model-00002-of-00002.safetensors", b);
  WriteFileAtomic(dir_ / "model.safetensors.index.json",
                  json{{"metadata", json::object()}, {"weight_map", map}}.dump());
  EXPECT_NO_THROW(Model::Load(dir_));
  fs::remove(dir_ / "model-00002-of-00002.safetensors");
  EXPECT_HAS(LoadError(), "model-00002-of-00002.safetensors");
}

// f16 and bf16 checkpoints compute exactly what f32 checkpoints holding the same (rounded) values compute.
TEST_F(BrokenCheckpoint, HalfPrecisionWeightsConvertExactly) {
  const auto ids = SomeIds(2 * 9, 256);
  for (DType dt : {DType::kF16, DType::kBF16}) {
    std::vector<std::pair<std::string, Tensor>> half, rounded;
    for (const auto& [n, t] : tensors_) {
      Tensor h = t.FromF32To(dt);
      half.emplace_back(n, h);
      rounded.emplace_back(n, h.ToF32());
    }
    WriteSafetensors(dir_ / "model.safetensors", half);
    EditConfig([&](json& j) { j["dtype"] = std::string(Traits(dt).torch_name); });  // config.json's dtype names the weights'
    Tensor a = ForwardModel::Load(dir_)->Forward(ids, 2, 9);
    WriteSafetensors(dir_ / "model.safetensors", rounded);
    EditConfig([](json& j) { j["dtype"] = "float32"; });
    Tensor b = ForwardModel::Load(dir_)->Forward(ids, 2, 9);
    EXPECT_EQ(MaxDiff(a, b), 0.f) << DTypeName(dt);
  }
}

TEST_F(BrokenCheckpoint, TokenIdOutOfRange) {
  Write();
  auto m = ForwardModel::Load(dir_);
  const std::vector<int32_t> ids = {1, 2, 256};
  try {
    m->Forward(ids, 1, 3);
    FAIL();
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "token id 256 at position 2 is outside the vocabulary [0, 256)");
  }
}

}  // namespace
}  // namespace qforge
