// Tests of the export quant config: prefix-wildcard summary, vLLM exclude matching, both JSON shapes, parsing.
#include "qforge/export/quant_config.h"

#include <gtest/gtest.h>

#include "qforge/base/error.h"

namespace qforge::exporter {
namespace {

using Names = std::vector<std::string>;

std::vector<ModuleExport> Llama(int layers, ExportFormat attn, ExportFormat mlp, int gs = 16) {
  std::vector<ModuleExport> out;
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l);
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) out.push_back({p + ".self_attn." + n, attn, gs});
    for (const char* n : {"gate_proj", "up_proj", "down_proj"}) out.push_back({p + ".mlp." + n, mlp, gs});
  }
  out.push_back({"lm_head", ExportFormat::kNone, 0});
  return out;
}

TEST(ExportFormatTraits, TableIsInEnumOrderAndNamesRoundTrip) {
  for (const auto& t : AllExportFormats()) {
    EXPECT_EQ(&Traits(t.format), &t);
    EXPECT_EQ(ExportFormatFromName(t.name), t.format) << t.name;
    if (!t.quant_algo.empty()) {
      EXPECT_EQ(ExportFormatFromQuantAlgo(t.quant_algo), t.format) << t.quant_algo;
    }
  }
  // vLLM upper-cases quant_algo; ModelOpt writes fp8_pb_wo in lower case.
  EXPECT_EQ(ExportFormatFromQuantAlgo("FP8_PB_WO"), ExportFormat::kFp8PbWo);
  EXPECT_EQ(ExportFormatFromQuantAlgo("nvfp4"), ExportFormat::kNvfp4);
  EXPECT_FALSE(ExportFormatFromQuantAlgo("MIXED_PRECISION").has_value());
  EXPECT_FALSE(ExportFormatFromQuantAlgo("").has_value());
  EXPECT_EQ(KvCacheAlgoFromName("fp8"), KvCacheAlgo::kFp8);
  EXPECT_FALSE(KvCacheAlgoFromName("FP16").has_value());
}

TEST(PrefixWildcardSummary, SingleNameAndSubtree) {
  const Names q = {"model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj"};
  EXPECT_EQ(PrefixWildcardSummary({"lm_head"}, q), Names({"lm_head"}));
  // A whole unquantized layer collapses to one prefix wildcard.
  EXPECT_EQ(PrefixWildcardSummary({"model.layers.1.self_attn.q_proj", "model.layers.1.mlp.down_proj"}, q),
            Names({"model.layers.1*"}));
}

TEST(PrefixWildcardSummary, UsesThePairFormWhenTheStarWouldCoverANumericSibling) {
  // `model.layers.1*` would match the quantized layer 10, so ModelOpt emits `model.layers.1.*`.
  const Names q = {"model.layers.10.mlp.down_proj"};
  EXPECT_EQ(PrefixWildcardSummary({"model.layers.1.mlp.down_proj"}, q), Names({"model.layers.1.*"}));
}

TEST(PrefixWildcardSummary, FallsBackToTheExactNameAndCoversDuplicates) {
  const Names q = {"model.layers.0.mlp.experts.0.gate_proj", "model.layers.0.mlp.experts.0.up_proj"};
  EXPECT_EQ(PrefixWildcardSummary({"model.layers.0.mlp.gate", "lm_head"}, q),
            Names({"lm_head", "model.layers.0.mlp.gate"}));
  // A second name under an already emitted wildcard adds nothing; the result is sorted.
  EXPECT_EQ(PrefixWildcardSummary({"z.b.c", "a.x", "z.b.d"}, {"z.q"}), Names({"a*", "z.b*"}));
}

