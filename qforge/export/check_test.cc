// Tests of `qforge check`: valid synthetic checkpoints pass, hand-broken ones are each caught; ModelOpt's own
// reference exports (tests/golden/modelopt_export) pass.
#include "qforge/export/check.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <random>

#include "qforge/base/file.h"
#include "qforge/export/quant_config.h"
#include "qforge/io/safetensors.h"

namespace qforge::exporter {
namespace {

namespace fs = std::filesystem;
using OJson = nlohmann::ordered_json;

constexpr int kHidden = 32;
constexpr int kInter = 64;
constexpr int kVocab = 48;
constexpr int kExperts = 3;

// A small llama-like or MoE checkpoint, quantized per module, that tests edit before writing.
struct Synth {
  std::vector<std::pair<std::string, Tensor>> tensors;
  QuantConfigInput input;
  OJson config;
  std::mt19937 rng{7};

  // Tensor lookup for edits.
  Tensor& At(const std::string& name) {
    for (auto& [n, t] : tensors) {
      if (n == name) return t;
    }
    ADD_FAILURE() << "no tensor " << name;
    static Tensor none;
    return none;
  }
  void Remove(const std::string& name) {
    auto it = std::find_if(tensors.begin(), tensors.end(), [&](const auto& p) { return p.first == name; });
    ASSERT_NE(it, tensors.end()) << name;
    tensors.erase(it);
  }
  void Add(const std::string& name, Tensor t) { tensors.emplace_back(name, std::move(t)); }

  Tensor Random(DType dtype, Shape shape) {
    Tensor t = Tensor::Zeros(dtype, shape);
    auto* p = static_cast<uint8_t*>(t.mutable_raw());
    for (size_t i = 0; i < t.nbytes(); ++i) {
      uint8_t b = static_cast<uint8_t>(rng());
      if (dtype == DType::kF8E4M3 && (b & 0x7F) == 0x7F) b = 0x3F;                          // no NaN codes
      if (dtype == DType::kBF16 && (i % 2 == 1)) b = static_cast<uint8_t>(0x3C + (b & 1));  // small finite bf16
      p[i] = b;
    }
    return t;
  }
  Tensor Filled(DType dtype, Shape shape, uint8_t byte) {
    Tensor t = Tensor::Zeros(dtype, shape);
    std::memset(t.mutable_raw(), byte, t.nbytes());
    return t;
  }

  // Adds the tensors of one Linear [out, in] in format `f` (scales chosen by the caller for sibling sharing).
  void Linear(const std::string& m, int64_t out, int64_t in, ExportFormat f, float ws2 = 0.01f,
              float input_scale = 0.02f, float fp8_scale = 0.003f) {
    input.modules.push_back({m, f, Traits(f).writes_group_size ? Traits(f).default_group_size : 0});
    switch (f) {
      case ExportFormat::kNone:
        Add(m + ".weight", Random(DType::kBF16, {out, in}));
        break;
      case ExportFormat::kFp8:
        Add(m + ".weight", Random(DType::kF8E4M3, {out, in}));
        static_cast<uint8_t*>(tensors.back().second.mutable_raw())[0] = 0x7E;  // the amax element: 448
        Add(m + ".weight_scale", Tensor::Scalar(fp8_scale));
        Add(m + ".input_scale", Tensor::Scalar(input_scale));
        break;
      case ExportFormat::kFp8PcPt: {
        Add(m + ".weight", Random(DType::kF8E4M3, {out, in}));
        std::vector<float> s(out, 0.004f);
        Add(m + ".weight_scale", Tensor::FromF32({out}, s));
        break;
      }
      case ExportFormat::kNvfp4:
      case ExportFormat::kW4a16Nvfp4:
        Add(m + ".weight", Random(DType::kU8, {out, in / 2}));
        Add(m + ".weight_scale", Filled(DType::kF8E4M3, {out, in / 16}, 0x38));  // 1.0
        static_cast<uint8_t*>(tensors.back().second.mutable_raw())[0] = 0x7E;    // the amax block: 448
        Add(m + ".weight_scale_2", Tensor::Scalar(ws2));
        if (f == ExportFormat::kNvfp4) Add(m + ".input_scale", Tensor::Scalar(input_scale));
        break;
      case ExportFormat::kMxfp8:
        Add(m + ".weight", Random(DType::kF8E4M3, {out, in}));
        Add(m + ".weight_scale", Filled(DType::kU8, {out, in / 32}, 120));
        break;
      case ExportFormat::kInt8Sq: {  // SmoothQuant: per-channel INT8 weight, smoothed INT8 input
        Add(m + ".weight", Random(DType::kI8, {out, in}));
        std::vector<float> ws(out, 0.004f);
        Add(m + ".weight_scale", Tensor::FromF32({out}, ws));
        Add(m + ".input_scale", Tensor::Scalar(input_scale));
        std::vector<float> pqs(in, 0.5f);
        Add(m + ".pre_quant_scale", Tensor::FromF32({in}, pqs).FromF32To(DType::kBF16));
        break;
      }
      default:
        FAIL() << "synthetic writer has no layout for " << Traits(f).name;
    }
  }

