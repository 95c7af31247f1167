// Unit tests of config/: glob and regex semantics, attribute validation, entries, apply, algorithms.
#include <gtest/gtest.h>

#include <set>
#include <variant>

#include "qforge/base/log.h"
#include "qforge/config/algorithm_config.h"
#include "qforge/config/conformance.h"
#include "qforge/config/fnmatch.h"
#include "qforge/config/quant_cfg.h"
#include "qforge/config/quantize_config.h"
#include "qforge/config/quantizer_attribute_config.h"
#include "qforge/config/quantizer_set.h"
#include "qforge/config/regex.h"

namespace qforge::config {
namespace {

Json J(const char* s) { return Json::parse(s); }

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(FnMatch, PythonSemantics) {
  EXPECT_TRUE(FnMatch("model.layers.0.mlp.down_proj.weight_quantizer", "*weight_quantizer"));
  EXPECT_TRUE(FnMatch("a.b.c", "*"));
  EXPECT_TRUE(FnMatch("a.b.c", "**"));
  EXPECT_TRUE(FnMatch("x.k_bmm_quantizer", "*[kv]_bmm_quantizer"));
  EXPECT_FALSE(FnMatch("x.q_bmm_quantizer", "*[kv]_bmm_quantizer"));
  EXPECT_TRUE(FnMatch("x.q_bmm_quantizer", "*[!kv]_bmm_quantizer"));
  EXPECT_TRUE(FnMatch("layer7", "layer[0-9]"));
  EXPECT_TRUE(FnMatch("ab", "a?"));
  EXPECT_FALSE(FnMatch("a", "a?"));
  EXPECT_TRUE(FnMatch("a[b", "a[b"));  // unterminated set is literal
  EXPECT_TRUE(FnMatch("a]", "a[]]"));
  EXPECT_FALSE(FnMatch("Weight_quantizer", "weight_quantizer"));  // case-sensitive
  EXPECT_FALSE(FnMatch("model.mlp.gate_proj.weight_quantizer", "*mlp.gate.*"));
  EXPECT_TRUE(FnMatch("model.mlp.gate.weight_quantizer", "*mlp.gate.*"));
  EXPECT_FALSE(FnMatch("q_proj", "*{q,k}_proj"));  // no brace expansion
}

TEST(Regex, FullMatchAndGroups) {
  Regex r(R"((?:(.*)\.)?(?:q_proj|k_proj|v_proj))");
  auto m = r.FullMatch("model.layers.0.self_attn.q_proj");
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)[0].value(), "model.layers.0.self_attn");
  auto root = r.FullMatch("q_proj");
  ASSERT_TRUE(root);
  EXPECT_FALSE((*root)[0].has_value());
  EXPECT_FALSE(r.FullMatch("model.q_proj.extra"));
  EXPECT_FALSE(r.FullMatch("model.q_proj_x"));
  std::string err = ErrorOf([] { Regex bad("("); });
  EXPECT_NE(err.find("invalid regex '('"), std::string::npos) << err;
}

TEST(QuantizerAttributeConfig, DefaultsAndDumps) {
  QuantizerAttributeConfig c;
  Json full = c.ToJson();
  EXPECT_EQ(full["num_bits"], 8);
  EXPECT_TRUE(full["axis"].is_null());
  EXPECT_EQ(full["calibrator"], "max");
  EXPECT_EQ(full.size(), 19u);
  auto d = QuantizerAttributeConfig::FromJson(J(R"({"num_bits": [4, 3], "axis": null})"));
  EXPECT_EQ(d.ToJson(true), J(R"({"num_bits": [4, 3], "axis": null})"));
}

