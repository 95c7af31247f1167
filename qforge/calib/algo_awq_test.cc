// awq_lite / awq_clip / awq_full: the math of calib/awq.h against hand-computed values, and the algorithms
// through Calibrate on the small trained bf16 Llama (llama-dense-26M) and Qwen2-MoE (qwen2moe-25M):
//  * the smoothing leaves the model's function alone: the pre_quant_scale applied to the smoothed model gives
//    the original logits up to the bf16 rounding of the smoothed weights;
//  * it pays where it optimizes: with quantized weights (INT4 W4A16, NVFP4) the logits are closer to the
//    unquantized model's with awq_lite and awq_full than with max calibration;
//  * awq_lite's choice is its search's argmin: rerunning the search in the test on the captured inputs of one
//    Linear, no alpha of the grid gives a smaller output error;
//  * awq_clip only lowers amax, to ratios of the grid, and its choice beats no clipping on its own loss;
//  * ModelOpt's export fusion: NVFP4-AWQ down_proj scales go into up_proj (Llama), o_proj's stay (grouped heads),
//    siblings share one scale, routed experts one scale per role;
//  * layer by layer on the device-shaped test backend equals the whole-model run on the CPU bit for bit.
#include <gtest/gtest.h>

#include <cmath>

#include "qforge/calib/awq.h"
#include "qforge/calib/calibrate.h"
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

const std::filesystem::path kModels = std::filesystem::path(QF_SHARED_DIR) / "data/models";

std::unique_ptr<ForwardModel> Load(const std::string& name, Backend* be = nullptr) {
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  return ForwardModel::Load(kModels / name, lo, be);
}

float Bf16(float x) { return Bf16ToF32(F32ToBf16Rne(x)); }

config::QuantizeConfig Preset(const std::string& qformat, const std::string& algorithm = "") {
  config::QuantizeConfig c = config::ResolveQformat(qformat, "none");
  return algorithm.empty() ? c : WithAlgorithm(c, config::ParseYaml(algorithm, "test"));
}

TEST(AwqMath, GridsAreTorchsAranges) {
  const std::vector<float> a = AwqAlphaGrid(0.1);
  ASSERT_EQ(a.size(), 11u);
  EXPECT_EQ(a[0], 0.0f);
  EXPECT_EQ(a[3], 0.3f);  // float(3 * 0.1)
  EXPECT_EQ(a[10], 1.0f);
  const std::vector<float> b = AwqAlphaGrid(0.3);  // ceil(1.3 / 0.3) = 5 values, the last above 1
  ASSERT_EQ(b.size(), 5u);
  EXPECT_EQ(b[4], static_cast<float>(4 * 0.3));
  EXPECT_EQ(AwqAlphaGrid(1.0), (std::vector<float>{0.0f, 1.0f}));
  const std::vector<double> r = AwqClipRatios(0.5, 0.05);
  ASSERT_EQ(r.size(), 11u);
  EXPECT_EQ(r[0], 0.5);
  EXPECT_EQ(r[1], 0.55);
  EXPECT_EQ(r[9], 0.95);
  EXPECT_EQ(r[10], 1.0);
  EXPECT_THROW(AwqAlphaGrid(0.0), Error);
  EXPECT_THROW(AwqClipRatios(1.0, 0.05), Error);
}