  // Dense llama-like (moe=false) or MoE (router + experts w/ gate/up/down) model with `layers` layers.
  static Synth Make(ExportFormat attn, ExportFormat mlp, bool moe = false, int layers = 2, bool kv = true) {
    Synth s;
    s.Add("model.embed_tokens.weight", s.Random(DType::kBF16, {kVocab, kHidden}));
    s.Add("model.norm.weight", s.Random(DType::kBF16, {kHidden}));
    for (int l = 0; l < layers; ++l) {
      const std::string p = "model.layers." + std::to_string(l);
      s.Add(p + ".input_layernorm.weight", s.Random(DType::kBF16, {kHidden}));
      s.Add(p + ".post_attention_layernorm.weight", s.Random(DType::kBF16, {kHidden}));
      for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
        s.Linear(p + ".self_attn." + n, kHidden, kHidden, attn, 0.01f + 0.001f * l, 0.02f + 0.001f * l);
      }
      if (kv) {
        s.Add(p + ".self_attn.k_proj.k_scale", Tensor::Scalar(0.05f));
        s.Add(p + ".self_attn.v_proj.v_scale", Tensor::Scalar(0.06f));
      }
      if (!moe) {
        for (const char* n : {"gate_proj", "up_proj"}) s.Linear(p + ".mlp." + n, kInter, kHidden, mlp, 0.03f, 0.04f);
        s.Linear(p + ".mlp.down_proj", kHidden, kInter, mlp, 0.05f, 0.06f);
      } else {
        s.Add(p + ".mlp.gate.weight", s.Random(DType::kBF16, {kExperts, kHidden}));
        s.input.extra_unquantized.push_back(p + ".mlp.gate");
        for (int e = 0; e < kExperts; ++e) {
          const std::string x = p + ".mlp.experts." + std::to_string(e);
          for (const char* n : {"gate_proj", "up_proj"}) s.Linear(x + "." + n, kInter, kHidden, mlp, 0.03f + 0.01f * e);
          s.Linear(x + ".down_proj", kHidden, kInter, mlp, 0.07f);
        }
      }
    }
    s.Linear("lm_head", kVocab, kHidden, ExportFormat::kNone);
    s.input.kv_cache = kv ? KvCacheAlgo::kFp8 : KvCacheAlgo::kNone;
    s.config = {{"architectures", {moe ? "Qwen3MoeForCausalLM" : "LlamaForCausalLM"}},
                {"model_type", moe ? "qwen3_moe" : "llama"},
                {"hidden_size", kHidden},
                {"vocab_size", kVocab},
                {"tie_word_embeddings", false},
                {"torch_dtype", "bfloat16"}};
    return s;
  }

