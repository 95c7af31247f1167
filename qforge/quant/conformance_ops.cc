// Conformance handlers backed by quant/ and numerics/.
#include "qforge/quant/conformance_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "qforge/base/error.h"
#include "qforge/numerics/layout.h"
#include "qforge/quant/shared_state.h"

namespace qforge {
namespace {
using config::Json;

// Where a case gives a tolerance, a computed value within it is reported as the expected one (the runner
// compares exactly); otherwise the computed value is reported as is.
Json WithinTolerance(double actual, const Json& expected, double tol) {
  if (expected.is_number() && std::abs(actual - expected.get<double>()) <= tol) return expected;
  return actual;
}

Json FindSharedInputGroups(const Json& in, const Json&) {
  std::vector<std::string> patterns = in.at("patterns").get<std::vector<std::string>>();
  std::vector<std::string> modules = in.at("modules_with_enabled_weight_quantizer").get<std::vector<std::string>>();
  std::set<std::string> lists;
  for (const auto& l : in.value("module_lists", Json::array())) lists.insert(l.get<std::string>());
  Json groups = Json::array();
  for (const auto& g : FindSharedGroups(CompilePatterns(patterns), modules, lists)) {
    groups.push_back({{"parent", g.parent}, {"members", g.members}});
  }
  return {{"groups", groups}};
}

Json SharedGlobalAmaxPopulate(const Json& in, const Json& expect) {
  const double tol = expect.value("tolerance", 0.0);
  Json values = Json::array();
  int populated = 0;
  size_t i = 0;
  for (const auto& g : in.at("groups")) {
    std::vector<std::optional<float>> member_max;
    for (const auto& [name, m] : g.at("members").items()) {
      if (m.contains("per_block_amax_fill")) {
        member_max.push_back(m["per_block_amax_fill"].get<float>());  // a constant per-block amax: its max
      } else {
        QF_CHECK(m.contains("per_block_amax"), "member '{}' needs per_block_amax_fill or per_block_amax", name);
        member_max.push_back(std::nullopt);  // "meta" (no data): ignored, as ModelOpt skips meta amax
      }
    }
    auto v = PopulateGlobalAmax(member_max);
    populated += v.has_value();
    const Json want = expect.contains("global_amax") && i < expect["global_amax"].size() ? expect["global_amax"][i]
                                                                                         : Json();
    values.push_back(v ? WithinTolerance(*v, want, tol) : Json());
    ++i;
  }
  Json out = {{"n_groups", populated}, {"global_amax", values}};
  if (expect.contains("tolerance")) out["tolerance"] = expect["tolerance"];
  return out;
}

// ModelOpt's NVFP4 export cast of per-block scales: clamp to [2^-9, 448] (no underflow to 0, no overflow
// to NaN), then round to E4M3 (RNE).
Json CastPerBlockScaleToFp8(const Json& in, const Json& expect) {
  std::vector<float> out;
  for (const auto& v : in.at("values")) {
    const float x = std::clamp(v.get<float>(), 0x1p-9f, 448.0f);
    out.push_back(DecodeE4M3(EncodeE4M3(x, Overflow::kSaturate)));
  }
  bool finite = true, positive = true;
  float mx = -std::numeric_limits<float>::infinity();
  for (float f : out) {
    finite = finite && std::isfinite(f);
    positive = positive && f > 0;
    mx = std::max(mx, f);
  }
  Json r = {{"all_finite", finite}, {"all_positive", positive}, {"derived_exact_values", out}};
  if (expect.contains("max_le")) r["max_le"] = mx <= expect["max_le"].get<float>() ? expect["max_le"] : Json(mx);
  return r;
}

}  // namespace

void RegisterQuantConformanceOps(config::ConformanceRegistry& registry) {
  registry.Register("find_shared_input_groups", FindSharedInputGroups);
  registry.Register("shared_global_amax_populate", SharedGlobalAmaxPopulate);
  registry.Register("cast_per_block_scale_to_fp8", CastPerBlockScaleToFp8);
}

}  // namespace qforge