TEST(QuantizerAttributeConfig, ErrorsNameKeyAndValue) {
  std::string e = ErrorOf([] { QuantizerAttributeConfig::FromJson(J(R"({"num_bit": 8})"), "quant_cfg[2].cfg"); });
  EXPECT_NE(e.find("quant_cfg[2].cfg"), std::string::npos) << e;
  EXPECT_NE(e.find("'num_bit'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'num_bits'"), std::string::npos) << e;
  e = ErrorOf([] { QuantizerAttributeConfig::FromJson(J(R"({"num_bits": 8, "axis": "0"})"), "cfg"); });
  EXPECT_NE(e.find("cfg.axis"), std::string::npos) << e;
  e = ErrorOf([] { QuantizerAttributeConfig::FromJson(J(R"({"num_bits": [3, 3]})")); });
  EXPECT_NE(e.find("Supported FPx quantization formats"), std::string::npos) << e;
  e = ErrorOf([] { QuantizerAttributeConfig::FromJson(J(R"({"num_bits": 8, "effective_bits": 17})")); });
  EXPECT_NE(e.find("effective_bits must be in (0, 16]"), std::string::npos) << e;
  // A field error is reported before the after-validators (spec §2.4 order).
  e = ErrorOf([] { QuantizerAttributeConfig::FromJson(J(R"({"num_bits": 0, "type": "weird"})")); });
  EXPECT_NE(e.find("type"), std::string::npos) << e;
  // The backend skips num_bits validation.
  EXPECT_NO_THROW(QuantizerAttributeConfig::FromJson(J(R"({"num_bits": [7, 7], "backend": "custom"})")));
  e = ErrorOf([] { QuantizerAttributeConfig::FromJson(J(R"({"rotate": {"enable": true, "mode": "rotate_back"}, "fake_quant": false})")); });
  EXPECT_NE(e.find("rotate_back"), std::string::npos) << e;
  e = ErrorOf([] { QuantizerAttributeConfig::FromJson(J(R"({"rotate": {"block_size": true}})")); });
  EXPECT_NE(e.find("block_size"), std::string::npos) << e;
}

TEST(QuantizerAttributeConfig, ToQuantSpec) {
  auto nvfp4 = QuantizerAttributeConfig::FromJson(
      J(R"({"num_bits": [2, 1], "block_sizes": {"-1": 16, "type": "dynamic", "scale_bits": [4, 3]}})"));
  QuantSpec s = nvfp4.ToQuantSpec();
  EXPECT_TRUE(s.num_bits.IsFloat(2, 1));
  ASSERT_TRUE(s.block);
  EXPECT_TRUE(s.block->dynamic);
  ASSERT_EQ(s.block->sizes.size(), 1u);
  EXPECT_EQ(s.block->sizes[0].first, -1);
  EXPECT_EQ(s.block->sizes[0].second, 16);
  EXPECT_TRUE(s.block->scale_bits->IsFloat(4, 3));
  EXPECT_FALSE(s.dynamic);
  auto pc = QuantizerAttributeConfig::FromJson(J(R"({"num_bits": 8, "axis": 0, "narrow_range": true})")).ToQuantSpec();
  EXPECT_TRUE(pc.num_bits.is_int());
  EXPECT_EQ(pc.axis, std::vector<int>{0});
  EXPECT_TRUE(pc.narrow_range);
  auto kv = QuantizerAttributeConfig::FromJson(J(R"({"num_bits": [4, 3], "use_constant_amax": true})")).ToQuantSpec();
  EXPECT_TRUE(kv.use_constant_amax);
  auto fos = QuantizerAttributeConfig::FromJson(
      J(R"({"num_bits": [2, 1], "block_sizes": {"-1": 16, "type": "static", "scale_bits": [4, 3], "four_over_six": true}})"));
  EXPECT_TRUE(fos.ToQuantSpec().block->four_over_six);
  EXPECT_TRUE(fos.IsStaticBlock());
  auto custom = QuantizerAttributeConfig::FromJson(J(R"({"num_bits": "my_fmt", "backend": "b"})"));
  EXPECT_THROW(custom.ToQuantSpec(), Error);
}

