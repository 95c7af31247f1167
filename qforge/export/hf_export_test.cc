// Export safety: quantizer specs no export format holds are refused before calibration (naming the quantizer
// and its quant_cfg entry) instead of being written as a neighbouring format, and non-finite values in the
// tensors an export copies unchanged (excluded lm_head, norms, embeddings) are an error naming tensor and file.
#include "qforge/export/hf_export.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <limits>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/config/presets.h"
#include "qforge/export/check.h"
#include "qforge/io/safetensors.h"
#include "qforge/model/weight_encoder.h"
#include "qforge/numerics/qdq.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using config::Json;
const fs::path kTiny = fs::path(QF_SHARED_DIR) / "data" / "models" / "tiny";

#define EXPECT_HAS(haystack, needle) EXPECT_NE((haystack).find(needle), std::string::npos) << (haystack)

std::unique_ptr<Model> LoadLazy(const fs::path& dir) {
  ModelLoadOptions o;
  o.load_all_layers = false;
  return Model::Load(dir, o);
}

// quant_cfg: everything off, then `entries` (a JSON list of ModelOpt entries).
config::QuantCfgList Cfg(const std::string& entries) {
  Json list = Json::parse(entries);
  list.insert(list.begin(), Json{{"quantizer_name", "*"}, {"enable", false}});
  return config::NormalizeQuantCfgList(list);
}

// The error CheckExportable gives for `quant_cfg` on the tiny Qwen2, or "(no error)".
std::string ExportableError(const config::QuantCfgList& quant_cfg) {
  auto m = LoadLazy(kTiny / "qwen2");
  QuantState s = QuantState::ForModel(*m);
  s.Apply(quant_cfg);
  try {
    CheckExportable(*m, s);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

constexpr const char* kNvfp4Input =
    R"({"num_bits": [2, 1], "block_sizes": {"-1": 16, "type": "dynamic", "scale_bits": [4, 3]}})";

std::string Weight(const std::string& cfg) {
  return R"([{"quantizer_name": "*mlp*weight_quantizer", "cfg": )" + cfg + "}]";
}

TEST(CheckExportable, PresetsThatExportPass) {
  for (const char* q : {"fp8", "nvfp4", "nvfp4_mlp_only", "w4a16_nvfp4", "mxfp8"}) {
    EXPECT_EQ(ExportableError(config::ResolveQformat(q, "fp8").quant_cfg), "(no error)") << q;
  }
  EXPECT_EQ(ExportableError(config::ResolveQformat("fp8", "fp8_cast").quant_cfg), "(no error)");
  EXPECT_EQ(ExportableError(config::ResolveQformat("nvfp4", "nvfp4").quant_cfg), "(no error)");
}

TEST(CheckExportable, E2M1WithE8M0ScalesAtBlock16IsNotSilentlyMxfp4) {
  const std::string e = ExportableError(Cfg(Weight(
      R"({"num_bits": [2, 1], "block_sizes": {"-1": 16, "type": "dynamic", "scale_bits": [8, 0]}})")));
  EXPECT_HAS(e, "model.layers.0.mlp.gate_proj.weight_quantizer");
  EXPECT_HAS(e, "quant_cfg entry 1");
  EXPECT_HAS(e, "format 'mxfp4' stores block sizes {-1: 32}, the quantizer has {-1: 16}");
  // Block 32 is MXFP4.
  EXPECT_EQ(ExportableError(Cfg(Weight(
                R"({"num_bits": [2, 1], "block_sizes": {"-1": 32, "type": "dynamic", "scale_bits": [8, 0]}})"))),
            "(no error)");
  // Static E8M0 blocks are not MX.
  EXPECT_HAS(ExportableError(Cfg(Weight(R"({"num_bits": [2, 1], "block_sizes": {"-1": 32, "scale_bits": [8, 0]}})"))),
             "MX formats need `type: dynamic` block scales");
}

TEST(CheckExportable, Nvfp4NeedsBlock16) {
  const std::string cfg = R"([{"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": [2, 1], "block_sizes":
      {"-1": 32, "type": "dynamic", "scale_bits": [4, 3]}}}, {"quantizer_name": "*lm_head*", "enable": false}])";
  const std::string e = ExportableError(Cfg(cfg));
  EXPECT_HAS(e, "quant_cfg entry 1");
  EXPECT_HAS(e, "'w4a16_nvfp4' stores block sizes {-1: 16}, the quantizer has {-1: 32}");
}