  // Writes the checkpoint; `edit_hf` / `edit_inline` may change either config document before writing.
  fs::path Write(const std::string& name, std::function<void(OJson&)> edit_hf = nullptr,
                 std::function<void(OJson&)> edit_inline = nullptr) const {
    const fs::path dir = fs::path(::testing::TempDir()) / ("qf_check_" + name);
    fs::remove_all(dir);
    fs::create_directories(dir);
    const HfQuantConfig c = BuildQuantConfig(input);
    OJson hf = ToHfQuantConfigJson(c);
    OJson inl = ToInlineQuantizationConfig(c);
    if (edit_hf) edit_hf(hf);
    if (edit_inline) edit_inline(inl);
    OJson cfg = config;
    cfg["quantization_config"] = inl;
    WriteFileAtomic(dir / "config.json", cfg.dump(2));
    WriteFileAtomic(dir / "hf_quant_config.json", hf.dump(4));
    WriteSafetensors(dir / "model.safetensors", tensors);
    return dir;
  }
};

CheckReport Check(const fs::path& dir) { return CheckCheckpoint(dir); }

std::string Dump(const CheckReport& r) { return r.ToText(); }

// True iff some error finding has `rule` and its subject contains `subject`.
bool HasError(const CheckReport& r, const std::string& rule, const std::string& subject = "") {
  for (const auto& f : r.findings) {
    if (f.severity == Severity::kError && f.rule == rule && f.subject.find(subject) != std::string::npos) return true;
  }
  return false;
}
bool HasWarning(const CheckReport& r, const std::string& rule) {
  for (const auto& f : r.findings) {
    if (f.severity == Severity::kWarning && f.rule == rule) return true;
  }
  return false;
}

// ---- valid checkpoints pass ----------------------------------------------------------------------------

TEST(CheckValid, EveryFormatDenseAndMoe) {
  struct Case {
    const char* name;
    ExportFormat attn, mlp;
    bool moe;
  };
  const Case cases[] = {
      {"nvfp4", ExportFormat::kNvfp4, ExportFormat::kNvfp4, false},
      {"fp8", ExportFormat::kFp8, ExportFormat::kFp8, false},
      {"mixed_fp8_nvfp4", ExportFormat::kFp8, ExportFormat::kNvfp4, false},
      {"nvfp4_mlp_only", ExportFormat::kNone, ExportFormat::kNvfp4, false},
      {"w4a16", ExportFormat::kW4a16Nvfp4, ExportFormat::kW4a16Nvfp4, false},
      {"fp8_pc_pt", ExportFormat::kFp8PcPt, ExportFormat::kFp8PcPt, false},
      {"mxfp8", ExportFormat::kMxfp8, ExportFormat::kMxfp8, false},
      {"moe_nvfp4", ExportFormat::kNvfp4, ExportFormat::kNvfp4, true},
      {"moe_fp8", ExportFormat::kFp8, ExportFormat::kFp8, true},
      {"moe_experts_only", ExportFormat::kNone, ExportFormat::kNvfp4, true},
      {"moe_w4a16", ExportFormat::kW4a16Nvfp4, ExportFormat::kW4a16Nvfp4, true},
  };
  for (const auto& c : cases) {
    Synth s = Synth::Make(c.attn, c.mlp, c.moe);
    const CheckReport r = Check(s.Write(c.name));
    EXPECT_TRUE(r.ok()) << c.name << "\n" << Dump(r);
    EXPECT_EQ(r.warnings(), 0) << c.name << "\n" << Dump(r);
    EXPECT_GT(r.quantized_modules, 0) << c.name;
  }
}

TEST(CheckValid, ReportCountsAndJson) {
  Synth s = Synth::Make(ExportFormat::kNone, ExportFormat::kNvfp4, /*moe=*/false, /*layers=*/1);
  const CheckReport r = Check(s.Write("counts"));
  ASSERT_TRUE(r.ok()) << Dump(r);
  EXPECT_EQ(r.quant_algo, "NVFP4");
  EXPECT_EQ(r.kv_cache_quant_algo, "FP8");
  EXPECT_EQ(r.quantized_modules, 3);    // gate, up, down
  EXPECT_EQ(r.unquantized_linears, 5);  // q, k, v, o, lm_head
  const auto j = r.ToJson();
  EXPECT_EQ(j["ok"], true);
  EXPECT_EQ(j["findings"].size(), 0u);
}

// ---- hand-broken checkpoints are each caught -----------------------------------------------------------

TEST(CheckBroken, MissingInputScale) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  s.Remove("model.layers.0.mlp.down_proj.input_scale");
  const CheckReport r = Check(s.Write("missing_input_scale"));
  EXPECT_TRUE(HasError(r, "tensor.missing", "model.layers.0.mlp.down_proj.input_scale")) << Dump(r);
}

TEST(CheckBroken, ExpertLacksInputScale) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4, /*moe=*/true);
  s.Remove("model.layers.1.mlp.experts.2.down_proj.input_scale");
  const CheckReport r = Check(s.Write("expert_input_scale"));
  ASSERT_TRUE(HasError(r, "tensor.missing", "experts.2.down_proj.input_scale")) << Dump(r);
  EXPECT_NE(Dump(r).find("MoE expert"), std::string::npos);
  // FP8 experts need it too.
  Synth f = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8, /*moe=*/true);
  f.Remove("model.layers.0.mlp.experts.0.gate_proj.input_scale");
  EXPECT_TRUE(HasError(Check(f.Write("expert_input_scale_fp8")), "tensor.missing", "experts.0.gate_proj"));
}

TEST(CheckBroken, UnequalSiblingWeightScale2) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  s.At("model.layers.1.self_attn.k_proj.weight_scale_2") = Tensor::Scalar(0.5f);
  CheckReport r = Check(s.Write("sibling_ws2"));
  EXPECT_TRUE(HasError(r, "siblings.nvfp4", "model.layers.1.self_attn.{q_proj, k_proj, v_proj}.weight_scale_2"))
      << Dump(r);
  // Per-expert gate/up too, and input_scale as well.
  Synth m = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4, /*moe=*/true);
  m.At("model.layers.0.mlp.experts.1.up_proj.input_scale") = Tensor::Scalar(0.9f);
  r = Check(m.Write("sibling_expert_input"));
  EXPECT_TRUE(HasError(r, "siblings.nvfp4", "experts.1.{gate_proj, up_proj}.input_scale")) << Dump(r);
}

TEST(CheckBroken, Fp8SiblingsDifferingIsOnlyAWarning) {
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8);
  s.At("model.layers.0.mlp.up_proj.weight_scale") = Tensor::Scalar(0.25f);
  const CheckReport r = Check(s.Write("fp8_siblings"));
  EXPECT_TRUE(r.ok()) << Dump(r);
  EXPECT_TRUE(HasWarning(r, "siblings.fp8")) << Dump(r);
}

