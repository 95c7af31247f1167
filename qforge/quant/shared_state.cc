// Group discovery and population of the shared weight global amax.
#include "qforge/quant/shared_state.h"

#include <algorithm>
#include <map>

#include "qforge/base/strings.h"

namespace qforge {

std::vector<config::Regex> CompilePatterns(const std::vector<std::string>& patterns) {
  std::vector<config::Regex> out;
  out.reserve(patterns.size());
  for (const auto& p : patterns) out.emplace_back(p);
  return out;
}

namespace {

std::string ParentOf(const std::string& name) {
  const size_t dot = name.rfind('.');
  return dot == std::string::npos ? "" : name.substr(0, dot);
}

// Deepest common ancestor of module names, by dotted components ("" = root).
std::string CommonAncestor(const std::vector<std::string>& names) {
  std::vector<std::string> common = Split(ParentOf(names[0]), '.');
  if (ParentOf(names[0]).empty()) common.clear();
  for (size_t i = 1; i < names.size(); ++i) {
    const std::string parent = ParentOf(names[i]);
    std::vector<std::string> parts = parent.empty() ? std::vector<std::string>{} : Split(parent, '.');
    size_t k = 0;
    while (k < common.size() && k < parts.size() && common[k] == parts[k]) ++k;
    common.resize(k);
  }
  return Join(common, ".");
}

}  // namespace

std::vector<SharedGroup> FindSharedGroups(const std::vector<config::Regex>& patterns,
                                          const std::vector<std::string>& modules,
                                          const std::set<std::string>& module_lists) {
  // Bucket key: (pattern index, captured groups); buckets kept in first-seen order.
  using Key = std::pair<int, std::vector<std::optional<std::string>>>;
  std::vector<std::pair<Key, std::vector<std::string>>> buckets;
  for (const auto& name : modules) {
    for (size_t p = 0; p < patterns.size(); ++p) {
      auto m = patterns[p].FullMatch(name);
      if (!m) continue;
      Key key{static_cast<int>(p), *m};
      auto it = std::find_if(buckets.begin(), buckets.end(), [&](const auto& b) { return b.first == key; });
      if (it == buckets.end()) {
        buckets.push_back({key, {name}});
      } else {
        it->second.push_back(name);
      }
      break;  // the first matching pattern decides
    }
  }
  std::vector<SharedGroup> groups;
  for (auto& [key, members] : buckets) {
    if (members.size() < 2) continue;
    SharedGroup g;
    g.pattern_index = key.first;
    g.parent = CommonAncestor(members);
    while (!g.parent.empty() && module_lists.count(g.parent) != 0) g.parent = ParentOf(g.parent);
    g.members = std::move(members);
    groups.push_back(std::move(g));
  }
  return groups;
}

std::optional<float> PopulateGlobalAmax(const std::vector<std::optional<float>>& member_max_amax) {
  std::optional<float> out;
  for (const auto& a : member_max_amax) {
    if (!a) continue;
    out = out ? std::max(*out, *a) : *a;
  }
  return out;
}

}  // namespace qforge
