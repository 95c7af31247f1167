// Conformance case runner for `modelopt_cases.jsonl` (spec Appendix A): a registry of op name -> handler.
//
// A handler receives the case's `input` (and `expect`, for ops whose output depends on what is asked) and
// returns an "actual" object whose keys use the vocabulary of `expect`. The runner checks the common
// expectations itself: `ok`, `error_contains`, `error_regex`, `error_type`, `warnings` (captured through
// ScopedLogCapture) and then compares every other expected key with the actual value:
//   fields: {"a.b": v}      -> dotted lookups into actual["fields"] (the full dump)
//   state: {name: {...}}    -> subset comparison per name
//   dump_has_no_key: k      -> actual["dump"] has no key k
//   quant_cfg_resolved: [...] -> the expected list is normalized, then compared with actual["quant_cfg"]
//   anything else           -> structural equality (JsonEqual) with actual[key]
// Cases whose op has no handler are skipped. Later layers (calibration) register more ops on the same
// registry before running.
#pragma once

#include <functional>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "qforge/config/json_util.h"

namespace qforge::config {

using ConformanceHandler = std::function<Json(const Json& input, const Json& expect)>;

struct ConformanceCaseResult {
  enum class Status { kPass, kFail, kSkip };
  Status status = Status::kSkip;
  std::string name;
  std::string message;  // why it failed
};

struct ConformanceSummary {
  int passed = 0, failed = 0, skipped = 0;
  std::vector<ConformanceCaseResult> results;
};

class ConformanceRegistry {
 public:
  void Register(const std::string& op, ConformanceHandler handler);
  bool Has(const std::string& op) const { return handlers_.count(op) > 0; }
  std::vector<std::string> Ops() const;

  ConformanceCaseResult RunCase(const Json& c) const;
  // Runs every line of a .jsonl file. Writes one line per failing case to `out` (if non-null).
  ConformanceSummary RunFile(const std::string& path, std::ostream* out) const;

 private:
  std::map<std::string, ConformanceHandler> handlers_;
};

// The process-wide registry, with config/'s ops registered: normalize_quant_cfg_list,
// quantizer_attribute_config, quantize_config, algorithm_config, need_calibration,
// find_quant_cfg_entry_by_path, apply_quant_cfg, load_recipe_yaml, match_quantizer_cfg_bare,
// needs_activation_forward.
ConformanceRegistry& DefaultConformanceRegistry();

}  // namespace qforge::config