TEST(VllmExcludeMatch, ThreeRules) {
  // fnmatch
  EXPECT_EQ(VllmExcludeMatch("lm_head", "lm_head"), "fnmatch");
  EXPECT_EQ(VllmExcludeMatch("model.layers.12.mlp.down_proj", "model.layers.1*"), "fnmatch");
  // legacy substring: an exact router name inside a sibling's name
  EXPECT_NE(VllmExcludeMatch("model.layers.1.mlp.gate_proj", "model.layers.1.mlp.gate").find("substring"),
            std::string::npos);
  // substring after stripping the star, anywhere in the name
  EXPECT_NE(VllmExcludeMatch("language_model.model.layers.0.q_proj", "model.layers.0*").find("substring"),
            std::string::npos);
  // non-matches
  EXPECT_EQ(VllmExcludeMatch("model.layers.10.mlp.down_proj", "model.layers.1.*"), "");
  EXPECT_EQ(VllmExcludeMatch("model.layers.0.self_attn.q_proj", "lm_head"), "");
  EXPECT_TRUE(VllmIsExcluded("model.layers.3.x", {"lm_head", "model.layers.3*"}));
  EXPECT_FALSE(VllmIsExcluded("model.layers.3.x", {"lm_head"}));
}

TEST(BuildQuantConfig, SingleFormatNvfp4WritesModelOptsShapes) {
  QuantConfigInput in;
  in.modules = Llama(2, ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  in.kv_cache = KvCacheAlgo::kFp8;
  in.producer = {"modelopt", "0.47.0+qforge.test"};
  const HfQuantConfig c = BuildQuantConfig(in);
  EXPECT_EQ(c.quant_algo, "NVFP4");
  EXPECT_EQ(c.group_size, 16);
  ASSERT_TRUE(c.exclude_modules.has_value());
  EXPECT_EQ(*c.exclude_modules, Names({"lm_head"}));
  EXPECT_TRUE(c.quantized_layers.empty());

  const Json hf = ToHfQuantConfigJson(c);
  EXPECT_EQ(hf.dump(), Json::parse(R"({"producer": {"name": "modelopt", "version": "0.47.0+qforge.test"},
      "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": "FP8", "group_size": 16,
                       "exclude_modules": ["lm_head"]}})")
                           .dump());
  const Json inl = ToInlineQuantizationConfig(c);
  EXPECT_EQ(inl.dump(), Json::parse(R"({
      "config_groups": {"group_0": {
          "input_activations": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16},
          "weights": {"dynamic": false, "num_bits": 4, "type": "float", "group_size": 16},
          "targets": ["Linear"]}},
      "ignore": ["lm_head"], "quant_algo": "NVFP4",
      "kv_cache_scheme": {"dynamic": false, "num_bits": 8, "type": "float"},
      "producer": {"name": "modelopt", "version": "0.47.0+qforge.test"}, "quant_method": "modelopt"})")
                            .dump());
}

TEST(BuildQuantConfig, MixedPrecisionListsEveryQuantizedLayerAndOneGroupPerConfig) {
  QuantConfigInput in;
  in.modules = Llama(1, ExportFormat::kFp8, ExportFormat::kNvfp4);
  in.kv_cache = KvCacheAlgo::kFp8;
  const HfQuantConfig c = BuildQuantConfig(in);
  EXPECT_EQ(c.quant_algo, "MIXED_PRECISION");
  EXPECT_FALSE(c.exclude_modules.has_value());
  ASSERT_EQ(c.quantized_layers.size(), 7u);
  EXPECT_EQ(c.quantized_layers[0].first, "model.layers.0.self_attn.q_proj");
  EXPECT_EQ(c.quantized_layers[0].second.ToJson().dump(), R"({"quant_algo":"FP8"})");
  EXPECT_EQ(c.quantized_layers[4].second.ToJson().dump(), R"({"quant_algo":"NVFP4","group_size":16})");

  const Json hf = ToHfQuantConfigJson(c);
  EXPECT_FALSE(hf["quantization"].contains("exclude_modules"));
  EXPECT_EQ(hf["quantization"]["quantized_layers"].size(), 7u);
  const Json inl = ToInlineQuantizationConfig(c);
  ASSERT_EQ(inl["config_groups"].size(), 2u);
  EXPECT_EQ(inl["config_groups"]["group_0"]["weights"]["num_bits"], 8);
  EXPECT_EQ(inl["config_groups"]["group_0"]["targets"],
            Json::parse(R"(["model.layers.0.self_attn.k_proj", "model.layers.0.self_attn.o_proj",
                            "model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj"])"));
  EXPECT_EQ(inl["config_groups"]["group_1"]["weights"]["group_size"], 16);
  EXPECT_EQ(inl["ignore"], Json::array());
  EXPECT_EQ(inl["quantized_layers"], hf["quantization"]["quantized_layers"]);
  // Unlisted modules are unquantized in MIXED_PRECISION.
  EXPECT_FALSE(c.LayerConfigFor("lm_head").has_value());
  EXPECT_EQ(c.LayerConfigFor("model.layers.0.mlp.up_proj")->quant_algo, "NVFP4");
}