TEST(CheckExportable, BlockSizesAndAxesTheFormatCannotHold) {
  EXPECT_HAS(ExportableError(Cfg(Weight(R"({"num_bits": 4, "block_sizes": {"-1": 64}})"))),
             "'int4_awq' stores block sizes {-1: 128}, the quantizer has {-1: 64}");
  EXPECT_HAS(ExportableError(Cfg(Weight(R"({"num_bits": [4, 3], "block_sizes": {"-1": 64, "-2": 64}})"))),
             "'fp8_pb_wo' stores block sizes {-1: 128, -2: 128}");
  EXPECT_HAS(ExportableError(Cfg(Weight(R"({"num_bits": [4, 3], "axis": -1})"))), "the quantizer has axis (-1)");
  EXPECT_HAS(ExportableError(Cfg(Weight(R"({"num_bits": 6, "axis": 0})"))), "int6_per_channel has no HF export format");
}

TEST(CheckExportable, InputQuantizerTheFormatsRuntimeWouldNotApply) {
  // NVFP4 weights with an INT8 input: the runtime would quantize activations to NVFP4.
  const std::string cfg = R"([{"quantizer_name": "*mlp*weight_quantizer", "cfg": )" + std::string(kNvfp4Input) +
                          R"(}, {"quantizer_name": "*mlp*input_quantizer", "cfg": {"num_bits": 8}}])";
  const std::string e = ExportableError(Cfg(cfg));
  EXPECT_HAS(e, "quantizer 'model.layers.0.mlp.gate_proj.input_quantizer' (set by quant_cfg entry 2) is int8");
  EXPECT_HAS(e, "exports as 'nvfp4'");
  // FP8 weights without an input quantizer have no input_scale to write.
  EXPECT_HAS(ExportableError(Cfg(Weight(R"({"num_bits": [4, 3]})"))), "the module's input quantizer is disabled");
}

TEST(CheckExportable, QuantizersNoExportRepresents) {
  const std::string q = ExportableError(Cfg(R"([{"quantizer_name": "*q_bmm_quantizer", "cfg": {"num_bits": [4, 3]}}])"));
  EXPECT_HAS(q, "model.layers.0.self_attn.q_bmm_quantizer");
  EXPECT_HAS(q, "quant_cfg entry 1");
  EXPECT_HAS(q, "no export format represents a q_bmm_quantizer");
  EXPECT_HAS(ExportableError(Cfg(R"([{"quantizer_name": "*output_quantizer", "cfg": {"num_bits": [4, 3]}}])")),
             "represents a output_quantizer");
}

TEST(CheckExportable, KvFormatsThatCannotBeExported) {
  const std::string e =
      ExportableError(Cfg(R"([{"quantizer_name": "*[kv]_bmm_quantizer", "cfg": {"num_bits": 4}}])"));
  EXPECT_HAS(e, "model.layers.0.self_attn.k_bmm_quantizer");
  EXPECT_HAS(e, "KV-cache format int4 cannot be exported");
  EXPECT_HAS(ExportableError(Cfg(R"([{"quantizer_name": "*[kv]_bmm_quantizer", "cfg": {"num_bits": [4, 3], "axis": 0}}])")),
             "KV-cache format fp8_per_channel cannot be exported");
  EXPECT_HAS(ExportableError(Cfg(R"([{"quantizer_name": "*k_bmm_quantizer", "cfg": {"num_bits": [4, 3]}},
                                     {"quantizer_name": "*v_bmm_quantizer", "cfg": {"num_bits": 8}}])")),
             "KV-cache quantizers use different formats");
  EXPECT_EQ(ExportableError(Cfg(R"([{"quantizer_name": "*[kv]_bmm_quantizer", "cfg": {"num_bits": [4, 3]}}])")),
            "(no error)");
}