TEST(CheckBroken, QuantizedLmHeadListedAsExcluded) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  // lm_head's tensors are NVFP4 but the config (made from the module list) still excludes it.
  s.Remove("lm_head.weight");
  Synth q;
  q.Linear("lm_head", kVocab, kHidden, ExportFormat::kNvfp4);
  for (auto& t : q.tensors) s.tensors.push_back(t);
  const CheckReport r = Check(s.Write("lm_head_excluded"));
  EXPECT_TRUE(HasError(r, "exclude.quantized", "lm_head")) << Dump(r);
}

TEST(CheckBroken, WrongDtypes) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  std::vector<float> ones(kInter * kHidden / 16, 1.0f);
  s.At("model.layers.0.mlp.gate_proj.weight_scale") = Tensor::FromF32({kInter, kHidden / 16}, ones);
  s.At("model.layers.0.self_attn.o_proj.weight_scale_2") = Tensor::Zeros(DType::kBF16, {});
  const CheckReport r = Check(s.Write("wrong_dtype"));
  EXPECT_TRUE(HasError(r, "tensor.dtype", "model.layers.0.mlp.gate_proj.weight_scale")) << Dump(r);
  EXPECT_TRUE(HasError(r, "tensor.dtype", "model.layers.0.self_attn.o_proj.weight_scale_2")) << Dump(r);
  // An FP8 layer stored in BF16 with its scales.
  Synth f = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8);
  f.At("model.layers.1.mlp.down_proj.weight") = f.Random(DType::kBF16, {kHidden, kInter});
  EXPECT_TRUE(HasError(Check(f.Write("wrong_dtype_fp8")), "tensor.dtype", "model.layers.1.mlp.down_proj.weight"));
}

TEST(CheckBroken, WrongShapes) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  s.At("model.layers.0.mlp.up_proj.weight_scale") = s.Filled(DType::kF8E4M3, {kInter, kHidden / 8}, 0x38);
  s.At("model.layers.0.mlp.down_proj.input_scale") = Tensor::FromF32({1}, std::vector<float>{0.06f});
  const CheckReport r = Check(s.Write("wrong_shape"));
  EXPECT_TRUE(HasError(r, "tensor.shape", "model.layers.0.mlp.up_proj.weight_scale")) << Dump(r);
  EXPECT_TRUE(HasError(r, "tensor.shape", "model.layers.0.mlp.down_proj.input_scale")) << Dump(r);
}

TEST(CheckBroken, LeftoverInternalBuffers) {
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8);
  s.Add("model.layers.0.self_attn.q_proj.weight_quantizer._amax", Tensor::Scalar(1.0f));
  s.Add("model.layers.0.self_attn.k_bmm_quantizer._amax", Tensor::Scalar(1.0f));
  s.Add("model.layers.0.mlp.up_proj._double_scale", Tensor::Scalar(1.0f));
  const CheckReport r = Check(s.Write("leftover"));
  EXPECT_TRUE(HasError(r, "tensor.leftover", "q_proj.weight_quantizer._amax")) << Dump(r);
  EXPECT_TRUE(HasError(r, "tensor.leftover", "k_bmm_quantizer._amax")) << Dump(r);
  EXPECT_TRUE(HasError(r, "tensor.leftover", "up_proj._double_scale")) << Dump(r);
}

TEST(CheckBroken, ConfigFilesDisagree) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  CheckReport r = Check(s.Write("disagree_algo", nullptr, [](OJson& j) { j["quant_algo"] = "FP8"; }));
  EXPECT_TRUE(HasError(r, "config.agree", "quant_algo")) << Dump(r);
  r = Check(s.Write("disagree_kv", nullptr, [](OJson& j) { j.erase("kv_cache_scheme"); }));
  EXPECT_TRUE(HasError(r, "config.agree", "kv_cache_quant_algo")) << Dump(r);
  r = Check(s.Write("disagree_ignore", nullptr, [](OJson& j) { j["ignore"].push_back("model.norm"); }));
  EXPECT_TRUE(HasError(r, "config.agree", "exclude_modules")) << Dump(r);
  r = Check(s.Write("disagree_gs", [](OJson& j) { j["quantization"]["group_size"] = 32; }));
  EXPECT_TRUE(HasError(r, "config.agree", "group_size")) << Dump(r);
  r = Check(s.Write("no_producer", [](OJson& j) { j.erase("producer"); }));
  EXPECT_TRUE(HasError(r, "config.producer", "hf_quant_config.json")) << Dump(r);
  r = Check(s.Write("no_method", nullptr, [](OJson& j) { j["quant_method"] = "fp8"; }));
  EXPECT_TRUE(HasError(r, "config.quant_method")) << Dump(r);
  r = Check(s.Write("nvfp4_keys", [](OJson& j) { j["quantization"].erase("exclude_modules"); }));
  EXPECT_TRUE(HasError(r, "config.keys", "exclude_modules")) << Dump(r);

  Synth m = Synth::Make(ExportFormat::kFp8, ExportFormat::kNvfp4);
  r = Check(m.Write("disagree_layers", nullptr,
                    [](OJson& j) { j["quantized_layers"]["model.layers.0.mlp.up_proj"]["group_size"] = 32; }));
  EXPECT_TRUE(HasError(r, "config.agree", "quantized_layers")) << Dump(r);
}

