// Host weight access: LinearWeightInto and StoredLinearWeight give LinearWeight's values for streamed,
// resident, overridden and router weights.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "qforge/model/model.h"

namespace qforge {
namespace {

const std::filesystem::path kModels = std::filesystem::path(QF_SHARED_DIR) / "data" / "models";

bool SameBits(std::span<const float> a, std::span<const float> b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

TEST(ModelWeights, IntoAndStoredMatchLinearWeight) {
  ModelLoadOptions lazy;
  lazy.load_all_layers = false;
  auto m = Model::Load(kModels / "qwen2moe-25M", lazy);  // bf16 weights, routers, shared-expert gates
  int checked = 0, routers = 0;
  for (int id : m->linear_modules()) {
    const ModuleInfo& mi = m->modules()[static_cast<size_t>(id)];
    if (mi.layer > 1) continue;
    const Tensor want = m->LinearWeight(id);
    std::vector<float> got(static_cast<size_t>(mi.out_features * mi.in_features));
    m->LinearWeightInto(id, got);
    EXPECT_TRUE(SameBits(got, want.span<float>())) << mi.name;
    const Tensor stored = m->StoredLinearWeight(id);
    EXPECT_EQ(stored.ToF32().numel(), want.numel()) << mi.name;
    EXPECT_TRUE(SameBits(stored.ToF32().span<float>(), want.span<float>())) << mi.name;
    routers += mi.role == LinearRole::kRouter;
    ++checked;
  }
  EXPECT_GT(routers, 0);
  EXPECT_GT(checked, 20);
  // An override wins everywhere; a resident layer is a held weight.
  const int q = m->FindModule("model.layers.0.self_attn.q_proj");
  EXPECT_FALSE(m->HasHostWeight(q));
  Tensor w = m->LinearWeight(q).Clone();
  for (float& v : w.mutable_span<float>()) v *= 3.f;
  const int64_t version = m->weight_version(q);
  m->SetLinearWeight(q, w);
  EXPECT_GT(m->weight_version(q), version);
  EXPECT_TRUE(m->HasHostWeight(q));
  std::vector<float> got(static_cast<size_t>(w.numel()));
  m->LinearWeightInto(q, got);
  EXPECT_TRUE(SameBits(got, w.span<float>()));
  EXPECT_TRUE(SameBits(m->StoredLinearWeight(q).span<float>(), w.span<float>()));
  m->RestoreLinearWeight(q);
  m->LoadLayer(1);
  EXPECT_TRUE(m->HasHostWeight(m->FindModule("model.layers.1.self_attn.o_proj")));
  std::vector<float> small(3);
  EXPECT_THROW(m->LinearWeightInto(q, small), Error);
}

}  // namespace
}  // namespace qforge