TEST(AwqMath, WeightAndActivationScalesByHand) {
  // W [2, 4], blocks of 2: |W| / block max, mean over the rows.
  const std::vector<float> w = {1, -2, 4, 0, -3, 3, 0, 0};
  const std::vector<float> ws = AwqWeightScale(w, 2, 4, 2, DType::kF32);
  // row 0: blocks {1,2} max 2 -> .5, 1; {4,0} max 4 -> 1, 0. row 1: {3,3} -> 1, 1; {0,0} max tiny -> 0, 0.
  EXPECT_EQ(ws, (std::vector<float>{0.75f, 1.0f, 0.5f, 0.0f}));
  // Without blocks: the row max.
  EXPECT_EQ(AwqWeightScale(w, 2, 4, 0, DType::kF32), (std::vector<float>{0.625f, 0.75f, 0.5f, 0.0f}));
  // bf16: 1/3 rounds to bf16 before the mean.
  const std::vector<float> w3 = {1, 3};
  EXPECT_EQ(AwqWeightScale(w3, 1, 2, 0, DType::kBF16)[0], Bf16(1.0f / 3.0f));

  std::vector<float> acc(2, 0.0f);
  AccumulateAwqActScale(std::vector<float>{1, -2, 3, 4}, 2, 2, DType::kF32, acc);  // means 2, 3
  AccumulateAwqActScale(std::vector<float>{-1, 0}, 1, 2, DType::kF32, acc);        // means 1, 0
  EXPECT_EQ(acc, (std::vector<float>{3.0f, 3.0f}));

  // alpha 1: s ∝ a; alpha 0: s ∝ 1 / w; normalized so that max · min = 1.
  const std::vector<float> a = {1, 4}, wsc = {1, 1};
  const std::vector<float> s1 = AwqScale(a, wsc, 1.0f);
  EXPECT_FLOAT_EQ(s1[0], 0.5f);
  EXPECT_FLOAT_EQ(s1[1], 2.0f);
  const std::vector<float> s0 = AwqScale(a, std::vector<float>{4, 1}, 0.0f);
  EXPECT_FLOAT_EQ(s0[0], 0.5f);
  EXPECT_FLOAT_EQ(s0[1], 2.0f);
  // The clamp to [1e-4, 1e4] comes before the normalization.
  const std::vector<float> sc = AwqScale(std::vector<float>{1e-9f, 1e9f}, wsc, 1.0f);
  EXPECT_FLOAT_EQ(sc[0], 1e-4f);
  EXPECT_FLOAT_EQ(sc[1], 1e4f);
}

// The Gram-matrix losses equal the output errors they stand for: Σ_b mean over batch b's tokens of ‖x D_rᵀ‖²
// summed over rows, and per block the partial outputs' errors, against a direct computation in double.
TEST(AwqMath, GramLossesAreTheOutputErrors) {
  const int64_t rows = 3, cols = 10, block = 4;  // blocks of 4, 4, 2
  std::vector<float> d(rows * cols);
  for (size_t i = 0; i < d.size(); ++i) d[i] = static_cast<float>((i * 37 % 11) - 5) * 0.125f;
  std::vector<float> g(cols * cols, 0.0f), gb(3 * block * block, 0.0f);
  double want = 0;
  std::vector<double> want_block(rows * 3, 0.0);
  for (int64_t n : {5, 2}) {  // two batches of different sizes
    std::vector<float> x(n * cols);
    for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>((i * 13 + n) % 7) * 0.25f - 0.75f;
    AccumulateGram(x, n, cols, 1.0f / static_cast<float>(n), g);
    AccumulateBlockGram(x, n, cols, block, 1.0f / static_cast<float>(n), gb);
    for (int64_t r = 0; r < rows; ++r) {
      double batch = 0;
      std::vector<double> part(3, 0.0);
      for (int64_t t = 0; t < n; ++t) {
        double o = 0;
        std::vector<double> ob(3, 0.0);
        for (int64_t j = 0; j < cols; ++j) {
          o += double(x[t * cols + j]) * d[r * cols + j];
          ob[j / block] += double(x[t * cols + j]) * d[r * cols + j];
        }
        batch += o * o;
        for (int b = 0; b < 3; ++b) part[b] += ob[b] * ob[b];
      }
      want += batch / double(n);
      for (int b = 0; b < 3; ++b) want_block[r * 3 + b] += part[b] / double(n);
    }
  }
  EXPECT_NEAR(AwqGramLoss(d, rows, cols, g), want, 1e-5 * want);
  std::vector<float> loss(rows * 3, 0.0f);
  AccumulateAwqBlockGramLoss(d, rows, cols, block, gb, loss);
  for (size_t i = 0; i < loss.size(); ++i) EXPECT_NEAR(loss[i], want_block[i], 1e-5 * (1 + want_block[i])) << i;
  EXPECT_EQ(AwqClipTokenRows(10, 4), (std::vector<int64_t>{0, 2, 4, 6, 8}));
  EXPECT_EQ(AwqClipTokenRows(3, 64), (std::vector<int64_t>{0, 1, 2}));
}