// A copy of tiny/qwen2 whose tensor `damaged` gets a NaN at element 3, exported with MXFP8 weights (no amax
// needed, so no calibration) and lm_head excluded.
class NonFiniteCopy : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("qf_hf_export_" + std::to_string(::getpid()) + "_" +
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_ / "model");
    fs::copy_file(kTiny / "qwen2" / "config.json", root_ / "model" / "config.json");
  }
  void TearDown() override { fs::remove_all(root_); }
  // Writes the model with `damaged` (if non-empty) holding `value` at element 3, then exports it.
  std::string Export(const std::string& damaged, float value) {
    auto f = SafetensorsFile::Open(kTiny / "qwen2" / "model.safetensors");
    std::vector<std::pair<std::string, Tensor>> tensors;
    for (const auto& n : f->names()) {
      tensors.emplace_back(n, f->Get(n).Clone());
      if (n == damaged) tensors.back().second.mutable_data<float>()[3] = value;
    }
    WriteSafetensors(root_ / "model" / "model.safetensors", tensors);
    auto m = LoadLazy(root_ / "model");
    QuantState s = QuantState::ForModel(*m);
    s.Apply(Cfg(R"([{"quantizer_name": "*weight_quantizer", "cfg": {"num_bits": [4, 3], "block_sizes":
        {"-1": 32, "type": "dynamic", "scale_bits": [8, 0]}}}, {"quantizer_name": "*lm_head*", "enable": false},
        {"quantizer_name": "*embed_tokens*", "enable": false}])"));
    HfExportOptions o;
    o.show_progress = false;
    try {
      ExportHfCheckpoint(*m, s, root_ / "out", o);
    } catch (const Error& e) {
      return e.what();
    }
    return "(no error)";
  }
  fs::path root_;
};

TEST_F(NonFiniteCopy, CleanModelExportsAndPassesCheck) {
  ASSERT_EQ(Export("", 0.f), "(no error)");
  const exporter::CheckReport r = exporter::CheckCheckpoint(root_ / "out");
  EXPECT_TRUE(r.ok()) << r.ToText();
}

TEST_F(NonFiniteCopy, NanInExcludedLmHeadNormAndBiasAreErrors) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  for (const auto& [tensor, value] : std::vector<std::pair<std::string, float>>{
           {"lm_head.weight", nan},
           {"model.norm.weight", inf},
           {"model.layers.1.input_layernorm.weight", -inf},
           {"model.layers.0.self_attn.q_proj.bias", nan},
           {"model.embed_tokens.weight", nan}}) {
    const std::string e = Export(tensor, value);
    EXPECT_HAS(e, "tensor '" + tensor + "' in");
    EXPECT_HAS(e, "model.safetensors has 1 non-finite value(s) (first at flat index 3)");
    EXPECT_FALSE(fs::exists(root_ / "out")) << tensor;
  }
}

// A staged export (weights planned and encoded before calibration, input and KV scales predicted) writes
// the very bytes of a one-call export from the calibrated state; a prediction calibration does not meet
// makes Finish decline, leaving nothing behind.
class StagedExport : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("qforge_staged_" + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    model_ = LoadLazy(kTiny / "qwen3_moe");
  }
  void TearDown() override { fs::remove_all(root_); }
  // `qformat`'s state with every weight's max amax (what calibration computes first).
  QuantState WeightsCalibrated(const std::string& qformat) {
    QuantState s = QuantState::ForModel(*model_);
    s.Apply(config::ResolveQformat(qformat, "fp8").quant_cfg);
    for (auto& q : s.quantizers()) {
      if (q.role != QuantizerRole::kWeight || !q.NeedsCalibration()) continue;
      const Tensor w = model_->LinearWeight(q.module);
      const QuantSpec spec = q.spec();
      q.MergeAmax(ComputeAmax(spec, w.span<float>(), w.shape(), q.slot.name),
                  AmaxShape(spec, w.shape()).value_or(std::vector<int64_t>{}));
    }
    return s;
  }
  // The state after "calibration": every activation quantizer that calibrates gets a per-tensor amax.
  static QuantState Calibrated(QuantState s) {
    float v = 1.0f;
    for (auto& q : s.quantizers()) {
      if (!Traits(q.role).is_activation || !q.NeedsCalibration()) continue;
      q.MergeAmax({v}, {});
      v += 0.25f;
    }
    return s;
  }
  fs::path root_;
  std::unique_ptr<Model> model_;
};