TEST(CheckBroken, NestedShapeInsideConfigJson) {
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8, false, 1);
  OJson nested;
  auto use_nested = [&](OJson& j) { j = nested; };
  // FP8 with producer modelopt: vLLM copes (warning); W4A16_NVFP4 nested: vLLM raises (error).
  nested = ToHfQuantConfigJson(BuildQuantConfig(s.input));
  CheckReport r = Check(s.Write("nested_fp8", nullptr, use_nested));
  EXPECT_TRUE(r.ok()) << Dump(r);
  EXPECT_TRUE(HasWarning(r, "config.inline_shape")) << Dump(r);
  Synth w = Synth::Make(ExportFormat::kW4a16Nvfp4, ExportFormat::kW4a16Nvfp4, false, 1);
  nested = ToHfQuantConfigJson(BuildQuantConfig(w.input));
  r = Check(w.Write("nested_w4a16", nullptr, use_nested));
  EXPECT_TRUE(HasError(r, "config.inline_shape")) << Dump(r);
}

TEST(CheckBroken, MissingConfigFile) {
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8);
  const fs::path dir = s.Write("no_hf_quant_config");
  fs::remove(dir / "hf_quant_config.json");
  EXPECT_TRUE(HasError(Check(dir), "files.hf_quant_config"));
  fs::remove(dir / "config.json");
  const CheckReport r = Check(dir);
  EXPECT_TRUE(HasError(r, "files.config_json")) << Dump(r);
  EXPECT_TRUE(HasError(r, "config.missing")) << Dump(r);
}

TEST(CheckBroken, ExcludeEntrySubstringMatchesAQuantizedModule) {
  // A hand-written entry `model.layers.0.mlp.gate` is a substring of the quantized gate_proj.
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  auto add = [](OJson& list) { list.push_back("model.layers.0.mlp.gate"); };
  const CheckReport r = Check(s.Write(
      "exclude_substring", [&](OJson& j) { add(j["quantization"]["exclude_modules"]); },
      [&](OJson& j) { add(j["ignore"]); }));
  EXPECT_TRUE(HasError(r, "exclude.quantized", "model.layers.0.mlp.gate_proj")) << Dump(r);
  EXPECT_NE(Dump(r).find("substring"), std::string::npos);
}

TEST(CheckBroken, UnquantizedLinearNotExcluded) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4, /*moe=*/true);
  auto drop = [](OJson& list) {
    OJson kept = OJson::array();
    for (const auto& e : list) {
      if (e != "lm_head" && e != "model.layers.1.mlp.gate") kept.push_back(e);
    }
    list = kept;
  };
  const CheckReport r = Check(s.Write(
      "not_excluded", [&](OJson& j) { drop(j["quantization"]["exclude_modules"]); },
      [&](OJson& j) { drop(j["ignore"]); }));
  EXPECT_TRUE(HasError(r, "exclude.missing", "lm_head")) << Dump(r);
  EXPECT_TRUE(HasError(r, "exclude.missing", "model.layers.1.mlp.gate")) << Dump(r);
  // Embeddings and norms are not Linear and need no entry.
  EXPECT_FALSE(HasError(r, "exclude.missing", "embed_tokens")) << Dump(r);
  EXPECT_FALSE(HasError(r, "exclude.missing", "norm")) << Dump(r);
}

TEST(CheckBroken, NonFiniteAndNonPositiveScales) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4);
  // Keep siblings equal so only the value rule fires for q/k/v.
  for (const char* n : {"q_proj", "k_proj", "v_proj"}) {
    s.At(std::string("model.layers.0.self_attn.") + n + ".weight_scale_2") = Tensor::Scalar(INFINITY);
  }
  s.At("model.layers.1.self_attn.o_proj.input_scale") = Tensor::Scalar(NAN);
  s.At("model.layers.1.mlp.down_proj.input_scale") = Tensor::Scalar(0.0f);
  s.At("model.layers.0.self_attn.k_proj.k_scale") = Tensor::Scalar(-1.0f);
  s.At("model.layers.1.mlp.down_proj.weight_scale") = s.Filled(DType::kF8E4M3, {kHidden, kInter / 16}, 0x7F);
  const CheckReport r = Check(s.Write("bad_values"));
  EXPECT_TRUE(HasError(r, "scale.value", "model.layers.0.self_attn.q_proj.weight_scale_2")) << Dump(r);
  EXPECT_TRUE(HasError(r, "scale.value", "model.layers.1.self_attn.o_proj.input_scale")) << Dump(r);
  EXPECT_TRUE(HasError(r, "scale.value", "model.layers.1.mlp.down_proj.input_scale")) << Dump(r);
  EXPECT_TRUE(HasError(r, "scale.value", "k_proj.k_scale")) << Dump(r);
  EXPECT_TRUE(HasError(r, "scale.value", "model.layers.1.mlp.down_proj.weight_scale")) << Dump(r);
}

