// Tests of the embedded library against ModelOpt's published files (read from ../shared as test data).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "qforge/base/log.h"
#include "qforge/base/strings.h"
#include "qforge/config/builtin_library.h"
#include "qforge/config/presets.h"
#include "qforge/config/yaml_loader.h"

namespace qforge::config {
namespace {
namespace fs = std::filesystem;

fs::path SharedRecipes() { return fs::path(QF_SHARED_DIR) / "data" / "modelopt_recipes"; }

LoaderOptions SharedOnly() {
  LoaderOptions o;
  o.base_dir = SharedRecipes();
  o.use_builtin = false;
  return o;
}

LoaderOptions BuiltinOnly() {
  LoaderOptions o;
  o.base_dir = "/nonexistent-qforge-test-dir";
  return o;
}

// Every published YAML loads: PTQ kinds validate and normalize, other schemas are recognised.
TEST(SharedRecipes, EveryFileLoadsOrIsRecognisedAsNotPtq) {
  ASSERT_TRUE(fs::is_directory(SharedRecipes())) << SharedRecipes();
  int ptq = 0, other = 0;
  for (const auto& e : fs::recursive_directory_iterator(SharedRecipes())) {
    if (!e.is_regular_file() || e.path().extension() != ".yaml") continue;
    std::string rel = fs::relative(e.path(), SharedRecipes()).string();
    ScopedLogCapture quiet;
    YamlFileReport rep;
    ASSERT_NO_THROW(rep = LoadAnyYaml(rel, SharedOnly())) << rel;
    if (rep.is_ptq) {
      ++ptq;
      EXPECT_FALSE(rep.normalized.is_null()) << rel;
    } else {
      ++other;
      EXPECT_FALSE(rep.note.empty()) << rel;
    }
    // PTQ directories by convention hold only PTQ files; speculative / distillation ones never are.
    if (StartsWith(rel, "general/speculative_decoding") || StartsWith(rel, "general/distillation")) {
      EXPECT_FALSE(rep.is_ptq) << rel;
    }
    if (StartsWith(rel, "configs/numerics") || StartsWith(rel, "configs/ptq") || StartsWith(rel, "general/ptq")) {
      EXPECT_TRUE(rep.is_ptq) << rel << " kind " << rep.kind;
    }
  }
  EXPECT_GE(ptq, 120);
  EXPECT_GE(other, 10);
}

Json NormalizedBuiltinOrShared(const std::string& rel_no_suffix, const LoaderOptions& o) {
  ScopedLogCapture quiet;
  Json n = NormalizedContent(rel_no_suffix, o);
  if (n.is_object() && n.contains("metadata")) n["metadata"].erase("description");  // qforge's own prose
  return n;
}

// Where an embedded file shares a name with a published one, the normalized contents are equal.
TEST(BuiltinLibrary, EqualsPublishedFilesOfTheSameName) {
  int compared = 0;
  for (const auto& f : BuiltinFiles()) {
    std::string rel = f.path;
    if (!fs::exists(SharedRecipes() / rel)) continue;
    std::string name = rel.substr(0, rel.size() - 5);
    Json ours, theirs;
    ASSERT_NO_THROW(ours = NormalizedBuiltinOrShared(name, BuiltinOnly())) << name;
    ASSERT_NO_THROW(theirs = NormalizedBuiltinOrShared(name, SharedOnly())) << name;
    EXPECT_TRUE(JsonEqual(ours, theirs)) << name << "\nours:   " << ours.dump() << "\ntheirs: " << theirs.dump();
    ++compared;
  }
  EXPECT_GE(compared, 130);
}

TEST(BuiltinLibrary, SeedNamesResolveToReleasedRecipes) {
  for (const char* base : {"fp8_default", "nvfp4_default", "nvfp4_experts_only", "nvfp4_mlp_only", "nvfp4_omlp_only"}) {
    Recipe old_name = LoadRecipe(std::string("general/ptq/") + base + "-fp8_kv", BuiltinOnly());
    Recipe new_name = LoadRecipe(std::string("general/ptq/") + base + "-kv_fp8", BuiltinOnly());
    EXPECT_TRUE(JsonEqual(old_name.Normalized(), new_name.Normalized())) << base;
  }
}

TEST(BuiltinLibrary, Fp8QkvoNvfp4MlpIsAListWithDenyAllFirst) {
  Recipe r = LoadRecipe("general/ptq/fp8_qkvo-nvfp4_mlp", BuiltinOnly());
  ASSERT_TRUE(r.quantize);
  const auto& l = r.quantize->quant_cfg;
  ASSERT_GT(l.size(), 12u);
  EXPECT_EQ(l[0].quantizer_name, "*");
  EXPECT_FALSE(l[0].enable);
  EXPECT_FALSE(l[0].cfg);
  int fp8 = 0;
  for (const char* p : {"q", "k", "v", "o"}) {
    for (const char* k : {"weight", "input"}) {
      const auto& e = FindQuantCfgEntryByPath(l, fmt::format("*{}_proj*{}_quantizer", p, k));
      ASSERT_TRUE(e.cfg);
      EXPECT_TRUE(e.cfg->items[0].num_bits.IsTuple(4, 3));
      ++fp8;
    }
  }
  EXPECT_EQ(fp8, 8);
  EXPECT_TRUE(FindQuantCfgEntryByPath(l, "*mlp*weight_quantizer").cfg->items[0].num_bits.IsTuple(2, 1));
  EXPECT_TRUE(FindQuantCfgEntryByPath(l, "*block_sparse_moe*input_quantizer").cfg->items[0].num_bits.IsTuple(2, 1));
  EXPECT_EQ(l.back().parent_class.value_or(""), "nn.Embedding");
}

// load -> normalize -> YAML -> load gives the same normalized recipe, for every built-in recipe.
TEST(BuiltinLibrary, RoundTripThroughYaml) {
  fs::path dir = fs::temp_directory_path() / ("qforge_roundtrip_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  int n = 0;
  for (const auto& listing : ListBuiltinRecipes()) {
    Recipe r = LoadRecipe(listing.name, BuiltinOnly());
    if (!r.is_ptq()) continue;
    Json norm = r.Normalized();
    fs::path file = dir / (std::to_string(n++) + ".yaml");
    std::ofstream(file) << ToYaml(norm);
    Recipe back = LoadRecipe(file.string(), BuiltinOnly());
    EXPECT_TRUE(JsonEqual(back.Normalized(), norm)) << listing.name << "\n" << ToYaml(norm);
  }
  EXPECT_GE(n, 25);
  fs::remove_all(dir);
}

TEST(BuiltinLibrary, ListHasDescriptions) {
  auto list = ListBuiltinRecipes();
  EXPECT_GE(list.size(), 30u);
  for (const auto& r : list) EXPECT_FALSE(r.description.empty()) << r.name;
}

TEST(Presets, QformatVocabularyMatchesSpec) {
  auto m = ModelQformatChoices();
  EXPECT_EQ(m.size(), 34u);
  EXPECT_EQ(KvQformatChoices(), (std::vector<std::string>{"fp8", "fp8_affine", "fp8_cast", "nvfp4", "nvfp4_affine",
                                                          "nvfp4_cast", "nvfp4_rotate"}));
}

TEST(Presets, ResolveQformatAppendsKvEntriesLast) {
  QuantizeConfig c = ResolveQformat("nvfp4", "fp8");
  QuantizeConfig base = LoadModelPreset("nvfp4");
  ASSERT_EQ(c.quant_cfg.size(), base.quant_cfg.size() + 1);
  EXPECT_EQ(c.quant_cfg.back().quantizer_name, "*[kv]_bmm_quantizer");
  EXPECT_EQ(c.algorithm.ToJson(), Json("max"));
  EXPECT_EQ(ResolveQformat("fp8", "none").quant_cfg.size(), LoadModelPreset("fp8").quant_cfg.size());
  ScopedLogCapture cap;
  EXPECT_EQ(LoadModelPreset("int8_sq").algorithm.ToJson(), Json("smoothquant"));
  EXPECT_TRUE(cap.Contains("deprecated") || cap.Contains("removed alias"));
  EXPECT_THROW(ResolveQformat("nvfp5", "fp8"), Error);
  EXPECT_THROW(ResolveQformat("nvfp4", "fp9"), Error);
}

}  // namespace
}  // namespace qforge::config

namespace qforge::config {
namespace {

TEST(BuiltinLibrary, MisspelledRecipeNameGetsASuggestion) {
  try {
    LoadRecipe("general/ptq/nvfp4_experts_onyl-kv_fp8", BuiltinOnly());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("did you mean 'general/ptq/nvfp4_experts_only-kv_fp8'"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace qforge::config
