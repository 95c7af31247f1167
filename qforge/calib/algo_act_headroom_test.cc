// The nvfp4_act_headroom algorithm through Calibrate, on a small trained Llama (stories260K: down_proj's 172
// input features end in a ragged 12-element block): each NVFP4 input quantizer's amax is its histogram's
// headroom amax, recomputed here from the inputs a plain forward captures; every other amax (weights, the
// FP8 KV cast) is plain max's, or with weight_scale_algorithm mse, plain mse's; layerwise and a device-shaped
// backend give the same state bit for bit; and invalid configs are refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "qforge/base/error.h"
#include "qforge/calib/calibrate.h"
#include "qforge/calib/layerwise_conformance.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/numerics/act_headroom.h"
#include "tests/support/calib_algorithm_util.h"
#include "tests/support/host_device_backend.h"

namespace qforge {
namespace {

using testing_support::Calibrated;
using testing_support::WithAlgorithm;
const std::filesystem::path kModel = testing_support::Stories260K();
CalibData Samples() { return testing_support::FixedSamples(); }
config::QuantizeConfig Recipe() { return *config::LoadRecipe("general/ptq/nvfp4_act_headroom-kv_fp8_cast").quantize; }

// Every Linear's input, into a histogram per module (CPU forward, the same batches of 2).
class InputHistograms : public ForwardHooks {
 public:
  bool ModifiesActivations() const override { return false; }
  void OnLinearInput(Backend&, int module, float* x, int64_t rows, int64_t cols) override {
    hist[module].AddRows(x, rows, cols, 16);
  }
  std::map<int, BlockAmaxHistogram> hist;
};

bool IsNvfp4DynamicInput(const Quantizer& q) {
  return q.role == QuantizerRole::kInput && q.NeedsCalibration() && q.spec().IsNvfp4Dynamic() && !q.spec().dynamic;
}

TEST(ActHeadroomAlgorithm, InputAmaxIsTheHistogramsAndEverythingElseIsMax) {
  auto fm = testing_support::LoadStories260K();
  const config::QuantizeConfig c = Recipe();
  const QuantState headroom = Calibrated(*fm, c);
  const QuantState max = Calibrated(*fm, WithAlgorithm(c, "max"));

  InputHistograms capture;
  const CalibData data = Samples();
  for (int64_t b0 = 0; b0 < 4; b0 += 2) (void)fm->Forward(BatchIds(data, b0, 2), 2, data.seq_len, &capture);

  const ActHeadroomParams params{1.0, 99.99, 16384.0};
  int checked = 0, ragged = 0;
  for (size_t i = 0; i < headroom.quantizers().size(); ++i) {
    const Quantizer& q = headroom.quantizers()[i];
    const Quantizer& m = max.quantizers()[i];
    if (!IsNvfp4DynamicInput(q)) {
      EXPECT_TRUE(q.amax == m.amax) << q.slot.name;
      EXPECT_EQ(q.global_amax, m.global_amax) << q.slot.name;
      continue;
    }
    ASSERT_TRUE(capture.hist.count(q.module)) << q.slot.name;
    const auto want = capture.hist.at(q.module).Compute(params);
    ASSERT_TRUE(want.has_value()) << q.slot.name;
    ASSERT_EQ(q.amax.size(), 1u) << q.slot.name;
    EXPECT_EQ(q.amax[0], want->amax) << q.slot.name;
    // rho * anchor or the upper percentile: never below the upper percentile, and here above the max.
    EXPECT_GE(q.amax[0], static_cast<float>(want->upper)) << q.slot.name;
    EXPECT_NE(q.amax[0], m.amax.at(0)) << q.slot.name;
    ragged += fm->modules()[q.module].in_features % 16 != 0;
    ++checked;
  }
  EXPECT_GT(checked, 10);
  EXPECT_GT(ragged, 0);  // down_proj's 172 features
}

TEST(ActHeadroomAlgorithm, WeightScaleAlgorithmCalibratesTheWeights) {
  auto fm = testing_support::LoadStories260K();
  const config::QuantizeConfig c = Recipe();
  const QuantState with_mse =
      Calibrated(*fm, WithAlgorithm(c, config::Json::parse(R"({"method": "nvfp4_act_headroom",
                                                                "weight_scale_algorithm": {"method": "mse"}})")));
  const QuantState mse = Calibrated(*fm, WithAlgorithm(c, "mse"));
  const QuantState headroom = Calibrated(*fm, c);
  int weights = 0;
  for (size_t i = 0; i < mse.quantizers().size(); ++i) {
    const Quantizer& q = with_mse.quantizers()[i];
    if (q.role == QuantizerRole::kWeight) {
      EXPECT_TRUE(q.amax == mse.quantizers()[i].amax) << q.slot.name;
      EXPECT_EQ(q.global_amax, mse.quantizers()[i].global_amax) << q.slot.name;
      weights += q.has_amax;
    } else if (IsNvfp4DynamicInput(q)) {
      EXPECT_TRUE(q.amax == headroom.quantizers()[i].amax) << q.slot.name;  // the activation policy is the same
    }
  }
  EXPECT_GT(weights, 10);
}

TEST(ActHeadroomAlgorithm, LayerwiseAndADeviceGiveTheSameState) {
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(kModel, lo);
  const config::QuantizeConfig c = Recipe();
  ForwardModel cpu(*model, DefaultCpuBackend());
  const QuantState want = Calibrated(cpu, c);
  CalibrateOptions lw;
  lw.layerwise.enable = true;
  lw.layerwise.qdq_from_prev = false;
  testing_support::ExpectSameAmax(want, Calibrated(cpu, c, lw), "layerwise");
  testing_support::HostDeviceBackend dev;  // its activations come down for the histograms
  ForwardModel fm(*model, dev);
  testing_support::ExpectSameAmax(want, Calibrated(fm, c), "device, whole model");
  testing_support::ExpectSameAmax(want, Calibrated(fm, c, lw), "device, layerwise");
}

// ModelOpt's own calibrator tests (conformance cases nvfp4_act_headroom_calibrator): rho x anchor, the
// no-headroom fallback to the calibrated top with its warning, and the refused percentiles.
TEST(ActHeadroomAlgorithm, ModelOptCalibratorCasesPass) {
  int cases = 0;
  for (const auto& r : testing_support::CalibConformanceResults()) {
    if (r.name.find("test_nvfp4_act_headroom") == std::string::npos) continue;
    ++cases;
    EXPECT_EQ(r.status, config::ConformanceCaseResult::Status::kPass) << r.name << ": " << r.message;
  }
  EXPECT_EQ(cases, 4);
}

TEST(ActHeadroomAlgorithm, InvalidConfigsAreRefused) {
  const config::QuantizeConfig c = Recipe();
  for (const char* bad : {R"({"method": "nvfp4_act_headroom", "rho": 28672})",
                          R"({"method": "nvfp4_act_headroom", "anchor_percentile": 0})",
                          R"({"method": "nvfp4_act_headroom", "upper_percentile": 100.5})",
                          R"({"method": "nvfp4_act_headroom", "weight_scale_algorithm": {"method": "gptq"}})"}) {
    EXPECT_THROW(WithAlgorithm(c, config::Json::parse(bad)), Error) << bad;
  }
}

}  // namespace
}  // namespace qforge