TEST(CheckBroken, GlobalScaleLargerThanTheWeightsNeed) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kFp8, false, 1);
  // No q/k/v block reaches 448: their shared weight_scale_2 is too large. One sibling at 448 suffices.
  for (const char* n : {"q_proj", "k_proj", "v_proj"}) {
    s.At(std::string("model.layers.0.self_attn.") + n + ".weight_scale") =
        s.Filled(DType::kF8E4M3, {kHidden, kHidden / 16}, 0x38);
  }
  s.At("model.layers.0.self_attn.o_proj.weight_scale") = s.Filled(DType::kF8E4M3, {kHidden, kHidden / 16}, 0x38);
  static_cast<uint8_t*>(s.At("model.layers.0.self_attn.o_proj.weight_scale").mutable_raw())[5] = 0x7E;
  s.At("model.layers.0.mlp.down_proj.weight") = s.Filled(DType::kF8E4M3, {kHidden, kInter}, 0x30);
  const CheckReport r = Check(s.Write("global_scale"));
  EXPECT_TRUE(r.ok()) << Dump(r);
  int n = 0;
  for (const auto& f : r.findings) {
    if (f.rule != "scale.global") continue;
    ++n;
    EXPECT_TRUE(f.subject ==
                    "model.layers.0.self_attn.k_proj, model.layers.0.self_attn.q_proj, "
                    "model.layers.0.self_attn.v_proj" ||
                f.subject == "model.layers.0.mlp.down_proj")
        << f.subject;
  }
  EXPECT_EQ(n, 2) << Dump(r);
}

TEST(CheckBroken, NanFp8Weight) {
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8);
  s.At("model.layers.0.mlp.down_proj.weight") = s.Filled(DType::kF8E4M3, {kHidden, kInter}, 0xFF);
  EXPECT_TRUE(HasError(Check(s.Write("nan_fp8")), "tensor.value", "model.layers.0.mlp.down_proj.weight"));
}

TEST(CheckBroken, ScalesTheFormatDoesNotTake) {
  Synth s = Synth::Make(ExportFormat::kFp8PcPt, ExportFormat::kFp8PcPt);
  s.Add("model.layers.0.mlp.up_proj.input_scale", Tensor::Scalar(0.1f));
  CheckReport r = Check(s.Write("pcpt_input_scale"));
  EXPECT_TRUE(HasError(r, "tensor.unexpected", "model.layers.0.mlp.up_proj.input_scale")) << Dump(r);
  // W4A16's stray input_scale is tolerated by runtimes: a warning.
  Synth w = Synth::Make(ExportFormat::kW4a16Nvfp4, ExportFormat::kW4a16Nvfp4);
  w.Add("model.layers.0.mlp.up_proj.input_scale", Tensor::Scalar(0.1f));
  r = Check(w.Write("w4a16_input_scale"));
  EXPECT_TRUE(r.ok()) << Dump(r);
  EXPECT_TRUE(HasWarning(r, "tensor.unexpected")) << Dump(r);
}

// SmoothQuant's INT8 export (ModelOpt's int8_sq) carries a pre_quant_scale per Linear: check accepts it (for
// TRT-LLM: vLLM has no W8A8_SQ path) and names a wrong shape, a non-positive factor, fused siblings whose
// pre_quant_scale or input_scale differ, and a pre_quant_scale on a format no runtime smooths.
TEST(CheckPreQuantScale, Int8SqAcceptedAndItsErrorsNamed) {
  CheckOptions trt;
  trt.target = TargetRuntime::kTrtllm;
  // The synthetic writer gives siblings one input_scale per call; q/k/v and gate/up share theirs already.
  Synth ok = Synth::Make(ExportFormat::kInt8Sq, ExportFormat::kInt8Sq, false, 1, false);
  CheckReport r = CheckCheckpoint(ok.Write("sq_ok"), trt);
  EXPECT_TRUE(r.ok()) << Dump(r);

  Synth shape = ok;
  shape.At("model.layers.0.mlp.down_proj.pre_quant_scale") = Tensor::FromF32({kHidden}, std::vector<float>(kHidden, 1.f));
  r = CheckCheckpoint(shape.Write("sq_shape"), trt);
  EXPECT_TRUE(HasError(r, "tensor.shape", "model.layers.0.mlp.down_proj.pre_quant_scale")) << Dump(r);

  Synth neg = ok;
  std::vector<float> v(kInter, 0.5f);
  v[3] = 0.0f;
  v[7] = -1.0f;
  neg.At("model.layers.0.mlp.down_proj.pre_quant_scale") = Tensor::FromF32({kInter}, v).FromF32To(DType::kBF16);
  r = CheckCheckpoint(neg.Write("sq_neg"), trt);
  EXPECT_TRUE(HasError(r, "scale.value", "model.layers.0.mlp.down_proj.pre_quant_scale")) << Dump(r);
  EXPECT_NE(Dump(r).find("2 of "), std::string::npos) << Dump(r);

  Synth sib = ok;
  std::vector<float> w(kHidden, 0.5f);
  w[0] = 0.25f;
  sib.At("model.layers.0.self_attn.k_proj.pre_quant_scale") = Tensor::FromF32({kHidden}, w).FromF32To(DType::kBF16);
  sib.At("model.layers.0.mlp.up_proj.input_scale") = Tensor::Scalar(0.5f);
  r = CheckCheckpoint(sib.Write("sq_siblings"), trt);
  EXPECT_TRUE(HasError(r, "siblings.pre_quant_scale", "model.layers.0.self_attn.k_proj.pre_quant_scale")) << Dump(r);
  EXPECT_TRUE(HasError(r, "siblings.int8_sq", "model.layers.0.mlp.{gate_proj, up_proj}.input_scale")) << Dump(r);

  Synth some = ok;
  some.Remove("model.layers.0.self_attn.v_proj.pre_quant_scale");
  r = CheckCheckpoint(some.Write("sq_some"), trt);
  EXPECT_TRUE(HasError(r, "siblings.pre_quant_scale", "model.layers.0.self_attn.{q_proj, k_proj, v_proj}")) << Dump(r);

  Synth fp8 = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8, false, 1, false);
  fp8.Add("model.layers.0.mlp.down_proj.pre_quant_scale", Tensor::FromF32({kInter}, std::vector<float>(kInter, 1.f)));
  r = Check(fp8.Write("fp8_pqs"));
  EXPECT_TRUE(HasError(r, "tensor.unexpected", "model.layers.0.mlp.down_proj.pre_quant_scale")) << Dump(r);
}