TEST(BuildQuantConfig, DifferentGroupSizesAreDistinctConfigs) {
  QuantConfigInput in;
  in.modules = {{"a.x", ExportFormat::kNvfp4, 16}, {"a.y", ExportFormat::kNvfp4, 32}};
  EXPECT_EQ(BuildQuantConfig(in).quant_algo, "MIXED_PRECISION");
}

TEST(BuildQuantConfig, NothingQuantizedGivesNullAlgo) {
  QuantConfigInput in;
  in.modules = Llama(1, ExportFormat::kNone, ExportFormat::kNone);
  HfQuantConfig c = BuildQuantConfig(in);
  EXPECT_FALSE(c.quant_algo.has_value());
  EXPECT_FALSE(c.has_quantization());
  in.kv_cache = KvCacheAlgo::kFp8;
  c = BuildQuantConfig(in);
  EXPECT_TRUE(c.has_quantization());
  const Json hf = ToHfQuantConfigJson(c);
  EXPECT_TRUE(hf["quantization"]["quant_algo"].is_null());
  EXPECT_EQ(hf["quantization"]["quantized_layers"], Json::object());
}

TEST(BuildQuantConfig, AwqKeysRoutersAndMtp) {
  QuantConfigInput in;
  in.modules = {{"model.layers.0.mlp.experts.0.gate_proj", ExportFormat::kInt4Awq, 128},
                {"model.layers.0.mlp.experts.0.up_proj", ExportFormat::kInt4Awq, 128}};
  in.extra_unquantized = {"model.layers.0.mlp.gate"};
  in.mtp_prefixes = {"mtp"};
  const HfQuantConfig c = BuildQuantConfig(in);
  EXPECT_EQ(c.quant_algo, "W4A16_AWQ");
  EXPECT_EQ(c.group_size, 128);
  EXPECT_EQ(c.has_zero_point, false);
  EXPECT_EQ(c.pre_quant_scale, true);
  EXPECT_EQ(*c.exclude_modules, Names({"model.layers.0.mlp.gate", "mtp*"}));
  const Json hf = ToHfQuantConfigJson(c);
  EXPECT_EQ(hf["quantization"].dump(),
            R"({"quant_algo":"W4A16_AWQ","kv_cache_quant_algo":null,"group_size":128,"has_zero_point":false,)"
            R"("pre_quant_scale":true,"exclude_modules":["model.layers.0.mlp.gate","mtp*"]})");
  // ModelOpt writes no config_groups for W4A16_AWQ.
  EXPECT_FALSE(ToInlineQuantizationConfig(c).contains("config_groups"));
}

TEST(BuildQuantConfig, RejectsDuplicatesAndEmptyNames) {
  QuantConfigInput in;
  in.modules = {{"a", ExportFormat::kFp8, 0}, {"a", ExportFormat::kFp8, 0}};
  EXPECT_THROW(BuildQuantConfig(in), Error);
  in.modules = {{"", ExportFormat::kFp8, 0}};
  EXPECT_THROW(BuildQuantConfig(in), Error);
}

