// Tests of the YAML loader: scalars, documents, imports, recipes and their error messages.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "qforge/base/log.h"
#include "qforge/config/yaml_loader.h"

namespace qforge::config {
namespace {
namespace fs = std::filesystem;

class Tree : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("qforge_yaml_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& rel, const std::string& text) {
    fs::create_directories((dir_ / rel).parent_path());
    std::ofstream(dir_ / rel) << text;
  }
  LoaderOptions Opts(bool builtin = false) {
    LoaderOptions o;
    o.base_dir = dir_;
    o.use_builtin = builtin;
    return o;
  }
  std::string ErrorOf(const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  }
  fs::path dir_;
};

TEST(Yaml, ScalarsLikePyYaml) {
  Json j = ParseYaml("a: yes\nb: off\nc: ~\nd: 1.5\ne: '8'\nf: 0x10\ng: 1e-3\nh: e4m3\n-1: 16\ni:\nj: .inf\n");
  EXPECT_EQ(j["a"], true);
  EXPECT_EQ(j["b"], false);
  EXPECT_TRUE(j["c"].is_null());
  EXPECT_EQ(j["d"], 1.5);
  EXPECT_EQ(j["e"], "8");
  EXPECT_EQ(j["f"], 16);
  EXPECT_DOUBLE_EQ(j["g"].get<double>(), 1e-3);
  EXPECT_EQ(j["h"], "e4m3");  // ExMy conversion only under num_bits / scale_bits, by the loader
  EXPECT_EQ(j["-1"], 16);
  EXPECT_TRUE(j["i"].is_null());
  EXPECT_TRUE(std::isinf(j["j"].get<double>()));
  EXPECT_THROW(ParseYaml("a: [1, 2\n", "bad.yaml"), Error);
}

TEST(Yaml, ToYamlRoundTripsAwkwardValues) {
  Json v = Json::parse(R"({"s": "true", "star": "*weight_quantizer", "n": "null", "num": "16", "f": 16.0, "g": 0.1,
                            "blocks": {"-1": 16, "type": "dynamic"}, "t": [4, 3], "e": [], "o": {}, "z": null,
                            "q": "it's \"quoted\"", "multi": "a\nb"})");
  Json back = ParseYaml(ToYaml(v));
  EXPECT_TRUE(JsonEqual(back, v)) << ToYaml(v) << "\n" << back.dump();
  EXPECT_TRUE(back["f"].is_number_float());
}

TEST_F(Tree, ExMyImportsAndDocuments) {
  Write("num/fp4.yaml", "# header comment\n\n# modelopt-schema: modelopt.torch.quantization.config.QuantizerAttributeConfig\n"
                        "num_bits: e2m1\nblock_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}\n");
  Write("units/w.yaml", "# modelopt-schema: modelopt.torch.quantization.config.QuantizerCfgListConfig\n"
                        "imports:\n  fp4: num/fp4\n---\n- quantizer_name: '*weight_quantizer'\n  cfg:\n    $import: fp4\n");
  Write("preset.yaml", "# modelopt-schema: modelopt.torch.quantization.config.QuantizeConfig\nimports:\n  w: units/w\n"
                       "algorithm: max\nquant_cfg:\n  - quantizer_name: '*'\n    enable: false\n  - $import: w\n");
  LoadedConfig c = LoadConfig("preset", std::nullopt, Opts());
  EXPECT_EQ(c.schema, Schema::kQuantizeConfig);
  QuantizeConfig q = QuantizeConfig::FromJson(c.value);
  ASSERT_EQ(q.quant_cfg.size(), 2u);
  EXPECT_TRUE(q.quant_cfg[1].cfg->items[0].num_bits.IsTuple(2, 1));
  EXPECT_TRUE(q.quant_cfg[1].cfg->items[0].block_sizes->scale_bits->IsTuple(4, 3));
}

