// Plans say which quant_cfg entries match no quantizer, and refuse configs that quantize nothing.
#include "qforge/quant/plan.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "qforge/base/error.h"
#include "qforge/config/presets.h"
#include "qforge/config/yaml_loader.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using config::Json;

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

std::unique_ptr<Model> Tiny(const std::string& name) {
  ModelLoadOptions o;
  o.load_all_layers = false;
  return Model::Load(fs::path(QF_SHARED_DIR) / "data/models/tiny" / name, o);
}

TEST(PlanUnmatched, ListsEntriesThatMatchNoQuantizer) {
  auto m = Tiny("qwen2");
  const config::QuantCfgList cfg = config::NormalizeQuantCfgList(Json::parse(R"([
      {"quantizer_name": "*", "enable": false},
      {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": [4, 3]}},
      {"quantizer_name": "*mlp.gate.*", "enable": false},
      {"quantizer_name": "*wieght_quantizer", "enable": false},
      {"quantizer_name": "*", "parent_class": "nn.Conv2d", "enable": false}])"));
  QuantState s = QuantState::ForModel(*m);
  s.Apply(cfg);
  EXPECT_EQ(UnmatchedEntries(cfg, s), (std::vector<size_t>{2, 3, 4}));
  const std::string note = UnmatchedEntriesNote(cfg, s);
  EXPECT_HAS(note, "3 of 5 quant_cfg entries match no quantizer of this model");
  EXPECT_HAS(note, "[3] '*wieght_quantizer'");
  EXPECT_HAS(note, "[4] '*' (parent_class nn.Conv2d)");
  EXPECT_HAS(PlanToText(*m, s, true, &cfg), note);
  const auto j = PlanToJson(*m, s, &cfg);
  ASSERT_EQ(j["summary"]["unmatched_entries"].size(), 3u);
  EXPECT_EQ(j["summary"]["unmatched_entries"][1]["quantizer_name"], "*wieght_quantizer");
  // Without the list the plan is unchanged.
  EXPECT_EQ(PlanToText(*m, s, true).find("note:"), std::string::npos);
  EXPECT_FALSE(PlanToJson(*m, s)["summary"].contains("unmatched_entries"));
}

TEST(PlanUnmatched, EveryEntryOfNvfp4MatchesOnAMoeModelButRoutersOnlyThere) {
  // ModelOpt's defaults name routers; on a dense model those entries match nothing (a note, not an error).
  const config::QuantizeConfig q = config::ResolveQformat("nvfp4", "fp8");
  auto dense = Tiny("qwen2");
  QuantState s = QuantState::ForModel(*dense);
  s.Apply(q.quant_cfg);
  const auto dense_unmatched = UnmatchedEntries(q.quant_cfg, s);
  EXPECT_FALSE(dense_unmatched.empty());
  EXPECT_NO_THROW(CheckSomethingQuantized(q.quant_cfg, s, "--qformat nvfp4"));
}

TEST(PlanRefuses, EmptyQuantCfgOrNothingEnabled) {
  auto m = Tiny("qwen2");
  QuantState s = QuantState::ForModel(*m);
  const config::QuantCfgList empty;
  s.Apply(empty);
  try {
    CheckSomethingQuantized(empty, s, "recipe 'x.yaml'");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "recipe 'x.yaml': quant_cfg is empty");
  }
  const config::QuantCfgList off = config::NormalizeQuantCfgList(Json::parse(R"([
      {"quantizer_name": "*", "enable": false},
      {"quantizer_name": "*lm_head*", "cfg": {"num_bits": [4, 3]}, "enable": false}])"));
  s.Apply(off);
  try {
    CheckSomethingQuantized(off, s, "recipe 'y.yaml'");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_HAS(std::string(e.what()), "recipe 'y.yaml': its 2 quant_cfg entries enable no quantizer of this model");
  }
}

}  // namespace
}  // namespace qforge