TEST(BuildQuantConfig, ExcludeEntriesSurviveVllmSubstringRule) {
  // ModelOpt's summary picks `model*` here, which vLLM's legacy substring rule would apply to the quantized
  // `language_model.model.layers.0.q_proj`; qforge moves on to the first candidate no rule matches.
  QuantConfigInput in;
  in.modules = {{"language_model.model.layers.0.q_proj", ExportFormat::kFp8, 0},
                {"model.layers.0.mlp.gate", ExportFormat::kNone, 0}};
  EXPECT_EQ(PrefixWildcardSummary({"model.layers.0.mlp.gate"}, {"language_model.model.layers.0.q_proj"}),
            Names({"model*"}));
  const HfQuantConfig c = BuildQuantConfig(in);
  EXPECT_EQ(*c.exclude_modules, Names({"model.layers.0.mlp*"}));
  for (const auto& e : *c.exclude_modules) EXPECT_EQ(VllmExcludeMatch("language_model.model.layers.0.q_proj", e), "");
}

TEST(BuildQuantConfig, ThrowsWhenNoExcludeEntryIsVllmSafe) {
  // A router named like a prefix of its quantized sibling cannot be excluded without excluding the sibling.
  QuantConfigInput in;
  in.modules = {{"model.layers.1.mlp.gate_proj", ExportFormat::kNvfp4, 16},
                {"model.layers.1.mlp.gate", ExportFormat::kNone, 0}};
  try {
    BuildQuantConfig(in);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("model.layers.1.mlp.gate_proj"), std::string::npos) << e.what();
  }
}

TEST(QuantConfigParse, BothShapesRoundTrip) {
  for (bool mixed : {false, true}) {
    QuantConfigInput in;
    in.modules = Llama(2, ExportFormat::kFp8, mixed ? ExportFormat::kNvfp4 : ExportFormat::kFp8);
    in.kv_cache = KvCacheAlgo::kFp8;
    const HfQuantConfig c = BuildQuantConfig(in);
    for (const HfQuantConfig& p : {ParseHfQuantConfigJson(ToHfQuantConfigJson(c), "hf"),
                                   ParseInlineQuantizationConfig(ToInlineQuantizationConfig(c), "inline")}) {
      EXPECT_EQ(p.quant_algo, c.quant_algo);
      EXPECT_EQ(p.kv_cache_quant_algo, c.kv_cache_quant_algo);
      EXPECT_EQ(p.group_size, c.group_size);
      EXPECT_EQ(p.exclude_modules.value_or(Names{}), c.exclude_modules.value_or(Names{}));
      EXPECT_EQ(p.quantized_layers, c.quantized_layers);
      EXPECT_EQ(p.producer.name, "modelopt");
    }
  }
}

TEST(QuantConfigParse, InlineGroupSizeComesFromConfigGroups) {
  QuantConfigInput in;
  in.modules = Llama(1, ExportFormat::kW4a16Nvfp4, ExportFormat::kW4a16Nvfp4);
  const HfQuantConfig c = BuildQuantConfig(in);
  const HfQuantConfig p = ParseInlineQuantizationConfig(ToInlineQuantizationConfig(c), "inline");
  EXPECT_EQ(p.group_size, 16);
  EXPECT_FALSE(p.kv_cache_quant_algo.has_value());
}

TEST(QuantConfigParse, MalformedDocumentsNameTheKey) {
  EXPECT_THROW(ParseHfQuantConfigJson(Json::parse(R"({"producer": {}})"), "x"), Error);
  try {
    ParseHfQuantConfigJson(Json::parse(R"({"quantization": {"quant_algo": "FP8", "exclude_modules": "lm_head"}})"),
                           "hf_quant_config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exclude_modules"), std::string::npos);
  }
  EXPECT_THROW(ParseInlineQuantizationConfig(Json::parse(R"({"quant_algo": 3})"), "x"), Error);
  EXPECT_THROW(
      ParseInlineQuantizationConfig(Json::parse(R"({"kv_cache_scheme": {"type": "float", "num_bits": 4}})"), "x"),
      Error);
}

}  // namespace
}  // namespace qforge::exporter