TEST(ConvertExMyStrings, OnlyUnderNumBitsAndScaleBits) {
  Json j = J(R"({"num_bits": "e4m3", "block_sizes": {"scale_bits": "E8M0"}, "name": "e4m3", "list": [{"num_bits": "e2m1"}], "x": {"num_bits": "fp8"}})");
  ConvertExMyStrings(j);
  EXPECT_EQ(j["num_bits"], J("[4, 3]"));
  EXPECT_EQ(j["block_sizes"]["scale_bits"], J("[8, 0]"));
  EXPECT_EQ(j["name"], "e4m3");
  EXPECT_EQ(j["list"][0]["num_bits"], J("[2, 1]"));
  EXPECT_EQ(j["x"]["num_bits"], "fp8");
}

TEST(QuantCfg, QuantizerPathAliasAndLocatedErrors) {
  auto l = NormalizeQuantCfgList(J(R"([{"quantizer_path": "*weight_quantizer", "cfg": {"num_bits": 4}}])"));
  EXPECT_EQ(l[0].quantizer_name, "*weight_quantizer");
  EXPECT_TRUE(l[0].ToJson().contains("quantizer_name"));
  std::string e = ErrorOf([] { NormalizeQuantCfgList(J(R"([{"quantizer_name": "*", "quantizer_path": "*", "enable": false}])")); });
  EXPECT_NE(e.find("quantizer_name"), std::string::npos);
  EXPECT_NE(e.find("quantizer_path"), std::string::npos);
  e = ErrorOf([] {
    NormalizeQuantCfgList(J(R"([{"quantizer_name": "*", "enable": false}, {"quantizer_name": "*w*", "cfg": {"num_bits": 4, "block_size": {"-1": 16}}}])"));
  });
  EXPECT_NE(e.find("quant_cfg[1].cfg"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'block_sizes'"), std::string::npos) << e;
  e = ErrorOf([] { NormalizeQuantCfgList(J(R"([{"quantizer_name": "*", "enabled": false}])")); });
  EXPECT_NE(e.find("quant_cfg[0]"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'enable'"), std::string::npos) << e;
}

TEST(QuantCfg, LegacyFlatDictWarnsAndKeepsOrder) {
  ScopedLogCapture cap;
  auto l = NormalizeQuantCfgList(J(R"({"*weight_quantizer": {"num_bits": 4}, "default": {"enable": false}, "nn.Linear": {"*input_quantizer": {"enable": false}}})"));
  ASSERT_EQ(l.size(), 3u);
  EXPECT_EQ(l[1].quantizer_name, "*");  // "default" converted in place (spec §13 Q1)
  EXPECT_EQ(l[2].parent_class.value_or(""), "nn.Linear");
  EXPECT_TRUE(cap.Contains("deprecated"));
  EXPECT_EQ(cap.Messages().size(), 1u);  // once per call
}

QuantCfgList L(const char* s) { return NormalizeQuantCfgList(J(s)); }

std::vector<QuantizerSlot> Linear(const std::string& prefix) {
  std::vector<QuantizerSlot> v;
  for (const char* k : {"input", "output", "weight"}) {
    QuantizerSlot s;
    s.name = prefix + "." + k + "_quantizer";
    s.parent_class = "nn.Linear";
    s.state = InitialQuantizerState(std::string("linear_") + k);
    v.push_back(s);
  }
  return v;
}

TEST(ApplyQuantCfg, LastMatchWinsAndDecidedBy) {
  auto slots = Linear("m.layers.0.mlp.down_proj");
  ApplyQuantCfg(L(R"([{"quantizer_name": "*", "enable": false},
                      {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": [4, 3]}},
                      {"quantizer_name": "*mlp*", "enable": false}])"), slots);
  EXPECT_FALSE(slots[2].state.enabled());
  EXPECT_EQ(slots[2].decided_by, 2);
  EXPECT_TRUE(slots[2].state.attrs().num_bits.IsTuple(4, 3));  // enable-only keeps attributes
  EXPECT_EQ(slots[0].decided_by, 2);
}

TEST(ApplyQuantCfg, SequentialAndBackToSingle) {
  auto slots = Linear("m.fc");
  ApplyQuantCfg(L(R"([{"quantizer_name": "*weight_quantizer", "cfg": [{"num_bits": 4, "block_sizes": {"-1": 128}}, {"num_bits": [4, 3]}]}])"), slots);
  EXPECT_TRUE(slots[2].state.sequential);
  EXPECT_EQ(slots[2].state.stages.size(), 2u);
  ApplyQuantCfg(L(R"([{"quantizer_name": "*weight_quantizer", "enable": false}])"), slots);
  EXPECT_FALSE(slots[2].state.stages[0].enable);
  EXPECT_FALSE(slots[2].state.stages[1].enable);
  ApplyQuantCfg(L(R"([{"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8}}])"), slots);
  EXPECT_FALSE(slots[2].state.sequential);
  EXPECT_TRUE(slots[2].state.enabled());
  EXPECT_FALSE(slots[2].state.attrs().axis);  // not inherited from the initial axis 0
}

TEST(ApplyQuantCfg, ScopedRestores) {
  auto slots = Linear("m.fc");
  auto before = slots;
  {
    ScopedQuantCfg scope(L(R"([{"quantizer_name": "*weight_quantizer", "enable": false}])"), slots);
    EXPECT_FALSE(slots[2].state.enabled());
  }
  EXPECT_TRUE(slots[2].state.enabled());
  EXPECT_EQ(slots[2].state.attrs().ToJson(), before[2].state.attrs().ToJson());
  EXPECT_EQ(slots[2].decided_by, -1);
  EXPECT_THROW(ScopedQuantCfg(L(R"([{"quantizer_name": "*", "cfg": [{"num_bits": 4}]}])"), slots), Error);
}

TEST(ApplyQuantCfg, ParentClassRegistry) {
  auto slots = Linear("m.fc");
  EXPECT_NO_THROW(ApplyQuantCfg(L(R"([{"quantizer_name": "*", "parent_class": "hf.Qwen3MoeSparseMoeBlock", "enable": false}])"), slots));
  EXPECT_TRUE(slots[0].state.enabled());
  std::string e = ErrorOf([&] { ApplyQuantCfg(L(R"([{"quantizer_name": "*", "parent_class": "nn.Linaer", "enable": false}])"), slots); });
  EXPECT_NE(e.find("did you mean 'nn.Linear'"), std::string::npos) << e;
  ApplyQuantCfg(L(R"([{"quantizer_name": "*", "parent_class": "nn.Conv2d", "enable": false}])"), slots);
  EXPECT_TRUE(slots[0].state.enabled());
}

TEST(ApplyQuantCfg, FusedExpertNames) {
  EXPECT_EQ(NormalizeFusedExpertsName("m.experts.gate_up_proj_weight_quantizers.7"), "m.experts.gate_up_proj_weight_quantizer");
  EXPECT_EQ(NormalizeFusedExpertsName("m.x.weight_quantizer.0"), "m.x.weight_quantizer");
  EXPECT_EQ(NormalizeFusedExpertsName("m.weight_quantizers.7x"), "m.weight_quantizers.7x");
}

TEST(NeedsActivationForward, WeightOnlyAndConstantAmax) {
  auto slots = Linear("m.fc");
  ApplyQuantCfg(L(R"([{"quantizer_name": "*", "enable": false}, {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 4}}])"), slots);
  EXPECT_FALSE(NeedsActivationForward(slots));
  ApplyQuantCfg(L(R"([{"quantizer_name": "*input_quantizer", "cfg": {"num_bits": [4, 3], "constant_amax": 448.0}}])"), slots);
  EXPECT_FALSE(NeedsActivationForward(slots));
  ApplyQuantCfg(L(R"([{"quantizer_name": "*input_quantizer", "cfg": {"num_bits": [2, 1], "block_sizes": {"-1": 16, "type": "dynamic", "scale_bits": [4, 3]}}}])"), slots);
  EXPECT_TRUE(NeedsActivationForward(slots));  // NVFP4 inputs calibrate a global amax
}

TEST(QuantizeConfig, NeedCalibrationAndKvMerge) {
  auto weight_only = QuantizeConfig::FromJson(J(R"({"quant_cfg": [{"quantizer_name": "*", "enable": false}, {"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 4}}], "algorithm": "max"})"));
  EXPECT_FALSE(NeedCalibration(weight_only));
  Json merged = UpdateQuantCfgWithKvCacheQuant(J(R"({"algorithm": null})"), J(R"([{"quantizer_name": "*[kv]_bmm_quantizer", "cfg": {"num_bits": [4, 3]}}])"));
  EXPECT_EQ(merged["quant_cfg"].size(), 2u);
  EXPECT_EQ(merged["quant_cfg"][0]["quantizer_name"], "*");
  EXPECT_EQ(merged["algorithm"], "max");
  auto c = QuantizeConfig::FromJson(J(R"({})"));
  EXPECT_EQ(c.quant_cfg.size(), 1u);  // default: INT8 on everything
  std::string e = ErrorOf([] { QuantizeConfig::FromJson(J(R"({"quant_cfg": [], "algoritm": "max"})")); });
  EXPECT_NE(e.find("did you mean 'algorithm'"), std::string::npos) << e;
}