// Background: the encoding on a thread of its own (EncodeWeightsInBackground), as the whole-model
// calibration on a device runs it beside the forward. Same bytes either way.
TEST_F(StagedExport, WritesTheBytesOfAOneCallExport) {
  for (const bool background : {false, true})
  for (const char* qformat : {"nvfp4", "fp8"}) {
    const QuantState before = WeightsCalibrated(qformat);
    const QuantState after = Calibrated(before);
    HfExportOptions o;
    o.show_progress = false;
    o.max_shard_bytes = 1 << 14;  // several shards
    const HfExportReport want = ExportHfCheckpoint(*model_, after, root_ / "one", o);
    std::optional<HfExportReport> got;
    {
      HostWeightEncoder encoder(*model_);
      // The state it was planned from goes away (or changes, as calibration changes it) while the thread
      // encodes: the thread must read none of it.
      auto planned = std::make_unique<QuantState>(before);
      StagedHfExport e(*model_, *planned, root_ / "staged", o, /*calibrated=*/false);
      if (background) {
        e.EncodeWeightsInBackground(encoder);
      } else {
        e.EncodeWeights();
      }
      for (auto& q : planned->quantizers()) q = Quantizer{};
      planned.reset();
      EXPECT_FALSE(fs::exists(root_ / "staged"));  // nothing in place before Finish
      got = e.Finish(after);
    }
    ASSERT_TRUE(got.has_value()) << qformat;
    EXPECT_GT(got->num_shards, 1) << qformat;
    EXPECT_EQ(got->num_shards, want.num_shards);
    EXPECT_EQ(got->kv_scales_written, want.kv_scales_written);
    EXPECT_EQ(got->layers.size(), want.layers.size());
    for (const auto& entry : fs::directory_iterator(root_ / "one")) {
      const fs::path other = root_ / "staged" / entry.path().filename();
      ASSERT_TRUE(fs::exists(other)) << other;
      EXPECT_EQ(ReadFileToString(entry.path()), ReadFileToString(other)) << qformat << " " << other;
    }
    fs::remove_all(root_ / "one");
    fs::remove_all(root_ / "staged");
  }
}

// Layer by layer (layerwise calibration): the layout is planned before any weight amax exists, and each
// layer is encoded from a state that has the weight amax of that layer and the ones before it only. The
// files are still the one-call export's bytes. Background: each decoder layer encoded on a thread of its
// own (EncodeLayerInBackground, as layerwise calibration on a device does beside the layer's forward), from
// a state destroyed before the thread is waited for; WaitLayer after some layers, none after others (the
// next EncodeLayer* and Finish wait).
TEST_F(StagedExport, LayerByLayerWritesTheBytesOfAOneCallExport) {
  for (const bool background : {false, true})
  for (const char* qformat : {"nvfp4", "fp8"}) {
    SCOPED_TRACE(::testing::Message() << qformat << (background ? " background" : ""));
    const QuantState before = WeightsCalibrated(qformat);
    const QuantState after = Calibrated(before);
    HfExportOptions o;
    o.show_progress = false;
    o.max_shard_bytes = 1 << 14;
    const HfExportReport want = ExportHfCheckpoint(*model_, after, root_ / "one", o);
    // The weight amax of the Linears in layers after `l` removed.
    auto up_to = [&](int l) {
      QuantState s = before;
      for (auto& q : s.quantizers()) {
        if (q.role != QuantizerRole::kWeight || model_->modules()[static_cast<size_t>(q.module)].layer <= l) continue;
        q.amax.clear();
        q.has_amax = false;
      }
      return s;
    };
    std::optional<HfExportReport> got;
    {
      StagedHfExport e(*model_, up_to(-2), root_ / "staged", o, /*calibrated=*/false, /*by_layer=*/true);
      HostWeightEncoder encoder(*model_);
      for (int l = -1; l < model_->num_layers(); ++l) {
        if (!background || l < 0) {
          e.EncodeLayer(up_to(l), l);
          continue;
        }
        auto planned = std::make_unique<QuantState>(up_to(l));
        e.EncodeLayerInBackground(*planned, l, encoder);
        for (auto& q : planned->quantizers()) q = Quantizer{};
        planned.reset();
        if (l % 2 == 0) e.WaitLayer();
      }
      got = e.Finish(after);
    }
    ASSERT_TRUE(got.has_value()) << qformat;
    EXPECT_EQ(got->num_shards, want.num_shards);
    ASSERT_EQ(got->layers.size(), want.layers.size());
    for (size_t i = 0; i < want.layers.size(); ++i) EXPECT_EQ(got->layers[i].module, want.layers[i].module);  // model order
    for (const auto& entry : fs::directory_iterator(root_ / "one")) {
      const fs::path other = root_ / "staged" / entry.path().filename();
      ASSERT_TRUE(fs::exists(other)) << other;
      EXPECT_EQ(ReadFileToString(entry.path()), ReadFileToString(other)) << qformat << " " << other;
    }
    fs::remove_all(root_ / "one");
    fs::remove_all(root_ / "staged");
  }
}