TEST_F(Tree, CircularImportsAreDetected) {
  Write("a.yaml", "# modelopt-schema: modelopt.torch.quantization.config.QuantizerCfgListConfig\nimports:\n  b: b\n---\n- $import: b\n");
  Write("b.yaml", "# modelopt-schema: modelopt.torch.quantization.config.QuantizerCfgListConfig\nimports:\n  a: a\n---\n- $import: a\n");
  std::string e = ErrorOf([&] { LoadConfig("a", std::nullopt, Opts()); });
  EXPECT_NE(e.find("Circular import detected"), std::string::npos) << e;
}

TEST_F(Tree, ImportErrorsNameTheFile) {
  Write("noschema.yaml", "num_bits: 8\n");
  Write("r.yaml", "imports:\n  n: noschema\nmetadata:\n  recipe_type: ptq\nquantize:\n  quant_cfg:\n    - quantizer_name: '*'\n      cfg:\n        $import: n\n");
  std::string e = ErrorOf([&] { LoadRecipe("r.yaml", Opts()); });
  EXPECT_NE(e.find("modelopt-schema"), std::string::npos) << e;
  EXPECT_NE(e.find("noschema"), std::string::npos) << e;
  Write("m.yaml", "imports:\n  n: missing/file\nmetadata:\n  recipe_type: ptq\nquantize: {}\n");
  e = ErrorOf([&] { LoadRecipe("m.yaml", Opts()); });
  EXPECT_NE(e.find("missing/file"), std::string::npos) << e;
  EXPECT_NE(e.find("m.yaml"), std::string::npos) << e;
  Write("u.yaml", "# modelopt-schema: modelopt.torch.quantization.config.QuantizerCfgListConfig\n- quantizer_name: '*'\n  enable: false\n");
  Write("untyped.yaml", "imports:\n  u: u\nmetadata:\n  recipe_type: ptq\nquantize:\n  algorithm: [{$import: u}]\n");
  e = ErrorOf([&] { LoadRecipe("untyped.yaml", Opts()); });
  EXPECT_NE(e.find("typed list schema"), std::string::npos) << e;
  // An empty import path: ModelOpt's wording.
  Write("empty.yaml", "imports:\n  n: ''\nmetadata:\n  recipe_type: ptq\nquantize: {}\n");
  e = ErrorOf([&] { LoadRecipe("empty.yaml", Opts()); });
  EXPECT_NE(e.find("Import 'n' has an empty config path."), std::string::npos) << e;
}

