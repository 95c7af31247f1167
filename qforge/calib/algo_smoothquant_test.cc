// The smoothquant algorithm through Calibrate, on a small trained bf16 Llama (llama-dense-26M):
//  * against a literal transcription of ModelOpt's smoothquant / apply_pre_quant_scale_and_smooth and of its
//    export's preprocess_linear_fusion, written here from the spec and upstream's steps (torch's dtype
//    promotions spelled out), fed with the same max statistics: pre_quant_scale, the input and weight amax
//    and the smoothed weights, bit for bit, for alpha 1 (the default) and 0.5;
//  * the smoothing leaves the model's function alone: a forward that only applies the pre_quant_scale
//    computes the original model's logits up to the bf16 rounding of the smoothed weights;
//  * layer by layer on the device-shaped test backend it equals the whole-model run on the CPU bit for bit;
//  * ModelOpt 0.47's own results (tests/golden/smoothquant, written by tools/make_smoothquant_golden.py): from
//    the per-channel input amax ModelOpt's smoothquant started from, calib/smoothquant.h gives ModelOpt's
//    pre_quant_scale, input amax, weight amax and smoothed weights bit for bit, after mtq.quantize and after
//    its export's fusion preprocessing, for alpha 1 and 0.5.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "qforge/calib/calibrate.h"
#include "qforge/base/hash.h"
#include "qforge/calib/max_calib.h"
#include "qforge/calib/smoothquant.h"
#include "qforge/io/safetensors.h"
#include "qforge/quant/shared_state.h"
#include "qforge/config/presets.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/forward/fake_quant_hooks.h"
#include "qforge/numerics/half.h"
#include "qforge/numerics/qdq.h"
#include "tests/support/calib_algorithm_util.h"
#include "tests/support/host_device_backend.h"

namespace qforge {
namespace {

using testing_support::Calibrated;
using testing_support::FixedSamples;
using testing_support::WithAlgorithm;

const std::filesystem::path kLlama = std::filesystem::path(QF_SHARED_DIR) / "data/models/llama-dense-26M";

std::unique_ptr<ForwardModel> LoadLlama(Backend* be = nullptr) {
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  return ForwardModel::Load(kLlama, lo, be);
}

float Bf16(float x) { return Bf16ToF32(F32ToBf16Rne(x)); }

// ModelOpt's smoothquant on one Linear, step by step as upstream writes it (model_calib.py), for a bf16
// module: `act_amax` the per-channel input amax (fp32), `w` the bf16 weight [rows, cols] as f32 values.
struct RefSmooth {
  std::vector<float> pqs;     // input_quantizer.pre_quant_scale (bf16)
  float input_amax;           // input_quantizer.amax (bf16)
  std::vector<float> weight;  // module.weight (bf16)
};
RefSmooth ModelOptSmooth(const std::vector<float>& act_amax, const std::vector<float>& w, int64_t rows, int64_t cols,
                         double alpha) {
  // weight_scale = module.weight.abs().amax(dim=0, keepdim=True)  (bf16)
  std::vector<float> weight_scale(cols, 0.0f);
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) weight_scale[j] = std::max(weight_scale[j], std::abs(w[i * cols + j]));
  }
  // scale_a = (weight_scale.pow(1 - alpha) / act_amax.pow(alpha)).squeeze(): a bf16 pow, an fp32 pow, the
  // quotient promoted to fp32.
  auto pow = [](float x, double e) {
    return e == 0.0 ? 1.0f : e == 1.0 ? x : e == 0.5 ? std::sqrt(x) : std::pow(x, static_cast<float>(e));
  };
  std::vector<float> scale_a(cols);
  for (int64_t j = 0; j < cols; ++j) scale_a[j] = Bf16(pow(weight_scale[j], 1.0 - alpha)) / pow(act_amax[j], alpha);
  const float epsilon = 1.0f / (1 << 30) / 2;
  if (*std::min_element(scale_a.begin(), scale_a.end()) <= epsilon) {
    for (int64_t j = 0; j < cols; ++j) {
      if (act_amax[j] <= epsilon) scale_a[j] = 1;
    }
  }
  for (float& v : scale_a) v = std::min(std::max(v, 1e-4f), 1e4f);
  RefSmooth r;
  // apply_pre_quant_scale_and_smooth: pre_quant_scale = scale_a.to(bf16); inv_scale = 1 / scale_a (fp32);
  // weight = (weight * inv_scale[None, :]).to(bf16); amax = (_amax_for_smoothing.to(bf16) * scale_a).amax().to(bf16).
  for (float v : scale_a) r.pqs.push_back(Bf16(v));
  r.weight.resize(w.size());
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) {
      const float inv = 1.0f / scale_a[j];
      r.weight[i * cols + j] = Bf16(w[i * cols + j] * inv);
    }
  }
  float m = 0;
  for (int64_t j = 0; j < cols; ++j) m = std::max(m, Bf16(act_amax[j]) * scale_a[j]);
  r.input_amax = Bf16(m);
  return r;
}

