// What the calibration-algorithm tests share: the small trained Llama they run on, a fixed batch of token
// ids, a recipe with its algorithm replaced, a state calibrated through Calibrate, a comparison of two
// states' amax bit for bit, and the conformance cases' results.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "qforge/calib/calibrate.h"
#include "qforge/calib/layerwise_conformance.h"
#include "qforge/config/conformance.h"
#include "qforge/config/yaml_loader.h"
#include "qforge/quant/activation_quant.h"

namespace qforge::testing_support {

// The trained 260K-parameter Llama: 5 layers, down_proj in_features 172 (a ragged last NVFP4 block).
inline std::filesystem::path Stories260K() {
  return std::filesystem::path(QF_SHARED_DIR) / "data" / "models" / "stories260K" / "hf";
}

// Its ForwardModel with layers loaded on first use, on `backend` (nullptr: the CPU).
inline std::unique_ptr<ForwardModel> LoadStories260K(Backend* backend = nullptr) {
  ModelLoadOptions lo;
  lo.load_all_layers = false;
  return ForwardModel::Load(Stories260K(), lo, backend);
}

// Every case of ModelOpt's conformance file, run with the calibration ops registered (tests filter by name).
inline std::vector<config::ConformanceCaseResult> CalibConformanceResults() {
  config::ConformanceRegistry& reg = config::DefaultConformanceRegistry();
  RegisterCalibConformanceOps(reg);
  std::ostringstream failures;
  return reg.RunFile(QF_SHARED_DIR "/conformance/modelopt_cases.jsonl", &failures).results;
}

// 4 samples of 32 ids in [10, 510), the same every time.
inline CalibData FixedSamples() {
  std::vector<int32_t> ids(4 * 32);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 7919 + 13) % 500 + 10);
  return CutCalibSamples(ids, 4, 32);
}

// `c` with its algorithm replaced by `algo` (a method name or a mapping).
inline config::QuantizeConfig WithAlgorithm(config::QuantizeConfig c, const config::Json& algo) {
  c.algorithm = config::AlgorithmSpec::FromJson(algo, "algorithm");
  return c;
}

// A fresh state of fm's model under `c`, calibrated by Calibrate on FixedSamples() in batches of 2.
inline QuantState Calibrated(ForwardModel& fm, const config::QuantizeConfig& c, const CalibrateOptions& o = {}) {
  QuantState s = QuantState::ForModel(fm.model());
  s.Apply(c.quant_cfg);
  CalibrateOptions opt = o;
  opt.show_progress = false;
  opt.batch_size = 2;
  const CalibData data = FixedSamples();
  Calibrate(fm, s, c, [&] { return data; }, opt);
  return s;
}

// Every quantizer's amax and global amax equal, bit for bit (amax never holds NaN).
inline void ExpectSameAmax(const QuantState& a, const QuantState& b, const std::string& what) {
  ASSERT_EQ(a.quantizers().size(), b.quantizers().size());
  for (size_t i = 0; i < a.quantizers().size(); ++i) {
    EXPECT_TRUE(a.quantizers()[i].amax == b.quantizers()[i].amax) << what << " " << a.quantizers()[i].slot.name;
    EXPECT_EQ(a.quantizers()[i].global_amax, b.quantizers()[i].global_amax) << what << " " << a.quantizers()[i].slot.name;
  }
}

// The activation table that only applies each Linear input's pre_quant_scale (no quantization): a smoothed
// model with it computes what the unsmoothed one does, up to the rounding of the smoothed weights.
inline ActivationQuantTable PreQuantScalesOnly(const Model& model, const QuantState& s) {
  ActivationQuantTable t(model.modules().size());
  for (int m : model.linear_modules()) {
    const Quantizer* in = s.Get(m, QuantizerRole::kInput);
    if (in == nullptr || in->pre_quant_scale.empty()) continue;
    ActivationQuant a;
    a.name = in->slot.name;
    a.pre_quant_scale = in->pre_quant_scale;
    a.quantize = false;
    t.SetInput(m, a);
  }
  return t;
}

// ‖got − want‖ / ‖want‖ over two tensors of one shape (double sums).
inline double RelativeL2(const Tensor& got, const Tensor& want) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < want.numel(); ++i) {
    const double e = double(got.span<float>()[i]) - want.span<float>()[i];
    num += e * e;
    den += double(want.span<float>()[i]) * want.span<float>()[i];
  }
  return std::sqrt(num / den);
}

}  // namespace qforge::testing_support
