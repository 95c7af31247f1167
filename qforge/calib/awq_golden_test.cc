// AWQ against ModelOpt 0.47's own results (tests/golden/awq, written by tools/make_awq_golden.py on the H200):
//  * bf16 (the model as users hold it): from the statistics ModelOpt's search gathered (act_scale,
//    per-channel input amax) and the alpha it chose, calib/awq.h and ApplyPreQuantScale give its weight
//    salience, pre_quant_scale, input amax, smoothed weights and weight amax bit for bit; from its awq_clip
//    losses, its clipped amax; and calib/pre_quant_scale.h's export preprocessing (down_proj into up_proj,
//    siblings to one scale) its export-stage scales, weights and amax bit for bit;
//  * f32 (ModelOpt on the model cast to fp32, qforge on an fp32 copy of the checkpoint, CPU): the whole
//    algorithm end to end through Calibrate on the same token ids agrees within fp32 noise: for every group of
//    Linears sharing a scale (and every single one) whose ModelOpt search has no second alpha within 1e-4 of
//    its minimum, the export-stage pre_quant_scale, input amax and weight amax (INT4's per block, NVFP4's
//    clipped per-tensor one) within 1e-5 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "qforge/base/file.h"
#include "qforge/base/hash.h"
#include "qforge/calib/awq.h"
#include "qforge/calib/calibrate.h"
#include "qforge/calib/pre_quant_scale.h"
#include "qforge/calib/smoothquant.h"
#include "qforge/config/presets.h"
#include "qforge/io/safetensors.h"
#include "qforge/numerics/half.h"
#include "qforge/numerics/qdq.h"
#include "qforge/quant/shared_state.h"
#include "tests/support/calib_algorithm_util.h"
#include "tests/support/temp_dir.h"

