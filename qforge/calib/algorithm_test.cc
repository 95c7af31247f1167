// The calibration-algorithm registry: every config method either has an implementation or is refused by
// name (listing the implemented ones), and max declares its needs from the quantizer state.
#include "qforge/calib/algorithm.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "qforge/base/error.h"
#include "qforge/config/presets.h"

namespace qforge {
namespace {

namespace fs = std::filesystem;
const fs::path kTiny = fs::path(QF_SHARED_DIR) / "data" / "models" / "tiny";

TEST(CalibAlgorithm, EveryMethodIsImplementedOrRefusedByName) {
  const auto implemented = ImplementedCalibMethods();
  ASSERT_FALSE(implemented.empty());
  EXPECT_EQ(implemented.front(), "max");
  const config::QuantizeConfig qc = config::ResolveQformat("fp8", "fp8");
  for (const auto& t : config::AllAlgorithmTraits()) {
    if (std::string_view(t.method) == "null") continue;  // Calibrate's weights-only path, not an algorithm
    const config::AlgorithmConfig algo = config::ParseAlgorithmConfig(t.method, config::Json::object(), "algorithm");
    const bool known = std::find(implemented.begin(), implemented.end(), t.method) != implemented.end();
    if (known) {
      auto a = MakeCalibAlgorithm(qc, algo);
      ASSERT_NE(a, nullptr);
      EXPECT_EQ(a->config().method(), t.method);
      continue;
    }
    try {
      (void)MakeCalibAlgorithm(qc, algo);
      ADD_FAILURE() << t.method << " was accepted";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(std::string("algorithm '") + t.method + "' is not implemented yet"), std::string::npos) << m;
      EXPECT_NE(m.find("max"), std::string::npos) << m;
    }
  }
}

TEST(CalibAlgorithm, MaxNeedsAForwardOnlyForCalibratingActivationQuantizers) {
  ModelLoadOptions o;
  o.load_all_layers = false;
  auto model = Model::Load(kTiny / "qwen2", o);
  const config::AlgorithmConfig max = config::ParseAlgorithmConfig("max", config::Json::object(), "algorithm");
  for (const auto& [qformat, forward] : {std::pair{"fp8", true}, std::pair{"w4a16_nvfp4", false}}) {
    const config::QuantizeConfig qc = config::ResolveQformat(qformat, "none");
    QuantState s = QuantState::ForModel(*model);
    s.Apply(qc.quant_cfg);
    const CalibNeeds n = MakeCalibAlgorithm(qc, max)->Needs(s);
    EXPECT_EQ(n.forward, forward) << qformat;
    EXPECT_FALSE(n.mutates_weights);
  }
}

}  // namespace
}  // namespace qforge
