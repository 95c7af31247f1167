// The quantizers each selective recipe enables on the shared models are exactly ModelOpt's: named per
// expert on hub names, with routers, shared_expert_gate, lm_head and embeddings off.
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>

#include "qforge/config/yaml_loader.h"
#include "qforge/model/model.h"
#include "qforge/quant/quant_state.h"

namespace qforge {
namespace {
namespace fs = std::filesystem;

std::unique_ptr<Model> LoadLazy(const std::string& name) {
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  return Model::Load(fs::path(QF_SHARED_DIR) / "data/models" / name, lo);
}

// Enabled quantizer names under `recipe`.
std::set<std::string> Enabled(const Model& model, const std::string& recipe, std::map<std::string, std::string>* labels) {
  QuantState s = QuantState::ForModel(model);
  s.Apply(config::LoadRecipe("general/ptq/" + recipe).quantize->quant_cfg);
  std::set<std::string> out;
  for (const auto& q : s.quantizers()) {
    if (!q.enabled()) continue;
    out.insert(q.slot.name);
    if (labels) (*labels)[q.slot.name] = QuantizerLabel(q);
  }
  return out;
}

// Every quantizer name of the model matching `re` with one of `suffixes`.
std::set<std::string> Expected(const Model& model, const std::string& module_re, std::vector<std::string> suffixes) {
  std::set<std::string> out;
  const std::regex re(module_re);
  for (const auto& m : model.modules()) {
    if (!std::regex_match(m.name, re)) continue;
    for (const auto& s : suffixes) out.insert(m.name + "." + s);
  }
  return out;
}

std::set<std::string> Union(std::set<std::string> a, const std::set<std::string>& b) {
  a.insert(b.begin(), b.end());
  return a;
}

const std::vector<std::string> kWI = {"weight_quantizer", "input_quantizer"};
const std::vector<std::string> kKV = {"k_bmm_quantizer", "v_bmm_quantizer"};

TEST(Plan, Qwen2MoeSelectiveRecipes) {
  if (!fs::exists(fs::path(QF_SHARED_DIR) / "data/models/qwen2moe-25M")) GTEST_SKIP();
  auto m = LoadLazy("qwen2moe-25M");
  const auto kv = Expected(*m, R"(model\.layers\.\d+\.self_attn)", kKV);
  const auto experts = Expected(*m, R"(model\.layers\.\d+\.mlp\.experts\.\d+\.(gate|up|down)_proj)", kWI);
  const auto shared = Expected(*m, R"(model\.layers\.\d+\.mlp\.shared_expert\.(gate|up|down)_proj)", kWI);
  const auto attn = Expected(*m, R"(model\.layers\.\d+\.self_attn\.[qkvo]_proj)", kWI);
  const auto o = Expected(*m, R"(model\.layers\.\d+\.self_attn\.o_proj)", kWI);
  EXPECT_EQ(experts.size(), 4u * 8 * 3 * 2);

  EXPECT_EQ(Enabled(*m, "nvfp4_experts_only-kv_fp8", nullptr), Union(experts, kv));
  EXPECT_EQ(Enabled(*m, "nvfp4_mlp_only-kv_fp8", nullptr), Union(Union(experts, shared), kv));
  EXPECT_EQ(Enabled(*m, "nvfp4_omlp_only-kv_fp8", nullptr), Union(Union(Union(experts, shared), o), kv));
  EXPECT_EQ(Enabled(*m, "nvfp4_default-kv_fp8", nullptr), Union(Union(Union(experts, shared), attn), kv));
  std::map<std::string, std::string> labels;
  EXPECT_EQ(Enabled(*m, "fp8_qkvo-nvfp4_mlp", &labels), Union(Union(experts, shared), attn));
  EXPECT_EQ(labels.at("model.layers.0.self_attn.q_proj.weight_quantizer"), "fp8");
  EXPECT_EQ(labels.at("model.layers.3.mlp.experts.7.down_proj.input_quantizer"), "nvfp4");
}

TEST(Plan, MixtralStyleAndDenseModels) {
  if (!fs::exists(fs::path(QF_SHARED_DIR) / "data/models/llama-dense-26M")) GTEST_SKIP();
  auto dense = LoadLazy("llama-dense-26M");
  const auto kv = Expected(*dense, R"(model\.layers\.\d+\.self_attn)", kKV);
  const auto mlp = Expected(*dense, R"(model\.layers\.\d+\.mlp\.(gate|up|down)_proj)", kWI);
  EXPECT_EQ(Enabled(*dense, "nvfp4_experts_only-kv_fp8", nullptr), kv);  // no experts: KV only
  EXPECT_EQ(Enabled(*dense, "nvfp4_mlp_only-kv_fp8", nullptr), Union(mlp, kv));

  auto mix = LoadLazy("stories260K-moe-upcycled/hf");
  const auto w = Expected(*mix, R"(model\.layers\.\d+\.block_sparse_moe\.experts\.\d+\.w[123])", kWI);
  const auto mkv = Expected(*mix, R"(model\.layers\.\d+\.self_attn)", kKV);
  EXPECT_EQ(Enabled(*mix, "nvfp4_experts_only-kv_fp8", nullptr), Union(w, mkv));
  // The router block_sparse_moe.gate stays off in every recipe.
  for (const auto& r : {"nvfp4_default-kv_fp8", "nvfp4_mlp_only-kv_fp8", "fp8_default-kv_fp8"}) {
    for (const auto& n : Enabled(*mix, r, nullptr)) {
      EXPECT_EQ(n.find("block_sparse_moe.gate."), std::string::npos) << r << ": " << n;
      EXPECT_EQ(n.find("lm_head"), std::string::npos) << r << ": " << n;
      EXPECT_EQ(n.find("embed_tokens"), std::string::npos) << r << ": " << n;
    }
  }
}

}  // namespace
}  // namespace qforge