// Calibration that leaves a required input scale without amax fails the staged export exactly as it fails a
// one-call export (same message), and the staged weights already written are removed.
TEST_F(StagedExport, AMissingInputAmaxFailsAsInAOneCallExportAndLeavesNothing) {
  const QuantState before = WeightsCalibrated("nvfp4");
  QuantState after = Calibrated(before);
  for (auto& q : after.quantizers()) {
    if (q.role == QuantizerRole::kInput && q.enabled()) {
      q.amax.clear();
      q.has_amax = false;
      break;
    }
  }
  HfExportOptions o;
  o.show_progress = false;
  std::string one_call, staged;
  try {
    ExportHfCheckpoint(*model_, after, root_ / "one", o);
  } catch (const Error& e) {
    one_call = e.what();
  }
  try {
    StagedHfExport e(*model_, before, root_ / "staged", o, /*calibrated=*/false);
    e.EncodeWeights();
    (void)e.Finish(after);
  } catch (const Error& e) {
    staged = e.what();
  }
  EXPECT_HAS(one_call, "its input quantizer has no calibrated amax");
  EXPECT_EQ(staged, one_call);
  EXPECT_FALSE(fs::exists(root_ / "staged"));
  for (const auto& entry : fs::directory_iterator(root_)) {
    EXPECT_EQ(entry.path().filename().string().find("staged"), std::string::npos) << entry.path();
  }
}

// An encoder that fails on its third weight, on the background thread: Finish throws that error and
// leaves nothing; an export abandoned while its thread encodes stops it and leaves nothing either.
TEST_F(StagedExport, ABackgroundEncodingErrorReachesFinishAndAnAbandonedOneStops) {
  struct Failing final : WeightEncoder {
    explicit Failing(Model& m) : host(m) {}
    EncodedWeight Encode(int module, PackFormat f, const PackInputs& in, std::string_view what) override {
      if (++calls == 3) QF_CHECK(false, "encoding '{}' failed (test)", what);
      return host.Encode(module, f, in, what);
    }
    HostWeightEncoder host;
    std::atomic<int> calls{0};
  };
  const QuantState before = WeightsCalibrated("nvfp4");
  const QuantState after = Calibrated(before);
  HfExportOptions o;
  o.show_progress = false;
  std::string error;
  {
    Failing encoder(*model_);
    StagedHfExport e(*model_, before, root_ / "staged", o, /*calibrated=*/false);
    e.EncodeWeightsInBackground(encoder);
    try {
      (void)e.Finish(after);
    } catch (const Error& err) {
      error = err.what();
    }
    EXPECT_EQ(encoder.calls.load(), 3);  // nothing encoded after the error
  }
  EXPECT_HAS(error, "failed (test)");
  EXPECT_FALSE(fs::exists(root_ / "staged"));
  {
    HostWeightEncoder encoder(*model_);
    StagedHfExport e(*model_, before, root_ / "abandoned", o, /*calibrated=*/false);
    e.EncodeWeightsInBackground(encoder);
  }  // destroyed without Finish
  EXPECT_FALSE(fs::exists(root_ / "abandoned"));
  for (const auto& entry : fs::directory_iterator(root_)) {
    EXPECT_EQ(entry.path().filename().string().find("staged"), std::string::npos) << entry.path();
    EXPECT_EQ(entry.path().filename().string().find("abandoned"), std::string::npos) << entry.path();
  }
}

}  // namespace
}  // namespace qforge