TEST(CheckBroken, NvFp4InputDimNotDivisible) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4, false, 1);
  s.Linear("model.layers.0.mlp.extra_proj", 16, 24, ExportFormat::kNvfp4);  // in = 24 is not a multiple of 16
  s.At("model.layers.0.mlp.extra_proj.weight_scale") = s.Filled(DType::kF8E4M3, {16, 1}, 0x38);
  EXPECT_TRUE(HasError(Check(s.Write("nvfp4_dims")), "tensor.dims", "extra_proj.weight"));
}

TEST(CheckBroken, SiblingFormatsDiffer) {
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kNvfp4, false, 1);
  // Re-quantize v_proj as NVFP4 while q/k stay FP8 (MIXED_PRECISION makes it representable).
  s.Remove("model.layers.0.self_attn.v_proj.weight");
  s.Remove("model.layers.0.self_attn.v_proj.weight_scale");
  s.Remove("model.layers.0.self_attn.v_proj.input_scale");
  s.input.modules.erase(std::find_if(s.input.modules.begin(), s.input.modules.end(), [](const ModuleExport& m) {
    return m.name == "model.layers.0.self_attn.v_proj";
  }));
  s.Linear("model.layers.0.self_attn.v_proj", kHidden, kHidden, ExportFormat::kNvfp4);
  const CheckReport r = Check(s.Write("sibling_formats"));
  EXPECT_TRUE(HasError(r, "siblings.format", "model.layers.0.self_attn.{q_proj, k_proj, v_proj}")) << Dump(r);
}

TEST(CheckBroken, MixedPrecisionExpertsMustShareOneAlgo) {
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kNvfp4, /*moe=*/true, 1);
  for (const char* n : {"gate_proj", "up_proj", "down_proj"}) {
    const std::string m = std::string("model.layers.0.mlp.experts.2.") + n;
    for (const char* t : {".weight", ".weight_scale", ".weight_scale_2", ".input_scale"}) s.Remove(m + t);
    s.input.modules.erase(std::find_if(s.input.modules.begin(), s.input.modules.end(),
                                       [&](const ModuleExport& x) { return x.name == m; }));
    s.Linear(m, std::string(n) == "down_proj" ? kHidden : kInter, std::string(n) == "down_proj" ? kInter : kHidden,
             ExportFormat::kFp8);
  }
  const CheckReport r = Check(s.Write("mixed_experts"));
  EXPECT_TRUE(HasError(r, "mixed.experts", "model.layers.0.mlp.experts")) << Dump(r);
}

TEST(CheckBroken, RuntimeDoesNotAcceptAlgo) {
  Synth s = Synth::Make(ExportFormat::kFp8PcPt, ExportFormat::kFp8);  // MIXED with a per-channel layer
  const fs::path dir = s.Write("mixed_pcpt");
  const CheckReport r = Check(dir);
  EXPECT_TRUE(HasError(r, "algo.runtime", "quantized_layers.model.layers.0.self_attn.q_proj")) << Dump(r);
  CheckOptions any;
  any.target = TargetRuntime::kAny;
  EXPECT_TRUE(CheckCheckpoint(dir, any).ok());
  Synth w = Synth::Make(ExportFormat::kW4a16Nvfp4, ExportFormat::kW4a16Nvfp4);
  CheckOptions trt;
  trt.target = TargetRuntime::kTrtllm;
  EXPECT_TRUE(HasError(CheckCheckpoint(w.Write("w4a16_trt"), trt), "algo.runtime", "quant_algo"));
}