namespace qforge {
namespace {

const std::filesystem::path kLlama = std::filesystem::path(QF_SHARED_DIR) / "data/models/llama-dense-26M";

std::shared_ptr<SafetensorsFile> Golden() {
  return SafetensorsFile::Open(std::filesystem::path(QF_SOURCE_DIR) / "tests/golden/awq/llama-dense-26M.safetensors");
}

float Bf16(float x) { return Bf16ToF32(F32ToBf16Rne(x)); }

std::vector<float> Values(const SafetensorsFile& f, const std::string& name) {
  if (!f.Contains(name)) return {};
  const Tensor t = f.Get(name).ToF32();
  return {t.span<float>().begin(), t.span<float>().end()};
}

std::string Bf16Hash(std::span<const float> v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = F32ToBf16Rne(v[i]);
  return Xxh3Hex(std::as_bytes(std::span<const uint16_t>(b)));
}

// The weight amax of `q` for w, as max calibration computes it.
std::vector<float> WeightAmax(const Quantizer& q, std::span<const float> w, int64_t rows, int64_t cols) {
  return ComputeAmax(q.spec(), w, std::vector<int64_t>{rows, cols}, q.slot.name);
}

// bf16: the per-Linear steps from ModelOpt's statistics, then the export preprocessing on a QuantState.
void ExpectBf16Run(const std::string& qformat) {
  SCOPED_TRACE(qformat);
  const auto golden = Golden();
  const auto meta = config::Json::parse(golden->metadata().at("golden"));
  EXPECT_EQ(meta.at("modelopt").get<std::string>(), "0.47.0");
  const auto& hashes = meta.at("weight_xxh3_128");
  const std::string tag = qformat + ".bf16";
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(kLlama, lo);
  QuantState state = QuantState::ForModel(*model);
  state.Apply(config::ResolveQformat(qformat, "none").quant_cfg);
  const bool clip = qformat == "nvfp4_awq_full";
  int linears = 0;
  for (int m : model->linear_modules()) {
    const ModuleInfo& info = model->modules()[static_cast<size_t>(m)];
    const std::string key = info.name + "." + tag;
    if (!golden->Contains(key + ".act_scale")) continue;
    ++linears;
    SCOPED_TRACE(key);
    Quantizer& wq = *state.Get(m, QuantizerRole::kWeight);
    Quantizer& in = *state.Get(m, QuantizerRole::kInput);
    const int64_t rows = info.out_features, cols = info.in_features;
    Tensor w = model->LinearWeight(m).Clone();
    int64_t block = 0;
    const QuantSpec spec = wq.spec();
    if (spec.block) {
      for (const auto& [axis, size] : spec.block->sizes) block = axis == -1 && size ? *size : block;
    }
    EXPECT_TRUE(AwqWeightScale(w.span<float>(), rows, cols, block, DType::kBF16) == Values(*golden, key + ".weight_scale"));
    const std::vector<float> act = Values(*golden, key + ".act_scale");
    const std::vector<float> chan = Values(*golden, key + ".chan_amax");
    const float alpha = Values(*golden, key + ".best_alpha").at(0);
    // The chosen alpha is the first minimum of ModelOpt's own losses.
    const std::vector<float> losses = Values(*golden, key + ".lite_loss");
    const size_t best = static_cast<size_t>(std::min_element(losses.begin(), losses.end()) - losses.begin());
    EXPECT_EQ(AwqAlphaGrid(0.1).at(best), alpha);
    // AwqScale gives ModelOpt's scale: exactly where its powers are exact (alpha 0, 0.5, 1), within 4 ulp
    // elsewhere (torch's pow on the GPU against glibc's powf). The rest starts from ModelOpt's scale.
    const std::vector<float> ours = AwqScale(act, Values(*golden, key + ".weight_scale"), alpha);
    const std::vector<float> s = Values(*golden, key + ".best_scale");
    ASSERT_EQ(ours.size(), s.size());
    if (alpha == 0.0f || alpha == 0.5f || alpha == 1.0f) {
      EXPECT_TRUE(ours == s) << "alpha " << alpha;
    } else {
      for (size_t j = 0; j < s.size(); ++j) ASSERT_NEAR(ours[j], s[j], 4 * std::ldexp(std::abs(s[j]), -23)) << j;
    }
    std::vector<float> pqs(s.size());
    for (size_t j = 0; j < s.size(); ++j) pqs[j] = 1.0f / s[j];
    const SmoothedInput sm = ApplyPreQuantScale(pqs, chan, w.mutable_span<float>(), rows, cols, DType::kBF16);
    const std::string ck = key + ".calib";
    EXPECT_TRUE(sm.pre_quant_scale == Values(*golden, ck + ".pre_quant_scale"));
    if (!chan.empty()) {
      // awq_full's clip pass max-calibrates the smoothed input again; awq_lite keeps max_j a_j · pqs_j.
      if (!clip) {
        EXPECT_EQ(sm.input_amax, Values(*golden, ck + ".input_amax").at(0));
      }
    }
    EXPECT_EQ(Bf16Hash(w.span<float>()), hashes.at(ck).get<std::string>());
    std::vector<float> wamax = WeightAmax(wq, w.span<float>(), rows, cols);
    if (clip) {
      // awq_clip: the amax before clipping is the smoothed weight's; the first minimum of its losses picks
      // the ratio.
      EXPECT_TRUE(wamax == Values(*golden, key + ".clip_w_amax"));
      const std::vector<float> cl = Values(*golden, key + ".clip_loss");
      const std::vector<double> ratios = AwqClipRatios(0.5, 0.05);
      ASSERT_EQ(cl.size(), ratios.size());
      size_t bi = 0;
      for (size_t i = 1; i < cl.size(); ++i) bi = cl[i] < cl[bi] ? i : bi;
      wamax[0] = Bf16(wamax[0] * static_cast<float>(ratios[bi]));  // ModelOpt holds the amax in bf16
    }
    EXPECT_TRUE(wamax == Values(*golden, ck + ".weight_amax"));
    model->SetLinearWeight(m, std::move(w));
    in.pre_quant_scale = sm.pre_quant_scale;
    wq.MergeAmax(wamax, AmaxShape(wq.spec(), std::vector<int64_t>{rows, cols}).value_or(std::vector<int64_t>{}));
    const std::vector<float> ia = Values(*golden, ck + ".input_amax");
    if (!ia.empty()) in.MergeAmax(ia, {});
  }
  EXPECT_EQ(linears, 42);
  // The export preprocessing, layer by layer as qforge runs it.
  for (int l = 0; l < model->num_layers(); ++l) {
    PreQuantScaleGroups g = FoldPreQuantScalesIntoProducers(*model, state, l);
    g.Merge(ResmoothExpertPreQuantScales(*model, state, l));
    g.Merge(ResmoothSharedInputs(*model, state, model->linear_modules(l)));
    CalibrateWeightAmaxOf(*model, state, g.changed);
  }
  std::vector<std::string> names;
  for (int m : model->linear_modules()) {
    if (golden->Contains(model->modules()[static_cast<size_t>(m)].name + "." + tag + ".act_scale")) {
      names.push_back(model->modules()[static_cast<size_t>(m)].name);
    }
  }
  const std::vector<SharedGroup> groups = FindSharedGroups(CompilePatterns(config::DefaultSharedPatterns()), names, {});
  std::set<std::string> grouped;
  for (const SharedGroup& sg : groups) grouped.insert(sg.members.begin(), sg.members.end());
  std::vector<std::string> fused;
  for (int m : model->linear_modules()) {
    const ModuleInfo& info = model->modules()[static_cast<size_t>(m)];
    const std::string ek = info.name + "." + tag + ".export";
    if (!golden->Contains(info.name + "." + tag + ".act_scale")) continue;
    SCOPED_TRACE(ek);
    const Quantizer& in = *state.Get(m, QuantizerRole::kInput);
    if (in.pre_quant_scale_fused) fused.push_back(info.name);
    EXPECT_TRUE(in.pre_quant_scale == Values(*golden, ek + ".pre_quant_scale"));
    const Tensor w = model->LinearWeight(m);
    EXPECT_EQ(Bf16Hash(w.span<float>()), hashes.at(ek).get<std::string>());
    // Per module; the export unifies sibling groups' per-tensor amax on top (checked below).
    const Quantizer& wq = *state.Get(m, QuantizerRole::kWeight);
    if (wq.amax.size() > 1 || !grouped.count(info.name)) {
      EXPECT_TRUE(wq.amax == Values(*golden, ek + ".weight_amax"));
    }
    const Quantizer& iq = *state.Get(m, QuantizerRole::kInput);
    if (iq.amax.size() == 1 && !grouped.count(info.name)) {
      EXPECT_EQ(iq.amax[0], Values(*golden, ek + ".input_amax").at(0));
    }
  }
  std::vector<std::string> want_fused;
  if (meta.at("fused_with_prequant").contains(tag)) {
    want_fused = meta.at("fused_with_prequant").at(tag).get<std::vector<std::string>>();
  }
  EXPECT_EQ(fused, want_fused);
  // Sibling groups: the per-tensor input and weight amax ModelOpt sets to the group max, as qforge's export does.
  for (const SharedGroup& sg : groups) {
    float wmax = 0, imax = 0;
    for (const auto& n : sg.members) {
      const int m = model->FindModule(n);
      const Quantizer& wq = *state.Get(m, QuantizerRole::kWeight);
      if (wq.amax.size() == 1) wmax = std::max(wmax, wq.amax[0]);
      const Quantizer& in = *state.Get(m, QuantizerRole::kInput);
      if (in.amax.size() == 1) imax = std::max(imax, in.amax[0]);
    }
    for (const auto& n : sg.members) {
      const std::string ek = n + "." + tag + ".export";
      const int m = model->FindModule(n);
      if (state.Get(m, QuantizerRole::kWeight)->amax.size() == 1) {
        EXPECT_EQ(wmax, Values(*golden, ek + ".weight_amax").at(0)) << ek;
      }
      if (state.Get(m, QuantizerRole::kInput)->amax.size() == 1) {
        EXPECT_EQ(imax, Values(*golden, ek + ".input_amax").at(0)) << ek;
      }
    }
  }
}

TEST(AwqGolden, Bf16StepsReproduceModelOptBitForBit) {
  ExpectBf16Run("int4_awq");
  ExpectBf16Run("nvfp4_awq_full");
}

// An fp32 copy of llama-dense-26M (config and weights) in `dir`.
void WriteF32Copy(const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  config::Json cfg = config::Json::parse(ReadFileToString(kLlama / "config.json"));
  for (const char* k : {"dtype", "torch_dtype"}) {
    if (cfg.contains(k)) cfg[k] = "float32";
  }
  WriteFileAtomic(dir / "config.json", cfg.dump(2));
  const CheckpointTensors src = CheckpointTensors::Open(kLlama);
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& n : src.names()) tensors.emplace_back(n, src.Get(n).ToF32());
  WriteSafetensors(dir / "model.safetensors", tensors);
}

double Rel(float a, float b) { return std::abs(double(a) - b) / std::max(1e-30, std::abs(double(b))); }

void ExpectClose(const std::vector<float>& got, const std::vector<float>& want, double tol, const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double worst = 0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, Rel(got[i], want[i]));
  EXPECT_LE(worst, tol) << what;
}