// Every enabled weight quantizer of `s` applied to its Linear's weight (its calibrated amax), in bf16.
void ApplyFakeQuantWeights(ForwardModel& fm, const QuantState& s) {
  Model& model = fm.model();
  for (int m : model.linear_modules()) {
    const Quantizer* q = s.Get(m, QuantizerRole::kWeight);
    if (q == nullptr || !q->enabled()) continue;
    Tensor w = model.LinearWeight(m).Clone();
    const std::vector<int64_t> shape = w.shape();
    std::vector<float> out(static_cast<size_t>(w.numel()));
    FakeQuant(q->spec(), w.span<float>(), shape, q->amax, out, q->global_amax, q->slot.name);
    for (size_t i = 0; i < out.size(); ++i) w.mutable_span<float>()[i] = Bf16(out[i]);
    model.SetLinearWeight(m, std::move(w));
  }
}

// ‖logits(state) − logits(unquantized)‖ / ‖logits(unquantized)‖ on the fixed samples, with `state`'s fake
// quantization (weights and activations) applied.
// With `weights_only`, only the weights are quantized (the activations only scaled by their pre_quant_scale).
double LogitError(const std::string& model, const QuantState& s, ForwardModel& fm, bool weights_only = false) {
  const CalibData d = FixedSamples();
  std::vector<int32_t> ids;
  for (const auto& smp : d.samples) ids.insert(ids.end(), smp.begin(), smp.end());
  const int64_t n = static_cast<int64_t>(d.samples.size());
  const ActivationQuantTable table = weights_only ? testing_support::PreQuantScalesOnly(fm.model(), s)
                                                 : ActivationQuantTable::FromState(fm.model(), s);
  FakeQuantHooks hooks(table);
  ApplyFakeQuantWeights(fm, s);
  const Tensor got = fm.Forward(ids, n, d.seq_len, &hooks);
  auto ref = Load(model);
  return testing_support::RelativeL2(got, ref->Forward(ids, n, d.seq_len));
}

TEST(AwqAlgorithm, SmoothingAloneKeepsTheModelsFunction) {
  auto fm = Load("llama-dense-26M");
  const QuantState s = Calibrated(*fm, Preset("int4_awq"));
  int smoothed = 0;
  for (int m : fm->model().linear_modules()) smoothed += s.Get(m, QuantizerRole::kInput)->pre_quant_scale.empty() ? 0 : 1;
  EXPECT_EQ(smoothed, 42);  // 6 layers x 7 Linears
  FakeQuantHooks hooks(testing_support::PreQuantScalesOnly(fm->model(), s));
  const CalibData d = FixedSamples();
  const std::vector<int32_t> ids(d.samples[0].begin(), d.samples[0].end());
  const Tensor smoothed_out = fm->Forward(ids, 1, d.seq_len, &hooks);
  const Tensor unscaled = fm->Forward(ids, 1, d.seq_len);
  auto orig = Load("llama-dense-26M");
  const Tensor want = orig->Forward(ids, 1, d.seq_len);
  auto rel = [&](const Tensor& t) { return testing_support::RelativeL2(t, want); };
  EXPECT_LT(rel(smoothed_out), 1e-2);
  EXPECT_GT(rel(unscaled), 5e-2);
}

