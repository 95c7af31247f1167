// local_hessian: the captured Hessians against Σ xᵀx of the recorded Linear inputs, the metric against its
// formula (and against the squared error for an identity Hessian), and the algorithm through Calibrate on a
// small trained Llama: Hessian-weighted choices, the plain-MSE fallback for in_features not divisible by
// the block, and layer 0 alike layerwise and whole-model.
#include "qforge/calib/local_hessian.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>

#include "qforge/calib/calibrate.h"
#include "qforge/config/presets.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/numerics/qdq.h"
#include "tests/support/calib_algorithm_util.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
const fs::path kModel = testing_support::Stories260K();
CalibData Samples() { return testing_support::FixedSamples(); }

QuantSpec Nvfp4StaticSpec() {
  QuantSpec s;
  s.num_bits = NumBits::Float(2, 1);
  s.block = BlockSpec{{{-1, 16}}, false, NumBits::Float(4, 3), false};
  return s;
}

// Copies the input of one module (host, f32), reading only.
class Recorder final : public ForwardHooks {
 public:
  explicit Recorder(int module) : module_(module) {}
  bool ModifiesActivations() const override { return false; }
  void OnLinearInput(Backend& be, int module, float* x, int64_t rows, int64_t cols) override {
    if (module != module_) return;
    const size_t at = x_.size();
    x_.resize(at + static_cast<size_t>(rows * cols));
    be.Download(x_.data() + at, x, rows * cols * static_cast<int64_t>(sizeof(float)));
    rows_ += rows;
  }
  std::vector<float> x_;
  int64_t rows_ = 0;

 private:
  int module_;
};

TEST(LocalHessian, CapturedHessiansAreTheGramOfEachInputBlock) {
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto fm = ForwardModel::Load(kModel, lo);
  Model& model = fm->model();
  // Weights quantized, no activation quantizer: the capture's inner fake quantization changes nothing.
  QuantState s = QuantState::ForModel(model);
  s.Apply(config::ResolveQformat("w4a16_nvfp4", "none").quant_cfg);
  const int q = model.layer_modules(1).q;
  HessianCaptureHooks hooks(*fm, s, {q}, 16, FakeQuantHooks::FromState(model, s));
  Recorder rec(q);
  const CalibData d = Samples();
  for (int64_t b0 = 0; b0 < 4; b0 += 2) {
    HiddenStates h = fm->Embed(BatchIds(d, b0, 2), 2, d.seq_len);
    HiddenStates h2 = CloneHidden(fm->backend(), h);
    fm->RunLayer(0, h);
    fm->RunLayer(1, h, &hooks);
    fm->RunLayer(0, h2);
    fm->RunLayer(1, h2, &rec);
  }
  const int64_t cols = model.modules()[static_cast<size_t>(q)].in_features;
  ASSERT_EQ(hooks.tokens(q), rec.rows_);
  const std::vector<float> h = hooks.NormalizedHessian(q);
  ASSERT_EQ(h.size(), static_cast<size_t>(cols * 16));
  for (int64_t j = 0; j < cols / 16; ++j) {
    for (int a = 0; a < 16; ++a) {
      for (int c = 0; c < 16; ++c) {
        double want = 0;
        for (int64_t r = 0; r < rec.rows_; ++r) {
          want += static_cast<double>(rec.x_[r * cols + j * 16 + a]) * rec.x_[r * cols + j * 16 + c];
        }
        want /= static_cast<double>(rec.rows_);
        ASSERT_NEAR(h[(j * 16 + a) * 16 + c], want, 1e-5 * (1 + std::fabs(want))) << j << " " << a << " " << c;
      }
    }
  }
  EXPECT_TRUE(hooks.NormalizedHessian(model.layer_modules(0).q).empty());  // not captured
}