// preprocess_linear_fusion's resmoothing of one group: avg = torch.mean(torch.stack(pqs), dim=0) (fp32 sum,
// divided, cast to bf16 on the CPU); a member whose scale differs: weight = (w.float() * old / new).to(bf16).
void ModelOptResmooth(std::vector<RefSmooth*> group, int64_t cols) {
  std::vector<float> avg(cols);
  for (int64_t j = 0; j < cols; ++j) {
    float sum = 0;
    for (const RefSmooth* r : group) sum += r->pqs[j];
    avg[j] = Bf16(sum / static_cast<float>(group.size()));
  }
  for (RefSmooth* r : group) {
    if (r->pqs == avg) continue;
    for (size_t i = 0; i < r->weight.size(); ++i) {
      const size_t j = i % static_cast<size_t>(cols);
      r->weight[i] = Bf16(r->weight[i] * r->pqs[j] / avg[j]);
    }
    r->pqs = avg;
  }
}

config::QuantizeConfig SmoothQuantConfig(const std::string& algorithm) {
  return WithAlgorithm(config::ResolveQformat("int8_smoothquant", "none"), config::ParseYaml(algorithm, "test"));
}

void ExpectMatchesTranscription(double alpha) {
  SCOPED_TRACE(::testing::Message() << "alpha " << alpha);
  auto fm = LoadLlama();
  Model& model = fm->model();
  const QuantState s = Calibrated(*fm, SmoothQuantConfig(fmt::format("{{method: smoothquant, alpha: {}}}", alpha)));

  // The statistics: max calibration with per-channel input amax on the smoothed inputs (ModelOpt's step 1),
  // on untouched weights.
  auto ref_fm = LoadLlama();
  Model& ref = ref_fm->model();
  QuantState stats = QuantState::ForModel(ref);
  stats.Apply(SmoothQuantConfig("max").quant_cfg);
  for (auto& q : stats.quantizers()) {
    if (q.role != QuantizerRole::kInput || !q.enabled()) continue;
    config::QuantizerAttributeConfig a = q.attrs();
    a.axis = config::AxisValue{{-1}, false};
    q.SetAttrs(a);
  }
  MaxCalibOptions mo;
  mo.batch_size = 2;
  mo.show_progress = false;
  mo.shared_patterns = config::ResolveSharedPatterns(std::nullopt);
  MaxCalibrate(*ref_fm, stats, FixedSamples(), mo);

  std::map<int, RefSmooth> want;
  for (int m : ref.linear_modules()) {
    const Quantizer* in = stats.Get(m, QuantizerRole::kInput);
    if (in == nullptr || !in->enabled()) continue;
    const ModuleInfo& info = ref.modules()[static_cast<size_t>(m)];
    const Tensor w = ref.LinearWeight(m);
    want[m] = ModelOptSmooth(in->amax, std::vector<float>(w.span<float>().begin(), w.span<float>().end()),
                             info.out_features, info.in_features, alpha);
  }
  ASSERT_EQ(want.size(), 42u);  // 6 layers x 7 Linears; lm_head's input is disabled
  // Groups: q/k/v and gate/up of each layer.
  for (int l = 0; l < ref.num_layers(); ++l) {
    const Model::LayerModules& L = ref.layer_modules(l);
    ModelOptResmooth({&want[L.q], &want[L.k], &want[L.v]}, ref.modules()[static_cast<size_t>(L.q)].in_features);
    ModelOptResmooth({&want[L.mlp[0]], &want[L.mlp[1]]}, ref.modules()[static_cast<size_t>(L.mlp[0])].in_features);
  }
  for (const auto& [m, r] : want) {
    const std::string& name = model.modules()[static_cast<size_t>(m)].name;
    const Quantizer& in = *s.Get(m, QuantizerRole::kInput);
    EXPECT_TRUE(in.pre_quant_scale == r.pqs) << name;
    ASSERT_EQ(in.amax.size(), 1u) << name << ": the input is per tensor again";
    EXPECT_EQ(in.amax[0], r.input_amax) << name;
    EXPECT_FALSE(in.attrs().axis.has_value()) << name;
    const Tensor w = model.LinearWeight(m);
    EXPECT_TRUE(std::equal(r.weight.begin(), r.weight.end(), w.span<float>().begin())) << name;
    // The weight amax: per output channel of the smoothed weight.
    const Quantizer& wq = *s.Get(m, QuantizerRole::kWeight);
    const int64_t cols = model.modules()[static_cast<size_t>(m)].in_features;
    ASSERT_EQ(static_cast<int64_t>(wq.amax.size()), model.modules()[static_cast<size_t>(m)].out_features) << name;
    for (size_t i = 0; i < wq.amax.size(); ++i) {
      float mx = 0;
      for (int64_t j = 0; j < cols; ++j) mx = std::max(mx, std::abs(r.weight[i * cols + j]));
      ASSERT_EQ(wq.amax[i], mx) << name << " row " << i;
    }
  }
}