// What AWQ minimizes is the output error of quantized weights on unquantized inputs: with the weights alone
// quantized (INT4 W4A16; NVFP4 weights of the W4A4 preset, its activations left unquantized) the logits are
// closer to the unquantized model's with awq_lite, and with awq_full, than with max calibration.
TEST(AwqAlgorithm, BeatsMaxCalibrationOnTheLogits) {
  for (const auto& [qformat, algo] : {std::pair<std::string, std::string>{"int4_awq", "awq_lite"},
                                      {"nvfp4_awq_lite", "awq_lite"}, {"nvfp4_awq_lite", "awq_full"}}) {
    SCOPED_TRACE(qformat + " " + algo);
    auto a = Load("llama-dense-26M");
    const QuantState awq = Calibrated(*a, Preset(qformat, algo));
    const double e_awq = LogitError("llama-dense-26M", awq, *a, /*weights_only=*/true);
    auto b = Load("llama-dense-26M");
    const QuantState max = Calibrated(*b, Preset(qformat, "max"));
    const double e_max = LogitError("llama-dense-26M", max, *b, /*weights_only=*/true);
    EXPECT_LT(e_awq, e_max) << "awq " << e_awq << " max " << e_max;
  }
}

// Re-running awq_lite's search on one Linear's inputs (captured from the unquantized model) finds no alpha
// with a smaller output error than the one calibration chose.
TEST(AwqAlgorithm, ChosenScaleIsTheSearchsArgmin) {
  auto ref = Load("llama-dense-26M");
  Model& rm = ref->model();
  const int m = rm.layer_modules(1).mlp[2];  // down_proj of layer 1
  const ModuleInfo& info = rm.modules()[static_cast<size_t>(m)];
  struct Capture : ForwardHooks {
    int module;
    std::vector<std::vector<float>> batches;
    bool ModifiesActivations() const override { return false; }
    void OnLinearInput(Backend&, int mod, float* x, int64_t rows, int64_t cols) override {
      if (mod == module) batches.emplace_back(x, x + rows * cols);
    }
  } cap;
  cap.module = m;
  const CalibData d = FixedSamples();
  for (size_t b0 = 0; b0 < d.samples.size(); b0 += 2) {  // the calibration's batches of 2
    std::vector<int32_t> ids;
    for (size_t i = b0; i < b0 + 2; ++i) ids.insert(ids.end(), d.samples[i].begin(), d.samples[i].end());
    (void)ref->Forward(ids, 2, d.seq_len, &cap);
  }
  const Tensor w0 = rm.LinearWeight(m);
  const std::vector<float> w(w0.span<float>().begin(), w0.span<float>().end());
  const int64_t rows = info.out_features, cols = info.in_features;
  std::vector<float> act(static_cast<size_t>(cols), 0.0f);
  for (const auto& x : cap.batches) AccumulateAwqActScale(x, static_cast<int64_t>(x.size()) / cols, cols, DType::kF32, act);
  for (float& v : act) v /= static_cast<float>(cap.batches.size());
  const std::vector<float> wscale = AwqWeightScale(w, rows, cols, 128, DType::kBF16);

  auto fm = Load("llama-dense-26M");
  const QuantState s = Calibrated(*fm, Preset("int4_awq"));
  const Quantizer& wq = *s.Get(m, QuantizerRole::kWeight);
  const std::vector<float>& pqs = s.Get(m, QuantizerRole::kInput)->pre_quant_scale;
  // The output error of smoothing with scale `sc` (pre_quant_scale 1 / sc, weight · sc, INT4 per block 128).
  auto loss = [&](const std::vector<float>& sc) {
    std::vector<float> ws(w), pin(sc.size());
    for (size_t j = 0; j < sc.size(); ++j) pin[j] = Bf16(1.0f / sc[j]);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < cols; ++j) ws[r * cols + j] = Bf16(w[r * cols + j] * Bf16(sc[j]));
    }
    const std::vector<int64_t> shape = {rows, cols};
    std::vector<float> q(ws.size());
    FakeQuant(wq.spec(), ws, shape, ComputeAmax(wq.spec(), ws, shape), q);
    double total = 0;
    for (const auto& x : cap.batches) {
      const int64_t n = static_cast<int64_t>(x.size()) / cols;
      double sq = 0;
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t r = 0; r < rows; ++r) {
          double o = 0, oq = 0;
          for (int64_t j = 0; j < cols; ++j) {
            o += double(x[t * cols + j]) * w[r * cols + j];
            oq += double(x[t * cols + j] * pin[j]) * Bf16(q[r * cols + j]);
          }
          sq += (o - oq) * (o - oq);
        }
      }
      total += sq / double(n * rows);
    }
    return total;
  };
  double chosen = -1, best = INFINITY;
  for (float alpha : AwqAlphaGrid(0.1)) {
    const std::vector<float> sc = AwqScale(act, wscale, alpha);
    std::vector<float> p(sc.size());
    for (size_t j = 0; j < sc.size(); ++j) p[j] = Bf16(1.0f / sc[j]);
    const double l = loss(sc);
    if (p == pqs) chosen = l;
    best = std::min(best, l);
  }
  ASSERT_GE(chosen, 0) << "the chosen pre_quant_scale is none of the grid's";
  EXPECT_LE(chosen, best * (1 + 1e-3));  // the search's f32 sums against the test's double ones
}