TEST(LocalHessian, MetricIsTheHessianWeightedBlockError) {
  const int64_t rows = 3, cols = 32;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  std::vector<float> x(rows * cols), y(rows * cols), h(cols * 16);
  for (float& v : x) v = nd(rng);
  for (float& v : y) v = nd(rng);
  // A symmetric positive definite H per block: A Aᵀ + I.
  for (int64_t j = 0; j < 2; ++j) {
    std::vector<float> a(16 * 16);
    for (float& v : a) v = nd(rng);
    for (int r = 0; r < 16; ++r) {
      for (int c = 0; c < 16; ++c) {
        double s = r == c ? 1.0 : 0.0;
        for (int k = 0; k < 16; ++k) s += a[r * 16 + k] * a[c * 16 + k];
        h[(j * 16 + r) * 16 + c] = static_cast<float>(s);
      }
    }
  }
  const QuantSpec spec = Nvfp4StaticSpec();
  LocalHessianMetric metric(spec, {rows, cols}, 16, h);
  std::vector<double> got(rows * 2);
  metric.GroupLosses(x, y, got);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < 2; ++j) {
      double want = 0;
      for (int a = 0; a < 16; ++a) {
        for (int c = 0; c < 16; ++c) {
          want += (static_cast<double>(x[r * cols + j * 16 + a]) - y[r * cols + j * 16 + a]) *
                  h[(j * 16 + a) * 16 + c] * (static_cast<double>(x[r * cols + j * 16 + c]) - y[r * cols + j * 16 + c]);
        }
      }
      // Each of the block's 16 elements carries the block's loss; the group (the block) sums them.
      EXPECT_NEAR(got[r * 2 + j], 16 * want, 1e-9 * (1 + std::fabs(want))) << r << " " << j;
    }
  }
  // Identity Hessian: 16 x the squared error per block.
  std::vector<float> eye(cols * 16, 0.f);
  for (int64_t j = 0; j < 2; ++j) {
    for (int a = 0; a < 16; ++a) eye[(j * 16 + a) * 16 + a] = 1.f;
  }
  LocalHessianMetric id(spec, {rows, cols}, 16, eye);
  std::vector<double> sq(rows * 2), li(rows * 2);
  id.GroupLosses(x, y, li);
  GroupSquaredError(spec, std::vector<int64_t>{rows, cols}, x, y, sq);
  for (size_t g = 0; g < sq.size(); ++g) EXPECT_NEAR(li[g], 16 * sq[g], 1e-9 * (1 + sq[g])) << g;
}

QuantState Calibrated(ForwardModel& fm, const config::QuantizeConfig& c, bool layerwise) {
  QuantState s = QuantState::ForModel(fm.model());
  s.Apply(c.quant_cfg);
  CalibrateOptions o;
  o.show_progress = false;
  o.batch_size = 2;
  if (layerwise) {
    o.layerwise.enable = true;
    o.layerwise.qdq_from_prev = false;
  }
  const CalibData data = Samples();
  Calibrate(fm, s, c, [&] { return data; }, o);
  return s;
}

// The sweep recipe with local_hessian: q/k/v/o and gate/up (in_features 64) get Hessian-weighted choices that
// differ from mse's somewhere; down_proj (in_features 172, not a multiple of 16) falls back to plain MSE and
// equals mse exactly.
TEST(LocalHessianAlgorithm, HessianWeightedWhereDivisiblePlainMseElsewhere) {
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto fm = ForwardModel::Load(kModel, lo);
  Model& model = fm->model();
  config::QuantizeConfig c = *config::LoadRecipe("general/ptq/nvfp4_mlp_only_mse-kv_fp8_cast").quantize;
  config::QuantizeConfig lh = c;
  lh.algorithm = config::AlgorithmSpec::FromJson(config::Json{{"method", "local_hessian"}}, "algorithm");
  const QuantState mse = Calibrated(*fm, c, false);
  const QuantState whole = Calibrated(*fm, lh, false);
  int differ = 0;
  for (int l = 0; l < model.num_layers(); ++l) {
    const auto& L = model.layer_modules(l);
    const int down = L.mlp[2];
    EXPECT_TRUE(whole.Get(down, QuantizerRole::kWeight)->amax == mse.Get(down, QuantizerRole::kWeight)->amax) << l;
    for (int m : {L.mlp[0], L.mlp[1]}) differ += whole.Get(m, QuantizerRole::kWeight)->amax != mse.Get(m, QuantizerRole::kWeight)->amax;
  }
  EXPECT_GT(differ, 0);
  // Layer by layer each layer's Hessians come from its unquantized inputs (the layerwise schedule), whole
  // model from a forward with every earlier layer's activations fake-quantized: only layer 0, whose inputs
  // are the embeddings either way, must agree; every later searched weight is still on the FP8 grid.
  const QuantState lw = Calibrated(*fm, lh, true);
  for (size_t i = 0; i < whole.quantizers().size(); ++i) {
    const Quantizer& q = whole.quantizers()[i];
    if (q.role != QuantizerRole::kWeight || model.modules()[static_cast<size_t>(q.module)].layer != 0) continue;
    EXPECT_TRUE(q.amax == lw.quantizers()[i].amax) << q.slot.name;
    EXPECT_EQ(q.global_amax, lw.quantizers()[i].global_amax) << q.slot.name;
  }
}

}  // namespace
}  // namespace qforge