TEST(AlgorithmConfig, SpellingsAndErrors) {
  ScopedLogCapture cap;
  auto a = ParseAlgorithmConfig("max", J(R"({"layerwise": {"enable": true, "save_quantizers_only": true}})"), "algorithm");
  EXPECT_FALSE(a.layerwise().calib_mutates_weights);
  EXPECT_FALSE(a.ToJson()["layerwise"].contains("save_quantizers_only"));
  EXPECT_THROW(ParseAlgorithmConfig("awq_full", J(R"({"layerwise": {"enable": true, "save_quantizers_only": true}})"), "a"), Error);
  EXPECT_THROW(ParseAlgorithmConfig("max", J(R"({"layerwise": {"save_quantizers_only": true, "calib_mutates_weights": true}})"), "a"), Error);
  auto sp = ParseAlgorithmConfig("mse", J(R"({"shared_patterns": {"weight": ["(.*)\\.(q|k)_proj"], "input": []}})"), "a");
  EXPECT_EQ(sp.ToJson(true)["shared_states"], J(R"({"weight_global_amax": {"patterns": ["(.*)\\.(q|k)_proj"]}})"));
  std::string e = ErrorOf([] { ParseAlgorithmConfig("max", J(R"({"shared_patterns": {"output": []}})"), "algorithm"); });
  EXPECT_NE(e.find("'output'"), std::string::npos) << e;
  e = ErrorOf([] { ParseAlgorithmConfig("max", J(R"({"shared_states": {"weight_global_amax": {"patterns": ["ok", "(("]}}})"), "algorithm"); });
  EXPECT_NE(e.find("patterns[1]"), std::string::npos) << e;
  EXPECT_NE(e.find("invalid regex '(('"), std::string::npos) << e;
  e = ErrorOf([] { ParseAlgorithmConfig("max", J(R"({"shared_states": {"input_amax": {}}})"), "algorithm"); });
  EXPECT_NE(e.find("unsupported state"), std::string::npos) << e;
  e = ErrorOf([] { ParseAlgorithmConfig("max", J(R"({"shared_states": {"weight_global_amax": {"pattern": []}}})"), "algorithm"); });
  EXPECT_NE(e.find("unsupported field"), std::string::npos) << e;
  auto empty = ParseAlgorithmConfig("max", J(R"({"shared_states": {"weight_global_amax": {"patterns": []}}})"), "a");
  EXPECT_TRUE(ResolveSharedPatterns(empty.As<MaxCalibConfig>()->shared_states).empty());
  EXPECT_EQ(ResolveSharedPatterns(std::nullopt).size(), 3u);
  e = ErrorOf([] { AlgorithmSpec::FromJson(J(R"({"method": "gtpq"})"), "quantize.algorithm"); });
  EXPECT_NE(e.find("did you mean 'gptq'"), std::string::npos) << e;
  e = ErrorOf([] { ParseAlgorithmConfig("max", J(R"({"use_sequential": true, "layerwise": {"enable": true}})"), "algorithm"); });
  EXPECT_NE(e.find("use_sequential"), std::string::npos) << e;
  auto gptq = ParseAlgorithmConfig("gptq", J(R"({})"), "a");
  EXPECT_TRUE(gptq.layerwise().get_qdq_activations_from_prev_layer);
  EXPECT_FALSE(FindAlgorithmTraits("svdquant")->supports_layerwise);
  auto list = AlgorithmSpec::FromJson(J(R"(["max", {"method": "gptq", "perc_damp": 0.1}])"), "algorithm");
  EXPECT_EQ(list.configs.size(), 2u);
  EXPECT_EQ(list.ToJson(), J(R"(["max", {"method": "gptq", "perc_damp": 0.1}])"));
}

// Every method's config class carries its traits row: parsing a method gives the class whose row names it,
// the rows are unique, and the table lists exactly the classes (in the variant's order).
TEST(AlgorithmConfig, EveryMethodParsesToTheClassOfItsTraitsRow) {
  const auto& rows = AllAlgorithmTraits();
  EXPECT_EQ(rows.size(), std::variant_size_v<AlgorithmVariant>);
  std::set<std::string> seen;
  for (size_t i = 0; i < rows.size(); ++i) {
    const std::string method = rows[i].method;
    EXPECT_TRUE(seen.insert(method).second) << method;
    EXPECT_EQ(FindAlgorithmTraits(method), &rows[i]) << method;
    const AlgorithmConfig c = ParseAlgorithmConfig(method, J("{}"), "algorithm");
    EXPECT_EQ(c.value.index(), i) << method;
    EXPECT_STREQ(c.traits().method, rows[i].method);
    EXPECT_EQ(c.traits().mutates_weights, rows[i].mutates_weights) << method;
  }
  EXPECT_TRUE(FindAlgorithmTraits("gptq")->mutates_weights);
  EXPECT_FALSE(FindAlgorithmTraits("max")->mutates_weights);
  EXPECT_EQ(FindAlgorithmTraits("nope"), nullptr);
}

// qforge's extension fields parse where they belong, and are named as such (recipe show says so).
TEST(AlgorithmConfig, QforgeExtensionFieldsAreNamed) {
  const AlgorithmSpec a = AlgorithmSpec::FromJson(J(R"({"method": "gptq", "act_order": true, "block_size": 64})"), "a");
  ASSERT_EQ(a.configs.size(), 1u);
  EXPECT_TRUE(a.configs[0].As<GptqCalibConfig>()->act_order);
  EXPECT_EQ(QforgeExtensionFieldsSet(J(R"({"method": "gptq", "act_order": false})")),
            std::vector<std::string>{"gptq.act_order"});
  EXPECT_TRUE(QforgeExtensionFieldsSet(J(R"({"method": "gptq", "perc_damp": 0.02})")).empty());
  EXPECT_EQ(QforgeExtensionFieldsSet(J(R"([{"method": "max"}, {"method": "gptq", "act_order": true}])")).size(), 1u);
  EXPECT_THROW(AlgorithmSpec::FromJson(J(R"({"method": "mse", "act_order": true})"), "a"), Error);
  EXPECT_EQ(QforgeExtensionFieldsSet(J(R"({"method": "gptq", "scale_algorithm": {"method": "mse"}})")),
            std::vector<std::string>{"gptq.scale_algorithm"});
}

}  // namespace
}  // namespace qforge::config

