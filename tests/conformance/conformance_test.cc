// Runs every ModelOpt behaviour case through the op registry: no failures, and only calibration ops skipped.
#include <gtest/gtest.h>

#include <sstream>

#include "qforge/base/strings.h"
#include "qforge/config/conformance.h"

namespace qforge::config {
namespace {

const char* kCasesFile = QF_SHARED_DIR "/conformance/modelopt_cases.jsonl";

// Ops that arrive with calibration (issue 3: may be skipped until then).
bool IsCalibrationOp(const std::string& op) {
  for (const char* p : {"layerwise_", "find_shared_input_groups", "shared_", "nvfp4_act_headroom_", "cast_"}) {
    if (StartsWith(op, p)) return true;
  }
  return false;
}

TEST(Conformance, ModelOptCasesPassAndOnlyCalibrationOpsAreSkipped) {
  const ConformanceRegistry& reg = DefaultConformanceRegistry();
  std::ostringstream failures;
  ConformanceSummary s = reg.RunFile(kCasesFile, &failures);
  EXPECT_EQ(s.failed, 0) << failures.str();
  EXPECT_GE(s.passed, 130);
  for (const auto& r : s.results) {
    if (r.status != ConformanceCaseResult::Status::kSkip) continue;
    std::string op = r.message.substr(r.message.find('\'') + 1);
    op = op.substr(0, op.find('\''));
    EXPECT_TRUE(IsCalibrationOp(op)) << r.name << " skipped: " << r.message;
  }
}

TEST(Conformance, RunnerReportsWrongExpectationsAsFailures) {
  const ConformanceRegistry& reg = DefaultConformanceRegistry();
  Json good = Json::parse(R"({"name": "t", "input": {"op": "normalize_quant_cfg_list", "quant_cfg": [{"quantizer_name": "*", "enable": false}]},
                              "expect": {"ok": true, "entries": [{"quantizer_name": "*", "parent_class": null, "cfg": null, "enable": false}]}})");
  EXPECT_EQ(reg.RunCase(good).status, ConformanceCaseResult::Status::kPass);
  Json bad = good;
  bad["expect"]["entries"][0]["enable"] = true;
  EXPECT_EQ(reg.RunCase(bad).status, ConformanceCaseResult::Status::kFail);
  Json want_error = good;
  want_error["expect"] = Json::parse(R"({"ok": false, "error_contains": "x"})");
  EXPECT_EQ(reg.RunCase(want_error).status, ConformanceCaseResult::Status::kFail);
  Json warn = good;
  warn["expect"]["warnings"] = Json::array({"DeprecationWarning"});
  EXPECT_EQ(reg.RunCase(warn).status, ConformanceCaseResult::Status::kFail);
  Json unknown = Json::parse(R"({"name": "u", "input": {"op": "no_such_op"}, "expect": {}})");
  EXPECT_EQ(reg.RunCase(unknown).status, ConformanceCaseResult::Status::kSkip);
}

TEST(Conformance, HandlersCanBeRegisteredForMoreOps) {
  ConformanceRegistry reg;
  reg.Register("double", [](const Json& in, const Json&) { return Json::object({{"result", in["x"].get<int>() * 2}}); });
  Json c = Json::parse(R"({"name": "d", "input": {"op": "double", "x": 21}, "expect": {"result": 42}})");
  EXPECT_EQ(reg.RunCase(c).status, ConformanceCaseResult::Status::kPass);
}

}  // namespace
}  // namespace qforge::config