// Whether ModelOpt's awq_lite losses of `key` have a second alpha within 1e-4 of the minimum: a search whose
// statistics differ by fp32 noise may pick it.
bool NearTie(const SafetensorsFile& golden, const std::string& key) {
  const std::vector<float> l = Values(golden, key + ".lite_loss");
  const size_t best = static_cast<size_t>(std::min_element(l.begin(), l.end()) - l.begin());
  for (size_t a = 0; a < l.size(); ++a) {
    if (a != best && l[a] <= l[best] * (1 + 1e-4)) return true;
  }
  return false;
}

void ExpectF32Run(const std::string& qformat, const std::filesystem::path& dir) {
  SCOPED_TRACE(qformat);
  const auto golden = Golden();
  const std::string tag = qformat + ".f32";
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto fm = ForwardModel::Load(dir, lo);
  const QuantState s = testing_support::Calibrated(*fm, config::ResolveQformat(qformat, "none"));
  const Model& model = fm->model();
  // The groups whose scales are one (siblings: the mean of theirs), and singletons.
  std::vector<std::string> names;
  for (int m : model.linear_modules()) {
    const std::string& n = model.modules()[static_cast<size_t>(m)].name;
    if (golden->Contains(n + "." + tag + ".act_scale")) names.push_back(n);
  }
  std::vector<std::vector<std::string>> groups;
  std::set<std::string> grouped;
  for (const SharedGroup& g : FindSharedGroups(CompilePatterns(config::DefaultSharedPatterns()), names, {})) {
    groups.push_back(g.members);
    grouped.insert(g.members.begin(), g.members.end());
  }
  for (const auto& n : names) {
    if (!grouped.count(n)) groups.push_back({n});
  }
  int compared = 0, tied = 0;
  for (const auto& g : groups) {
    bool tie = false;
    for (const auto& n : g) tie = tie || NearTie(*golden, n + "." + tag);
    if (tie) {
      ++tied;
      continue;
    }
    ++compared;
    float want_in = 0, got_in = 0, want_w = 0, got_w = 0;
    for (const auto& n : g) {
      SCOPED_TRACE(n);
      const std::string ek = n + "." + tag + ".export";
      const int m = model.FindModule(n);
      const Quantizer& in = *s.Get(m, QuantizerRole::kInput);
      if (in.pre_quant_scale_fused) {
        EXPECT_FALSE(golden->Contains(ek + ".pre_quant_scale"));  // folded into up_proj by both
      } else {
        ExpectClose(in.pre_quant_scale, Values(*golden, ek + ".pre_quant_scale"), 1e-5, "pre_quant_scale");
      }
      const Quantizer& wq = *s.Get(m, QuantizerRole::kWeight);
      if (wq.amax.size() > 1) {  // INT4 blocks: per module
        ExpectClose(wq.amax, Values(*golden, ek + ".weight_amax"), 1e-5, "weight amax");
      } else {  // NVFP4's per-tensor amax (awq_clip's choice): the group max
        want_w = std::max(want_w, Values(*golden, ek + ".weight_amax").at(0));
        got_w = std::max(got_w, wq.amax.at(0));
      }
      const std::vector<float> ia = Values(*golden, ek + ".input_amax");
      if (!ia.empty()) {
        want_in = std::max(want_in, ia.at(0));
        got_in = std::max(got_in, in.amax.at(0));
      }
    }
    EXPECT_LE(Rel(got_in, want_in), 1e-5) << g[0] << ": input amax " << got_in << " vs " << want_in;
    EXPECT_LE(Rel(got_w, want_w), 1e-5) << g[0] << ": weight amax " << got_w << " vs " << want_w;
  }
  EXPECT_EQ(compared + tied, 6 * 4);  // per layer: q/k/v, o, gate/up, down
  EXPECT_GE(compared, 20) << tied << " groups with a near tie";
  std::printf("%s: %d groups compared, %d with a near tie in ModelOpt's search\n", qformat.c_str(), compared, tied);
}

TEST(AwqGolden, F32EndToEndAgreesWithModelOptWithinFp32Noise) {
  const testing_support::TempDir tmp("qf_awq_golden_f32");
  WriteF32Copy(tmp.path);
  ExpectF32Run("int4_awq", tmp.path);
  ExpectF32Run("nvfp4_awq_full", tmp.path);
}

}  // namespace
}  // namespace qforge