TEST(SmoothQuantAlgorithm, MatchesATranscriptionOfModelOptsStepsBitForBit) {
  ExpectMatchesTranscription(1.0);
  ExpectMatchesTranscription(0.5);
}

// x·diag(s) · (W·diag(1/s))ᵀ = x·Wᵀ: applying only the pre_quant_scale to the smoothed model gives the
// original logits up to the bf16 rounding of the smoothed weights (and nothing like them without it).
TEST(SmoothQuantAlgorithm, SmoothingAloneKeepsTheModelsFunction) {
  auto fm = LoadLlama();
  const QuantState s = Calibrated(*fm, SmoothQuantConfig("smoothquant"));
  FakeQuantHooks hooks(testing_support::PreQuantScalesOnly(fm->model(), s));
  const CalibData d = FixedSamples();
  const std::vector<int32_t> ids(d.samples[0].begin(), d.samples[0].end());
  const Tensor smoothed = fm->Forward(ids, 1, d.seq_len, &hooks);
  const Tensor unscaled = fm->Forward(ids, 1, d.seq_len);
  auto orig = LoadLlama();
  const Tensor want = orig->Forward(ids, 1, d.seq_len);
  auto rel = [&](const Tensor& t) { return testing_support::RelativeL2(t, want); };
  EXPECT_LT(rel(smoothed), 1e-2);
  EXPECT_GT(rel(unscaled), 5e-2);
}

// Layer by layer on the device-shaped backend (statistics per layer, next inputs from the unsmoothed layer)
// gives the whole-model CPU run's quantizers and weights bit for bit.
TEST(SmoothQuantAlgorithm, LayerwiseOnTheDeviceBackendEqualsWholeModelOnTheCpu) {
  auto cpu = LoadLlama();
  const QuantState whole = Calibrated(*cpu, SmoothQuantConfig("smoothquant"));
  testing_support::HostDeviceBackend dev;
  auto on_dev = LoadLlama(&dev);
  const QuantState lw = Calibrated(*on_dev, SmoothQuantConfig("{method: smoothquant, layerwise: {enable: true}}"));
  testing_support::ExpectSameAmax(whole, lw, "layerwise");
  for (size_t i = 0; i < whole.quantizers().size(); ++i) {
    EXPECT_TRUE(whole.quantizers()[i].pre_quant_scale == lw.quantizers()[i].pre_quant_scale)
        << whole.quantizers()[i].slot.name;
  }
  for (int m : cpu->model().linear_modules()) {
    const Tensor a = cpu->model().LinearWeight(m), b = on_dev->model().LinearWeight(m);
    EXPECT_TRUE(std::equal(a.span<float>().begin(), a.span<float>().end(), b.span<float>().begin()))
        << cpu->model().modules()[static_cast<size_t>(m)].name;
  }
}

// XXH3-128 of values as bf16 (their little-endian bytes, as torch holds a bf16 tensor).
std::string Bf16Hash(std::span<const float> v) {
  std::vector<uint16_t> b(v.size());
  for (size_t i = 0; i < v.size(); ++i) b[i] = F32ToBf16Rne(v[i]);
  return Xxh3Hex(std::as_bytes(std::span<const uint16_t>(b)));
}

std::vector<float> Values(const SafetensorsFile& f, const std::string& name) {
  EXPECT_TRUE(f.Contains(name)) << name;
  if (!f.Contains(name)) return {};
  const Tensor t = f.Get(name).ToF32();
  return {t.span<float>().begin(), t.span<float>().end()};
}

