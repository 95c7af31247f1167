// The gptq algorithm through Calibrate, on a small trained Llama: every quantized weight changes, onto its
// quantizer's grid with the max step's scales (which GPTQ keeps), and the weights nobody quantizes stay as
// they are; the layerwise run on the device-shaped test backend equals the CPU's bit for bit (Hessians
// captured on the "device", weights re-uploaded after each update); the whole-model mode runs too.
#include <gtest/gtest.h>

#include <filesystem>

#include "qforge/base/error.h"
#include "qforge/calib/calibrate.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/numerics/qdq.h"
#include "tests/support/calib_algorithm_util.h"
#include "tests/support/host_device_backend.h"

namespace qforge {
namespace {

using testing_support::Calibrated;
using testing_support::ExpectSameAmax;
using testing_support::WithAlgorithm;

config::QuantizeConfig GptqRecipe() { return *config::LoadRecipe("general/ptq/nvfp4_default-kv_none-gptq").quantize; }

CalibrateOptions NoCheckpoint() {
  CalibrateOptions o;
  o.layerwise.checkpoint_dir = "";  // the recipe's relative checkpoint_dir is not wanted here
  return o;
}

TEST(GptqAlgorithm, UpdatesEveryQuantizedWeightOntoItsGridWithTheMaxScales) {
  auto fm = testing_support::LoadStories260K();
  Model& model = fm->model();
  const config::QuantizeConfig c = GptqRecipe();
  auto ref = testing_support::LoadStories260K();  // max calibration of the same recipe, on untouched weights
  const QuantState max = Calibrated(*ref, WithAlgorithm(c, config::ParseYaml("{method: max, layerwise: {enable: true}}")),
                                    NoCheckpoint());
  const QuantState s = Calibrated(*fm, c, NoCheckpoint());
  // (Input quantizers differ past layer 0: gptq's next-layer inputs come from the quantized layer.)
  for (size_t i = 0; i < s.quantizers().size(); ++i) {
    if (s.quantizers()[i].role != QuantizerRole::kWeight) continue;
    EXPECT_TRUE(s.quantizers()[i].amax == max.quantizers()[i].amax) << s.quantizers()[i].slot.name;
    EXPECT_EQ(s.quantizers()[i].global_amax, max.quantizers()[i].global_amax) << s.quantizers()[i].slot.name;
  }
  int updated = 0;
  for (int m : model.linear_modules()) {
    const Quantizer* q = s.Get(m, QuantizerRole::kWeight);
    const Tensor before = ref->model().LinearWeight(m);
    const Tensor after = model.LinearWeight(m);
    if (q == nullptr || !q->enabled()) {
      EXPECT_TRUE(std::equal(before.span<float>().begin(), before.span<float>().end(), after.span<float>().begin()))
          << model.modules()[static_cast<size_t>(m)].name << " is not quantized and must not change";
      continue;
    }
    ++updated;
    EXPECT_FALSE(std::equal(before.span<float>().begin(), before.span<float>().end(), after.span<float>().begin()))
        << model.modules()[static_cast<size_t>(m)].name;
    // On the grid: the fixed scales reproduce every value (up to the bf16 write-back, which the grid of these
    // static NVFP4 values survives exactly or to the nearest neighbour).
    std::vector<float> again(after.numel());
    FakeQuant(q->spec(), after.span<float>(), after.shape(), q->amax, again, q->global_amax);
    int64_t off = 0;
    for (int64_t i = 0; i < after.numel(); ++i) off += again[i] != after.span<float>()[i] ? 1 : 0;
    EXPECT_LE(off, after.numel() / 100) << model.modules()[static_cast<size_t>(m)].name;
  }
  EXPECT_GT(updated, 10);
}

// scale_algorithm mse (qforge extension): the fixed scales are mse's searched ones (its search reads only the
// layer's own weights, before their update), and the weights are still updated onto that grid.
TEST(GptqAlgorithm, ScaleAlgorithmMseKeepsMsesSearchedScales) {
  const config::QuantizeConfig base = GptqRecipe();
  const config::QuantizeConfig c = WithAlgorithm(base, config::ParseYaml(
      "{method: gptq, scale_algorithm: {method: mse, fp8_scale_sweep: true}, layerwise: {enable: true}}"));
  auto fm = testing_support::LoadStories260K();
  auto ref = testing_support::LoadStories260K();
  const QuantState mse = Calibrated(*ref, WithAlgorithm(base, config::ParseYaml(
      "{method: mse, fp8_scale_sweep: true, layerwise: {enable: true}}")), NoCheckpoint());
  const QuantState s = Calibrated(*fm, c, NoCheckpoint());
  int moved = 0;
  for (size_t i = 0; i < s.quantizers().size(); ++i) {
    const Quantizer& q = s.quantizers()[i];
    if (q.role != QuantizerRole::kWeight || !q.enabled()) continue;
    EXPECT_TRUE(q.amax == mse.quantizers()[i].amax) << q.slot.name;
    const Tensor before = ref->model().LinearWeight(q.module), after = fm->model().LinearWeight(q.module);
    moved += std::equal(before.span<float>().begin(), before.span<float>().end(), after.span<float>().begin()) ? 0 : 1;
  }
  EXPECT_GT(moved, 10);
  auto other = testing_support::LoadStories260K();
  EXPECT_THROW(Calibrated(*other, WithAlgorithm(base, config::ParseYaml("{method: gptq, scale_algorithm: gptq}")),
                          NoCheckpoint()),
               Error);  // (parses as a nested algorithm; gptq refuses it by name)
}

// scale_algorithm local_hessian (qforge extension): the fixed scales are local_hessian's searched ones. On the
// whole model both capture their Hessians in one forward of the original weights with the activations
// quantized, so every weight amax equals the local_hessian algorithm's; layer by layer, layer 0's (later
// layers see the outputs of updated layers). The weights are updated onto that grid.
TEST(GptqAlgorithm, ScaleAlgorithmLocalHessianKeepsLocalHessiansSearchedScales) {
  const config::QuantizeConfig base = GptqRecipe();
  for (const bool layerwise : {false, true}) {
    SCOPED_TRACE(layerwise ? "layerwise" : "whole model");
    const std::string lw = layerwise ? ", layerwise: {enable: true}" : "";
    auto fm = testing_support::LoadStories260K();
    auto ref = testing_support::LoadStories260K();
    const QuantState lh = Calibrated(*ref, WithAlgorithm(base, config::ParseYaml("{method: local_hessian" + lw + "}")),
                                     NoCheckpoint());
    const QuantState s = Calibrated(
        *fm, WithAlgorithm(base, config::ParseYaml("{method: gptq, scale_algorithm: {method: local_hessian}" + lw + "}")),
        NoCheckpoint());
    const QuantState max = Calibrated(*testing_support::LoadStories260K(),
                                      WithAlgorithm(base, config::ParseYaml("{method: max" + lw + "}")), NoCheckpoint());
    int moved = 0, searched = 0, compared = 0;
    for (size_t i = 0; i < s.quantizers().size(); ++i) {
      const Quantizer& q = s.quantizers()[i];
      if (q.role != QuantizerRole::kWeight || !q.enabled()) continue;
      searched += q.amax != max.quantizers()[i].amax ? 1 : 0;
      if (!layerwise || fm->model().modules()[static_cast<size_t>(q.module)].layer == 0) {
        EXPECT_TRUE(q.amax == lh.quantizers()[i].amax) << q.slot.name;
        ++compared;
      }
      const Tensor before = ref->model().LinearWeight(q.module), after = fm->model().LinearWeight(q.module);
      moved += std::equal(before.span<float>().begin(), before.span<float>().end(), after.span<float>().begin()) ? 0 : 1;
    }
    EXPECT_GE(compared, 7);
    EXPECT_GT(searched, 10);  // the search moved scales away from max's
    EXPECT_GT(moved, 10);
  }
}

TEST(GptqAlgorithm, LayerwiseOnTheDeviceShapedBackendEqualsTheCpu) {
  const config::QuantizeConfig c = GptqRecipe();
  auto cpu = testing_support::LoadStories260K();
  const QuantState a = Calibrated(*cpu, c, NoCheckpoint());
  testing_support::HostDeviceBackend dev;
  auto gpu = testing_support::LoadStories260K(&dev);
  const QuantState b = Calibrated(*gpu, c, NoCheckpoint());
  ExpectSameAmax(a, b, "device-shaped");
  for (int m : cpu->model().linear_modules()) {
    const Tensor x = cpu->model().LinearWeight(m), y = gpu->model().LinearWeight(m);
    EXPECT_TRUE(std::equal(x.span<float>().begin(), x.span<float>().end(), y.span<float>().begin()))
        << cpu->model().modules()[static_cast<size_t>(m)].name;
  }
}

TEST(GptqAlgorithm, WholeModelModeUpdatesFromTheOriginalActivations) {
  const config::QuantizeConfig c = WithAlgorithm(GptqRecipe(), config::ParseYaml("{method: gptq}"));
  auto fm = testing_support::LoadStories260K();
  auto ref = testing_support::LoadStories260K();
  (void)Calibrated(*fm, c);
  int changed = 0;
  for (int m : fm->model().linear_modules()) {
    const Tensor x = ref->model().LinearWeight(m), y = fm->model().LinearWeight(m);
    changed += std::equal(x.span<float>().begin(), x.span<float>().end(), y.span<float>().begin()) ? 0 : 1;
  }
  EXPECT_GT(changed, 10);
}

}  // namespace
}  // namespace qforge
