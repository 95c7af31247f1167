// Tests for shared-state group discovery (spec §8.3) on real module layouts.
#include "qforge/quant/shared_state.h"

#include <gtest/gtest.h>

#include "qforge/base/error.h"
#include "qforge/config/algorithm_config.h"

namespace qforge {
namespace {

std::vector<SharedGroup> Find(const std::vector<std::string>& modules, const std::set<std::string>& lists = {}) {
  return FindSharedGroups(CompilePatterns(config::DefaultSharedPatterns()), modules, lists);
}

TEST(SharedState, GroupsQkvAndGateUpPerLayerButNotSharedExpertGate) {
  auto g = Find({"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.k_proj",
                 "model.layers.0.self_attn.v_proj", "model.layers.0.self_attn.o_proj",
                 "model.layers.0.mlp.gate_proj", "model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj",
                 "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj",
                 "model.layers.0.mlp.shared_expert_gate"},
                {"model.layers"});
  ASSERT_EQ(g.size(), 3u);
  EXPECT_EQ(g[0].parent, "model.layers.0.self_attn");
  EXPECT_EQ(g[0].members.size(), 3u);
  EXPECT_EQ(g[1].parent, "model.layers.0.mlp");
  EXPECT_EQ(g[2].parent, "model.layers.1.self_attn");
  EXPECT_EQ(g[2].members.size(), 2u);
}

TEST(SharedState, MixtralExpertsGroupPerExpert) {
  auto g = Find({"model.layers.0.block_sparse_moe.experts.0.w1", "model.layers.0.block_sparse_moe.experts.0.w2",
                 "model.layers.0.block_sparse_moe.experts.0.w3", "model.layers.0.block_sparse_moe.experts.1.w1",
                 "model.layers.0.block_sparse_moe.experts.1.w3"},
                {"model.layers", "model.layers.0.block_sparse_moe.experts"});
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].parent, "model.layers.0.block_sparse_moe.experts.0");
  EXPECT_EQ(g[1].members[1], "model.layers.0.block_sparse_moe.experts.1.w3");
}

TEST(SharedState, ParentClimbsPastModuleLists) {
  // Across-experts pattern: the common ancestor is the ModuleList itself, so the state goes to its parent.
  auto groups = FindSharedGroups(CompilePatterns({R"((?:(.*)\.)?(?:experts|local_experts)\.\d+\.(?:w1|w3))"}),
                                 {"moe.experts.0.w1", "moe.experts.1.w1", "moe.experts.1.w3"}, {"moe.experts"});
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0].parent, "moe");
}

TEST(SharedState, PopulateTakesMaxIgnoringMissing) {
  EXPECT_EQ(PopulateGlobalAmax({1.0f, std::nullopt, 3.0f}), 3.0f);
  EXPECT_FALSE(PopulateGlobalAmax({std::nullopt}).has_value());
  EXPECT_THROW(CompilePatterns({"(unclosed"}), Error);
}

}  // namespace
}  // namespace qforge