TEST(AwqAlgorithm, ClipLowersAmaxToGridRatios) {
  auto fm = Load("llama-dense-26M");
  const QuantState clipped = Calibrated(*fm, Preset("int4_awq", "awq_clip"));
  auto gm = Load("llama-dense-26M");
  const QuantState max = Calibrated(*gm, Preset("int4_awq", "max"));
  int lowered = 0, total = 0;
  for (int m : fm->model().linear_modules()) {
    const Quantizer* c = clipped.Get(m, QuantizerRole::kWeight);
    if (c == nullptr || !c->enabled()) continue;
    const Quantizer& x = *max.Get(m, QuantizerRole::kWeight);
    ASSERT_EQ(c->amax.size(), x.amax.size());
    for (size_t i = 0; i < c->amax.size(); ++i) {
      bool on_grid = false;
      for (double r : AwqClipRatios(0.5, 0.05)) on_grid = on_grid || c->amax[i] == Bf16(x.amax[i] * static_cast<float>(r));
      ASSERT_TRUE(on_grid) << c->slot.name << " block " << i << ": " << c->amax[i] << " vs max " << x.amax[i];
      lowered += c->amax[i] < x.amax[i] ? 1 : 0;
      ++total;
    }
    // awq_clip alone leaves the weights and inputs unsmoothed.
    EXPECT_TRUE(clipped.Get(m, QuantizerRole::kInput)->pre_quant_scale.empty());
  }
  EXPECT_GT(lowered, 0);
  EXPECT_LT(lowered, total);
  // NVFP4 with dynamic blocks: only the per-tensor amax is clipped.
  auto nm = Load("llama-dense-26M");
  const QuantState full = Calibrated(*nm, Preset("nvfp4_awq_full"));
  for (int m : nm->model().linear_modules()) {
    const Quantizer* w = full.Get(m, QuantizerRole::kWeight);
    if (w != nullptr && w->enabled()) {
      EXPECT_EQ(w->amax.size(), 1u) << w->slot.name;
    }
  }
}