TEST(CheckBroken, KvScalesMissingIsAWarning) {
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8, false, 1, /*kv=*/false);
  s.input.kv_cache = KvCacheAlgo::kFp8;
  const CheckReport r = Check(s.Write("kv_missing"));
  EXPECT_TRUE(r.ok()) << Dump(r);
  EXPECT_TRUE(HasWarning(r, "kv.missing")) << Dump(r);
}

TEST(CheckBroken, QuantizedRouter) {
  Synth s = Synth::Make(ExportFormat::kNvfp4, ExportFormat::kNvfp4, /*moe=*/true, 1);
  s.Remove("model.layers.0.mlp.gate.weight");
  s.input.extra_unquantized.clear();
  s.Linear("model.layers.0.mlp.gate", 16, kHidden, ExportFormat::kNvfp4);
  EXPECT_TRUE(HasError(Check(s.Write("router")), "router.quantized", "model.layers.0.mlp.gate"));
}

TEST(CheckBroken, NotADirectoryOrDamagedTensors) {
  EXPECT_TRUE(HasError(CheckCheckpoint("/nonexistent/qforge"), "files.dir"));
  Synth s = Synth::Make(ExportFormat::kFp8, ExportFormat::kFp8, false, 1);
  const fs::path dir = s.Write("damaged");
  WriteFileAtomic(dir / "model.safetensors", "garbage");
  EXPECT_TRUE(HasError(Check(dir), "files.tensors"));
}

// ---- checkpoints written by ModelOpt itself ------------------------------------------------------------

TEST(CheckModelOptReference, EveryGoldenExportPasses) {
  const fs::path root = fs::path(QF_SOURCE_DIR) / "tests" / "golden" / "modelopt_export";
  if (!fs::exists(root)) GTEST_SKIP() << "no ModelOpt reference exports under " << root;
  int n = 0;
  for (const auto& e : fs::directory_iterator(root)) {
    if (!e.is_directory()) continue;
    const CheckReport r = Check(e.path());
    EXPECT_TRUE(r.ok()) << Dump(r);
    EXPECT_GT(r.quantized_modules, 0) << e.path();
    // ModelOpt leaves FP8 siblings' scales separate (contract §6); nothing else is worth a warning.
    for (const auto& f : r.findings) EXPECT_EQ(f.rule, "siblings.fp8") << Dump(r);
    ++n;
  }
  EXPECT_GT(n, 0);
}

// qforge's config writer, given the per-module formats ModelOpt chose, reproduces both of ModelOpt's config
// documents exactly (keys, key order, exclude summary, config groups), apart from the producer block.
TEST(CheckModelOptReference, QuantConfigMatchesModelOptByteForByte) {
  const fs::path root = fs::path(QF_SOURCE_DIR) / "tests" / "golden" / "modelopt_export";
  if (!fs::exists(root)) GTEST_SKIP() << "no ModelOpt reference exports under " << root;
  for (const auto& e : fs::directory_iterator(root)) {
    if (!e.is_directory()) continue;
    SCOPED_TRACE(e.path().string());
    const CheckpointQuantConfigs read = ReadCheckpointQuantConfigs(e.path());
    ASSERT_TRUE(read.hf_quant_config.has_value());
    const HfQuantConfig& mo = *read.hf_quant_config;
    QuantConfigInput in;
    in.producer = mo.producer;
    if (mo.kv_cache_quant_algo) in.kv_cache = *KvCacheAlgoFromName(*mo.kv_cache_quant_algo);
    if (mo.is_mixed()) {
      for (const auto& [name, lc] : mo.quantized_layers) {
        in.modules.push_back({name, *ExportFormatFromQuantAlgo(lc.quant_algo), lc.group_size.value_or(0)});
      }
    } else {
      const ExportFormat f = *ExportFormatFromQuantAlgo(*mo.quant_algo);
      const CheckpointTensors ck = CheckpointTensors::Open(e.path());
      for (const auto& t : ck.names()) {
        const std::string suffix = ".weight_scale";
        if (t.size() > suffix.size() && t.compare(t.size() - suffix.size(), suffix.size(), suffix) == 0) {
          in.modules.push_back({t.substr(0, t.size() - suffix.size()), f, mo.group_size.value_or(0)});
        }
      }
      for (const auto& x : mo.exclude_modules.value_or(std::vector<std::string>{})) {
        in.modules.push_back({x, ExportFormat::kNone, 0});
      }
    }
    const HfQuantConfig mine = BuildQuantConfig(in);
    EXPECT_EQ(ToHfQuantConfigJson(mine).dump(1), read.hf_quant_config_json.dump(1));
    EXPECT_EQ(ToInlineQuantizationConfig(mine).dump(1), read.inline_json.dump(1));
  }
}

}  // namespace
}  // namespace qforge::exporter
