// Shared quantization state (spec §8, seed 003): fusible siblings (q/k/v, gate/up, per-expert w1/w3)
// whose weight quantizers must share one NVFP4 per-tensor global amax.
//
// Groups come from regex patterns applied with Python `re.fullmatch` to module names; the capture groups
// (the parent path) decide the bucket, so the default patterns group per attention block, per MLP and
// per expert. The state is structural (found before any data) and populated after calibration.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "qforge/config/regex.h"

namespace qforge {

struct SharedGroup {
  int pattern_index = -1;            // which pattern formed the group
  std::string parent;                // module the state attaches to ("" = the root)
  std::vector<std::string> members;  // module names, in module order
};

// Spec §8.3. `modules` are the names of modules whose weight quantizer is enabled, in module order;
// `module_lists` names the ModuleList containers (e.g. "model.layers", "...mlp.experts"): a state is never
// attached to one, so the parent climbs past them. Buckets of one module are not groups.
std::vector<SharedGroup> FindSharedGroups(const std::vector<config::Regex>& patterns,
                                          const std::vector<std::string>& modules,
                                          const std::set<std::string>& module_lists);

// Compiles pattern strings (errors name the pattern).
std::vector<config::Regex> CompilePatterns(const std::vector<std::string>& patterns);

// Spec §8.4 populate: the group's global amax is the max over members of max(|per-block amax|); members
// without an amax (nullopt) are ignored; nullopt if no member has one.
std::optional<float> PopulateGlobalAmax(const std::vector<std::optional<float>>& member_max_amax);

}  // namespace qforge