TEST(AwqAlgorithm, ExportFusionOfNvfp4AwqOnLlama) {
  auto fm = Load("llama-dense-26M");
  const QuantState s = Calibrated(*fm, Preset("nvfp4_awq_lite"));
  const Model& model = fm->model();
  for (int l = 0; l < model.num_layers(); ++l) {
    const Model::LayerModules& L = model.layer_modules(l);
    // down_proj's scale went into up_proj's rows; o_proj's stays (8 heads, 4 KV heads: v_proj has half its rows).
    const Quantizer& down = *s.Get(L.mlp[2], QuantizerRole::kInput);
    EXPECT_TRUE(down.pre_quant_scale.empty());
    EXPECT_TRUE(down.pre_quant_scale_fused);
    const Quantizer& o = *s.Get(L.o, QuantizerRole::kInput);
    EXPECT_EQ(o.pre_quant_scale.size(), 512u);
    EXPECT_FALSE(o.pre_quant_scale_fused);
    // q/k/v and gate/up share one scale each.
    const auto& q = s.Get(L.q, QuantizerRole::kInput)->pre_quant_scale;
    EXPECT_EQ(q.size(), 512u);
    EXPECT_TRUE(q == s.Get(L.k, QuantizerRole::kInput)->pre_quant_scale);
    EXPECT_TRUE(q == s.Get(L.v, QuantizerRole::kInput)->pre_quant_scale);
    EXPECT_TRUE(s.Get(L.mlp[0], QuantizerRole::kInput)->pre_quant_scale ==
                s.Get(L.mlp[1], QuantizerRole::kInput)->pre_quant_scale);
    // Every enabled NVFP4 input is per tensor again, with an amax.
    for (int m : L.linears) {
      const Quantizer& in = *s.Get(m, QuantizerRole::kInput);
      EXPECT_FALSE(in.attrs().axis.has_value()) << in.slot.name;
      EXPECT_EQ(in.amax.size(), 1u) << in.slot.name;
    }
  }
}

TEST(AwqAlgorithm, MoeExpertsShareOneScalePerRole) {
  auto fm = Load("qwen2moe-25M");
  const QuantState s = Calibrated(*fm, Preset("nvfp4_awq_lite"));
  const Model& model = fm->model();
  for (int l = 0; l < model.num_layers(); ++l) {
    const Model::LayerModules& L = model.layer_modules(l);
    ASSERT_FALSE(L.experts.empty());
    for (int role = 0; role < 3; ++role) {
      const auto& first = s.Get(L.experts[0][static_cast<size_t>(role)], QuantizerRole::kInput)->pre_quant_scale;
      EXPECT_FALSE(first.empty());
      for (const auto& e : L.experts) {
        EXPECT_TRUE(s.Get(e[static_cast<size_t>(role)], QuantizerRole::kInput)->pre_quant_scale == first)
            << model.modules()[static_cast<size_t>(e[static_cast<size_t>(role)])].name;
      }
    }
    // Qwen2-MoE is not in ModelOpt's fold table: down_proj keeps its scale.
    EXPECT_FALSE(s.Get(L.experts[0][2], QuantizerRole::kInput)->pre_quant_scale_fused);
  }
}

TEST(AwqAlgorithm, LayerwiseOnTheDeviceBackendEqualsWholeModelOnTheCpu) {
  for (const std::string qformat : {"int4_awq", "nvfp4_awq_full"}) {
    SCOPED_TRACE(qformat);
    auto cpu = Load("llama-dense-26M");
    const QuantState whole = Calibrated(*cpu, Preset(qformat));
    testing_support::HostDeviceBackend dev;
    auto on_dev = Load("llama-dense-26M", &dev);
    config::QuantizeConfig c = Preset(qformat);
    CalibrateOptions o;
    o.layerwise.enable = true;
    const QuantState lw = Calibrated(*on_dev, c, o);
    testing_support::ExpectSameAmax(whole, lw, "layerwise");
    for (size_t i = 0; i < whole.quantizers().size(); ++i) {
      EXPECT_TRUE(whole.quantizers()[i].pre_quant_scale == lw.quantizers()[i].pre_quant_scale)
          << whole.quantizers()[i].slot.name;
      EXPECT_EQ(whole.quantizers()[i].pre_quant_scale_fused, lw.quantizers()[i].pre_quant_scale_fused);
    }
    for (int m : cpu->model().linear_modules()) {
      const Tensor a = cpu->model().LinearWeight(m), b = on_dev->model().LinearWeight(m);
      EXPECT_TRUE(std::equal(a.span<float>().begin(), a.span<float>().end(), b.span<float>().begin()))
          << cpu->model().modules()[static_cast<size_t>(m)].name;
    }
  }
}

}  // namespace
}  // namespace qforge