// Per output row, max |w| (the INT8 per-channel weight amax).
std::vector<float> RowAmax(std::span<const float> w, int64_t cols) {
  std::vector<float> out(w.size() / static_cast<size_t>(cols), 0.0f);
  for (size_t i = 0; i < w.size(); ++i) out[i / static_cast<size_t>(cols)] = std::max(out[i / cols], std::abs(w[i]));
  return out;
}

TEST(SmoothQuantGolden, ReproducesModelOptsOwnResultsBitForBit) {
  const auto golden = SafetensorsFile::Open(std::filesystem::path(QF_SOURCE_DIR) /
                                            "tests/golden/smoothquant/llama-dense-26M.safetensors");
  const auto meta = config::Json::parse(golden->metadata().at("golden"));
  EXPECT_EQ(meta.at("modelopt").get<std::string>(), "0.47.0");
  const auto& hashes = meta.at("weight_xxh3_128");
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(kLlama, lo);
  for (const auto& [alpha, tag] : {std::pair{1.0, "a1"}, std::pair{0.5, "a0.5"}}) {
    SCOPED_TRACE(tag);
    struct Linear {
      int module;
      std::vector<float> weight, pqs;
      float input_amax;
    };
    std::map<std::string, Linear> smoothed;
    std::vector<std::string> names;
    for (int m : model->linear_modules()) {
      const ModuleInfo& info = model->modules()[static_cast<size_t>(m)];
      if (!golden->Contains(info.name + ".act_amax")) continue;
      const std::vector<float> act = Values(*golden, info.name + ".act_amax");
      const Tensor w0 = model->LinearWeight(m);
      Linear l{m, {w0.span<float>().begin(), w0.span<float>().end()}, {}, 0};
      const SmoothedInput sm =
          SmoothLinear(act, l.weight, info.out_features, info.in_features, alpha, DType::kBF16, info.name);
      const std::string key = info.name + "." + tag + ".calib";
      EXPECT_TRUE(sm.pre_quant_scale == Values(*golden, key + ".pre_quant_scale")) << key;
      EXPECT_EQ(sm.input_amax, Values(*golden, key + ".input_amax").at(0)) << key;
      EXPECT_TRUE(RowAmax(l.weight, info.in_features) == Values(*golden, key + ".weight_amax")) << key;
      EXPECT_EQ(Bf16Hash(l.weight), hashes.at(key).get<std::string>()) << key;
      l.pqs = sm.pre_quant_scale;
      l.input_amax = sm.input_amax;
      names.push_back(info.name);
      smoothed.emplace(info.name, std::move(l));
    }
    ASSERT_EQ(smoothed.size(), 42u);
    // The export's fusion preprocessing: one pre_quant_scale per group, weights re-smoothed, input amax the
    // group max.
    std::map<std::string, float> group_input_amax;
    for (const SharedGroup& g : FindSharedGroups(CompilePatterns(config::DefaultSharedPatterns()), names, {})) {
      std::vector<const std::vector<float>*> scales;
      float in_max = 0;
      for (const auto& n : g.members) {
        scales.push_back(&smoothed.at(n).pqs);
        in_max = std::max(in_max, smoothed.at(n).input_amax);
      }
      const std::vector<float> mean = MeanPreQuantScale(scales, DType::kBF16);
      for (const auto& n : g.members) {
        Linear& l = smoothed.at(n);
        if (l.pqs != mean) ResmoothWeight(l.weight, static_cast<int64_t>(mean.size()), l.pqs, mean, DType::kBF16);
        l.pqs = mean;
        group_input_amax[n] = in_max;
      }
    }
    EXPECT_EQ(group_input_amax.size(), 30u);  // q/k/v and gate/up of 6 layers
    for (const auto& [name, l] : smoothed) {
      const std::string key = name + "." + tag + ".export";
      EXPECT_TRUE(l.pqs == Values(*golden, key + ".pre_quant_scale")) << key;
      const float in_amax = group_input_amax.count(name) ? group_input_amax.at(name) : l.input_amax;
      EXPECT_EQ(in_amax, Values(*golden, key + ".input_amax").at(0)) << key;
      EXPECT_TRUE(RowAmax(l.weight, static_cast<int64_t>(l.pqs.size())) == Values(*golden, key + ".weight_amax"))
          << key;
      EXPECT_EQ(Bf16Hash(l.weight), hashes.at(key).get<std::string>()) << key;
    }
  }
}

}  // namespace
}  // namespace qforge
