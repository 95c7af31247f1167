// The mse algorithm through Calibrate, on a small trained Llama: the searched weights (and only those)
// move off their max amax, onto the candidate grid, never to a larger weight error; the global amax of
// promotion stays; layerwise equals whole-model; a layerwise run interrupted mid-way resumes to the same
// state; and the multiplier search covers non-static formats.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <stdexcept>

#include "qforge/base/error.h"
#include "qforge/base/kill_point.h"
#include "qforge/calib/calibrate.h"
#include "qforge/config/presets.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/numerics/amax_search.h"
#include "qforge/numerics/qdq.h"
#include "tests/support/calib_algorithm_util.h"
#include "tests/support/host_device_backend.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
using testing_support::Calibrated;
using testing_support::ExpectSameAmax;
using testing_support::WithAlgorithm;
const fs::path kModel = testing_support::Stories260K();

config::QuantizeConfig SweepRecipe() { return *config::LoadRecipe("general/ptq/nvfp4_mlp_only_mse-kv_fp8_cast").quantize; }

double WeightError(const Model& model, const Quantizer& q) {
  const Tensor w = model.LinearWeight(q.module);
  std::vector<float> y(w.numel());
  FakeQuant(q.spec(), w.span<float>(), w.shape(), q.amax, y, q.global_amax);
  double e = 0;
  for (size_t i = 0; i < y.size(); ++i) e += (static_cast<double>(w.span<float>()[i]) - y[i]) * (w.span<float>()[i] - y[i]);
  return e;
}


TEST(MseAlgorithm, Fp8SweepMovesOnlyStaticNvfp4WeightsOntoTheGridAtNoMoreError) {
  auto fm = testing_support::LoadStories260K();
  const config::QuantizeConfig sweep = SweepRecipe();
  const QuantState mse = Calibrated(*fm, sweep);
  const QuantState max = Calibrated(*fm, WithAlgorithm(sweep, "max"));
  const std::vector<float> c = Fp8ScaleCandidates();
  int searched = 0, moved = 0;
  for (size_t i = 0; i < mse.quantizers().size(); ++i) {
    const Quantizer& q = mse.quantizers()[i];
    const Quantizer& m = max.quantizers()[i];
    if (q.role != QuantizerRole::kWeight || !q.enabled() || !q.spec().IsNvfp4Static()) {
      EXPECT_TRUE(q.amax == m.amax) << q.slot.name << ": not searched, so at its max amax";
      continue;
    }
    ++searched;
    ASSERT_TRUE(q.global_amax.has_value() && m.global_amax.has_value()) << q.slot.name;
    EXPECT_EQ(*q.global_amax, *m.global_amax) << q.slot.name << ": promotion's global amax stays";
    for (float a : q.amax) {
      const bool on_grid = std::any_of(c.begin(), c.end(), [&](float ck) { return *q.global_amax * ck == a; });
      ASSERT_TRUE(on_grid) << q.slot.name << ": amax " << a << " is not global * code / 448";
    }
    moved += q.amax != m.amax;
    // Per block the sweep minimizes the error over its candidates; the max amax itself need not be one,
    // so the whole weight's error may exceed max's only by a little.
    EXPECT_LE(WeightError(fm->model(), q), 1.02 * WeightError(fm->model(), m)) << q.slot.name;
  }
  EXPECT_EQ(searched, 3 * fm->num_layers());  // gate, up, down of every layer
  EXPECT_EQ(moved, searched);
}

TEST(MseAlgorithm, LayerwiseEqualsWholeModelAndResumesAfterAnInterruption) {
  auto fm = testing_support::LoadStories260K();
  const config::QuantizeConfig sweep = SweepRecipe();
  const QuantState whole = Calibrated(*fm, sweep);
  CalibrateOptions o;
  o.layerwise.enable = true;
  o.layerwise.qdq_from_prev = false;
  ExpectSameAmax(whole, Calibrated(*fm, sweep, o), "layerwise");

  const fs::path dir = fs::temp_directory_path() / ("qforge_mse_resume_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  o.layerwise.checkpoint_dir = dir.string();
  SetKillPointHandler([](std::string_view event, int layer) {
    if (event == "layer_calibrated" && layer == 2) throw std::runtime_error("interrupted at layer 2");
  });
  EXPECT_THROW(Calibrated(*fm, sweep, o), std::runtime_error);
  SetKillPointHandler({});
  ExpectSameAmax(whole, Calibrated(*fm, sweep, o), "resumed");
  fs::remove_all(dir);
}

// On a device backend the sweep runs there (Backend::Nvfp4SweepBlocks on the resident weights): the same
// amax as the host sweep, whole-model and layerwise (here a device whose ops are the CPU's).
TEST(MseAlgorithm, DeviceSweepEqualsTheHostSweep) {
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  auto model = Model::Load(kModel, lo);
  const config::QuantizeConfig sweep = SweepRecipe();
  ForwardModel cpu(*model, DefaultCpuBackend());
  const QuantState want = Calibrated(cpu, sweep);
  testing_support::HostDeviceBackend dev;
  for (bool layerwise : {false, true}) {
    ForwardModel fm(*model, dev);
    CalibrateOptions o;
    if (layerwise) {
      o.layerwise.enable = true;
      o.layerwise.qdq_from_prev = false;
    }
    ExpectSameAmax(want, Calibrated(fm, sweep, o), layerwise ? "device, layerwise" : "device, whole model");
  }
}

// Without the sweep every calibrated weight quantizer gets the multiplier search: NVFP4's dynamic global
// amax and per-channel FP8 become initial amax times one of the 39 multipliers.
TEST(MseAlgorithm, MultiplierSearchScalesTheMaxAmax) {
  auto fm = testing_support::LoadStories260K();
  const std::vector<float> m = MseMultipliers(0.25, 4.0, 0.1);
  for (const char* qformat : {"nvfp4", "fp8_pc_pt"}) {
    const config::QuantizeConfig base = config::ResolveQformat(qformat, "none");
    const QuantState mse = Calibrated(*fm, WithAlgorithm(base, "mse"));
    const QuantState max = Calibrated(*fm, WithAlgorithm(base, "max"));
    int searched = 0;
    for (size_t i = 0; i < mse.quantizers().size(); ++i) {
      const Quantizer& q = mse.quantizers()[i];
      const Quantizer& x = max.quantizers()[i];
      if (q.role != QuantizerRole::kWeight || !q.enabled() || !q.has_amax) continue;
      ++searched;
      ASSERT_EQ(q.amax.size(), x.amax.size());
      for (size_t g = 0; g < q.amax.size(); ++g) {
        const bool scaled = std::any_of(m.begin(), m.end(), [&](float mk) { return x.amax[g] * mk == q.amax[g]; });
        ASSERT_TRUE(scaled) << qformat << " " << q.slot.name << " group " << g;
      }
      // 1.0 is not one of the 39 multipliers (spacing 3.75/38): max's own error is only nearly a bound.
      EXPECT_LE(WeightError(fm->model(), q), 1.02 * WeightError(fm->model(), x)) << qformat << " " << q.slot.name;
    }
    EXPECT_GT(searched, 10) << qformat;
  }
}

TEST(MseAlgorithm, RefusesAnEmptyCandidateRange) {
  EXPECT_THROW((void)MseMultipliers(0.25, 4.0, 1e-9), Error);
}

}  // namespace
}  // namespace qforge