TEST_F(Tree, BadRecipeErrorsSayWhereAndWhat) {
  Write("typo.yaml", "metadata:\n  recipe_type: ptq\nquantize:\n  algorithm: max\n  quant_cfg:\n"
                     "    - quantizer_name: '*'\n      enable: false\n    - quantizer_name: '*weight_quantizer'\n"
                     "      cfg: {num_bits: 4, axis: 0, block_sizes: {-1: 128}}\n");
  std::string e = ErrorOf([&] { LoadRecipe("typo.yaml", Opts()); });
  EXPECT_NE(e.find("typo.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("quant_cfg[1].cfg"), std::string::npos) << e;
  EXPECT_NE(e.find("axis must be None when block_sizes is not None"), std::string::npos) << e;
  Write("lw.yaml", "metadata:\n  recipe_type: ptq\nquantize:\n  algorithm:\n    method: max\n    layerwise: {enable: true, checkpoint_dir: /a}\n"
                   "    layerwise_checkpoint_dir: /b\n  quant_cfg: []\n");
  ScopedLogCapture cap;
  e = ErrorOf([&] { LoadRecipe("lw.yaml", Opts()); });
  EXPECT_NE(e.find("Conflicting checkpoint_dir"), std::string::npos) << e;
  EXPECT_NE(e.find("quantize.algorithm"), std::string::npos) << e;
  Write("wrongtype.yaml", "metadata:\n  recipe_type: ptq\nquantize:\n  quant_cfg:\n    - quantizer_name: '*'\n      enable: 'no'\n");
  e = ErrorOf([&] { LoadRecipe("wrongtype.yaml", Opts()); });
  EXPECT_NE(e.find("quant_cfg[0].enable"), std::string::npos) << e;
  EXPECT_NE(e.find("expected a bool"), std::string::npos) << e;
}

TEST_F(Tree, Seed004PtqCfgLegacyFlatDict) {
  Write("old.yml", "metadata:\n  recipe_type: ptq\n  description: old style\nptq_cfg:\n  algorithm: max\n  quant_cfg:\n"
                   "    '*mlp*weight_quantizer': {num_bits: e2m1, block_sizes: {-1: 16, type: dynamic, scale_bits: e4m3}}\n"
                   "    '*q_proj*weight_quantizer': {num_bits: e4m3, axis: }\n"
                   "    default: {enable: false}\n");
  ScopedLogCapture cap;
  Recipe r = LoadRecipe("old", Opts());
  ASSERT_TRUE(r.quantize);
  ASSERT_EQ(r.quantize->quant_cfg.size(), 3u);
  EXPECT_EQ(r.quantize->quant_cfg[2].quantizer_name, "*");  // in place: disables what came before (§13 Q1)
  EXPECT_TRUE(cap.Contains("deprecated"));
  EXPECT_EQ(cap.Messages().size(), 1u);  // warned once, not once per validation pass
}

TEST_F(Tree, DirectoryRecipeAndPeek) {
  Write("d/metadata.yaml", "recipe_type: ptq\n");
  Write("d/quantize.yaml", "algorithm: null\nquant_cfg:\n  - quantizer_name: '*'\n    enable: false\n");
  Recipe r = LoadRecipe("d", Opts());
  EXPECT_EQ(r.description, "Model optimization recipe.");
  EXPECT_TRUE(r.quantize->algorithm.is_null());
  RecipeInfo info = PeekRecipe("d", Opts());
  EXPECT_TRUE(info.is_recipe);
  Write("spec.yaml", "metadata:\n  recipe_type: speculative_eagle\neagle: {}\n");
  YamlFileReport rep = LoadAnyYaml("spec.yaml", Opts());
  EXPECT_FALSE(rep.is_ptq);
  EXPECT_EQ(rep.kind, "speculative_eagle recipe");
}

TEST_F(Tree, BuiltinFirstForRecipesFilesystemFirstForImports) {
  // A local file named like a built-in recipe does not shadow the built-in one...
  Write("general/ptq/fp8_default-kv_fp8.yaml", "metadata:\n  recipe_type: ptq\nquantize:\n  quant_cfg: []\n");
  Recipe r = LoadRecipe("general/ptq/fp8_default-kv_fp8", Opts(true));
  EXPECT_GT(r.quantize->quant_cfg.size(), 20u);
  // ...but an import path is resolved on the filesystem first.
  Write("configs/numerics/fp8.yaml", "# modelopt-schema: modelopt.torch.quantization.config.QuantizerAttributeConfig\nnum_bits: 8\n");
  Write("x.yaml", "imports:\n  fp8: configs/numerics/fp8\nmetadata:\n  recipe_type: ptq\nquantize:\n  quant_cfg:\n"
                  "    - quantizer_name: '*'\n      cfg: {$import: fp8}\n");
  Recipe x = LoadRecipe("x.yaml", Opts(true));
  EXPECT_TRUE(x.quantize->quant_cfg[0].cfg->items[0].num_bits.kind == NumBitsValue::Kind::kInt);
}

}  // namespace
}  // namespace qforge::config