namespace qforge::config {
namespace {

TEST(QuantizerAttributeConfig, FromCliJsonAcceptsExMyStrings) {
  auto c = QuantizerAttributeConfig::FromCliJson(R"({"num_bits": "e2m1", "block_sizes": {"-1": 16, "type": "dynamic", "scale_bits": "e4m3"}})");
  EXPECT_TRUE(c.num_bits.IsTuple(2, 1));
  EXPECT_TRUE(c.ToQuantSpec().block->scale_bits->IsFloat(4, 3));
  EXPECT_THROW(QuantizerAttributeConfig::FromCliJson("{num_bits: 4"), Error);
  std::string e;
  try {
    QuantizerAttributeConfig::FromCliJson(R"({"num_bits": 4, "axis": 0, "block_sizes": {"-1": 128}})");
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find("--cfg"), std::string::npos) << e;
  EXPECT_NE(e.find("axis must be None"), std::string::npos) << e;
}

}  // namespace
}  // namespace qforge::config

namespace qforge::config {
namespace {

template <class C>
void ExpectDocumented(const char* what) {
  C c;
  FieldDocs docs;
  C::VisitFields(c, docs);
  Json defaults = DumpFields(c, false);
  ASSERT_EQ(docs.docs.size(), defaults.size()) << what;
  for (const auto& d : docs.docs) {
    EXPECT_FALSE(d.doc.empty()) << what << "." << d.name;
    EXPECT_EQ(d.default_value, defaults[d.name]) << what << "." << d.name;  // one declaration for both
  }
}

TEST(Fields, EveryFieldHasADocAndItsDeclaredDefault) {
  ExpectDocumented<QuantizerAttributeConfig>("QuantizerAttributeConfig");
  ExpectDocumented<RotateConfig>("RotateConfig");
  ExpectDocumented<QuantizerCfgEntry>("QuantizerCfgEntry");
  ExpectDocumented<LayerwiseConfig>("LayerwiseConfig");
  ExpectDocumented<MaxCalibConfig>("MaxCalibConfig");
  ExpectDocumented<MseCalibConfig>("MseCalibConfig");
  ExpectDocumented<LocalHessianCalibConfig>("LocalHessianCalibConfig");
  ExpectDocumented<Nvfp4ActHeadroomCalibConfig>("Nvfp4ActHeadroomCalibConfig");
  ExpectDocumented<SmoothQuantCalibConfig>("SmoothQuantCalibConfig");
  ExpectDocumented<AwqFullCalibConfig>("AwqFullCalibConfig");
  ExpectDocumented<SvdQuantConfig>("SvdQuantConfig");
  ExpectDocumented<GptqCalibConfig>("GptqCalibConfig");
  ExpectDocumented<LsqConfig>("LsqConfig");
  ExpectDocumented<QuantizeConfig>("QuantizeConfig");
}

// The quantize_config op reports the normalized entries (all four keys), as normalize_quant_cfg_list does.
TEST(Conformance, QuantizeConfigOpReportsNormalizedEntries) {
  const Json cfg = Json::parse(R"({"quant_cfg": [{"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": 8}},
                                                  {"quantizer_name": "*input_quantizer", "enable": false}],
                                   "algorithm": "max"})");
  const Json expect_entries = Json::parse(R"([
      {"quantizer_name": "*weight_quantizer", "parent_class": null, "cfg": {"num_bits": 8}, "enable": true},
      {"quantizer_name": "*input_quantizer", "parent_class": null, "cfg": null, "enable": false}])");
  const Json c = {{"name", "derived::quantize_config_entries"},
                  {"input", {{"op", "quantize_config"}, {"config", cfg}}},
                  {"expect", {{"ok", true}, {"entries", expect_entries}}}};
  const auto r = DefaultConformanceRegistry().RunCase(c);
  EXPECT_EQ(r.status, ConformanceCaseResult::Status::kPass) << r.message;
  const Json n = {{"name", "derived::normalize_entries"},
                  {"input", {{"op", "normalize_quant_cfg_list"}, {"quant_cfg", cfg["quant_cfg"]}}},
                  {"expect", {{"entries", expect_entries}}}};
  const auto rn = DefaultConformanceRegistry().RunCase(n);
  EXPECT_EQ(rn.status, ConformanceCaseResult::Status::kPass) << rn.message;
}

// Upstream wording for a non-positive constant_amax (ModelOpt's validate_constant_amax).
TEST(QuantizerAttributeConfig, ConstantAmaxUsesUpstreamWording) {
  try {
    QuantizerAttributeConfig::FromJson(Json::parse(R"({"num_bits": [4, 3], "constant_amax": 0.0})"));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("constant_amax must be a positive value."), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace qforge::config