namespace qforge::config {
namespace {

TEST_F(Tree, CheckRecipeReportsEveryEntryError) {
  Write("bad.yaml", "metadata:\n  recipe_type: ptq\nquantize:\n  algorithm: {method: gptq, layerwise: {enable: true, save_quantizers_only: true}}\n"
                    "  quant_cfg:\n    - quantizer_name: '*'\n      enable: false\n"
                    "    - quantizer_name: '*weight_quantizer'\n      cfg: {num_bits: e2m1, block_sizes: {-1: 16, typ: dynamic}}\n"
                    "    - quantizer_nam: '*input_quantizer'\n      enable: false\n"
                    "    - quantizer_name: '*lm_head*'\n      cfg: {}\n");
  std::vector<std::string> errors = CheckRecipe("bad.yaml", Opts());
  ASSERT_EQ(errors.size(), 4u);
  EXPECT_NE(errors[0].find("mutates layer weights in-place"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("quant_cfg[1].cfg.block_sizes"), std::string::npos) << errors[1];
  EXPECT_NE(errors[1].find("did you mean 'type'"), std::string::npos) << errors[1];
  EXPECT_NE(errors[2].find("quant_cfg[2]"), std::string::npos) << errors[2];
  EXPECT_NE(errors[2].find("did you mean 'quantizer_name'"), std::string::npos) << errors[2];
  EXPECT_NE(errors[3].find("quant_cfg[3]"), std::string::npos) << errors[3];
  for (const auto& e : errors) EXPECT_NE(e.find("bad.yaml"), std::string::npos) << e;
  Write("good.yaml", "metadata:\n  recipe_type: ptq\nquantize:\n  quant_cfg:\n    - quantizer_name: '*'\n      enable: false\n");
  EXPECT_TRUE(CheckRecipe("good.yaml", Opts()).empty());
}

}  // namespace
}  // namespace qforge::config

namespace qforge::config {
namespace {

TEST_F(Tree, DotlistOverrides) {
  Write("r.yaml", "metadata:\n  recipe_type: ptq\nquantize:\n  algorithm: max\n  quant_cfg:\n    - quantizer_name: '*'\n      enable: false\n");
  Recipe r = LoadRecipe("r.yaml", Opts(), {"quantize.algorithm={method: mse, fp8_scale_sweep: true}", "quantize.quant_cfg.0.enable=true"});
  EXPECT_EQ(r.quantize->algorithm.configs.at(0).method(), "mse");
  EXPECT_TRUE(r.quantize->quant_cfg[0].enable);
  EXPECT_THROW(LoadRecipe("r.yaml", Opts(), {"quantize.algorithm"}), Error);
  EXPECT_THROW(LoadRecipe("r.yaml", Opts(), {"quantize.quant_cfg.5.enable=true"}), Error);
  std::string e = ErrorOf([&] { LoadRecipe("r.yaml", Opts(), {"quantize.algorithm=msee"}); });
  EXPECT_NE(e.find("did you mean 'mse'"), std::string::npos) << e;
  e = ErrorOf([&] { LoadRecipe("r.yaml", Opts(), {"quantize.algorithm.method=mse"}); });
  EXPECT_NE(e.find("cannot descend into str"), std::string::npos) << e;
}

// Billion laughs: nine levels of aliases, each repeating the previous anchor nine times (9^9 values).
TEST(YamlLimits, AliasExpansionIsBounded) {
  std::string y = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n";
  std::string prev = "a";
  for (char c = 'b'; c <= 'i'; ++c) {
    y += std::string(1, c) + ": &" + c + " [";
    for (int k = 0; k < 9; ++k) y += (k ? ", *" : "*") + prev;
    y += "]\n";
    prev = std::string(1, c);
  }
  try {
    ParseYaml(y, "laughs.yaml");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("laughs.yaml"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("billion laughs"), std::string::npos) << e.what();
  }
  // Aliases that expand to a modest tree are fine.
  Json ok = ParseYaml("x: &x {num_bits: 8}\ny: [*x, *x]\n");
  EXPECT_EQ(ok["y"][1]["num_bits"], 8);
}

TEST(YamlLimits, AliasInsideItsOwnAnchorIsAnErrorNotAStackOverflow) {
  // yaml-cpp registers the anchor before the collection's content, so this is a cycle.
  for (const char* y : {"a: &a [*a]\n", "a: &a {b: *a}\n"}) {
    EXPECT_THROW(ParseYaml(y, "cycle.yaml"), Error) << y;
  }
}

TEST(YamlLimits, NestingDepthIsBounded) {
  for (int depth : {70, 1999, 100000}) {
    const std::string flow = std::string(depth, '[') + std::string(depth, ']');
    try {
      ParseYaml(flow, "deep.yaml");
      ADD_FAILURE() << "no error at depth " << depth;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("deep.yaml"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("nest deeper than 64"), std::string::npos) << e.what();
    }
  }
  std::string block;
  for (int i = 0; i < 3000; ++i) block += std::string(i, ' ') + "- \n";
  EXPECT_THROW(ParseYaml(block, "deep_block.yaml"), Error);
  EXPECT_NO_THROW(ParseYaml(std::string(60, '[') + std::string(60, ']')));
}

// Fuzzer reproducer (recipe_fuzzer timeout): yaml-cpp 0.7's LoadAll never returned on a document starting with
// ',' (it yields empty documents forever without consuming the token).
TEST(YamlLimits, StrayCommaIsAnErrorNotAnEndlessLoop) {
  for (const char* y : {",", " ,", "- a\n,", "a: 1\n---\n,", "# modelopt-schema: x\n, so recipes\n"}) {
    try {
      ParseYaml(y, "comma.yaml");
      ADD_FAILURE() << "no error for " << y;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("comma.yaml"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("','"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(ParseYaml("a: [1, 2]\nb: {c: 3, d: 4}\n")["b"]["d"], 4);  // commas inside flow collections are fine
}

TEST(YamlLimits, HugeAndOutOfRangeScalarsDoNotThrowStdExceptions) {
  Json j = ParseYaml("big: 0x1ffffffffffffffffffff\nint: 123456789012345678901234567890\nf: 1e999\ntiny: 1e-999\n");
  EXPECT_EQ(j["big"], "0x1ffffffffffffffffffff");  // beyond int64: kept as text
  EXPECT_EQ(j["int"], "123456789012345678901234567890");
  EXPECT_TRUE(std::isinf(j["f"].get<double>()));
  EXPECT_EQ(j["tiny"].get<double>(), 0.0);
  // A megabyte of digits would overflow the stack of std::regex; it stays a string.
  const std::string digits(1 << 20, '7');
  EXPECT_EQ(ParseYaml("n: " + digits + "\n")["n"], digits);
}

// Fuzzer reproducer (recipe_fuzzer): a quantizer_name holding byte 0x8D. yaml-cpp passes ill-formed UTF-8
// through, and the first error message that rendered the entry (Brief -> dump) threw type_error 316 out of
// LoadRecipe. Invalid UTF-8 is now refused up front, naming the file and byte offset.
TEST_F(Tree, InvalidUtf8IsAnErrorNamingTheOffset) {
  Write("r.yaml", "metadata: {recipe_type: ptq}\nquantize:\n  quant_cfg:\n    - quantizer_name: '*w\x8D'\n"
                  "      enable: 3\n");
  const std::string e = ErrorOf([&] { LoadRecipe("r.yaml", Opts()); });
  EXPECT_NE(e.find("r.yaml"), std::string::npos) << e;
  EXPECT_NE(e.find("not valid UTF-8: byte 0x8D at byte offset 77"), std::string::npos) << e;
  EXPECT_NO_THROW(ParseYaml("name: 'caf\xC3\xA9'\n"));
}

TEST_F(Tree, ImportsSplicedManyTimesAreBounded) {
  // A list snippet of 2000 entries spliced 1000 times: 2M values after resolution.
  std::string unit = "# modelopt-schema: modelopt.torch.quantization.config.QuantizerCfgListConfig\n";
  for (int i = 0; i < 2000; ++i) unit += "- {quantizer_name: 'q" + std::to_string(i) + "', enable: false}\n";
  Write("big.yaml", unit);
  std::string recipe = "imports:\n  big: big\nmetadata:\n  recipe_type: ptq\nquantize:\n  quant_cfg:\n";
  for (int i = 0; i < 1000; ++i) recipe += "    - $import: big\n";
  Write("r.yaml", recipe);
  const std::string e = ErrorOf([&] { LoadRecipe("r.yaml", Opts()); });
  EXPECT_NE(e.find("more than 1000000 values"), std::string::npos) << e;
}

TEST_F(Tree, RecipeFileReadsAreBounded) {
  // A 17 MB (sparse) file is refused after 16 MiB instead of being parsed.
  std::ofstream(dir_ / "huge.yaml") << "a: 1\n";
  fs::resize_file(dir_ / "huge.yaml", 17u << 20);
  const std::string e = ErrorOf([&] { LoadRecipe((dir_ / "huge.yaml").string(), Opts()); });
  EXPECT_NE(e.find("holds more than"), std::string::npos) << e;
}

}  // namespace
}  // namespace qforge::config
