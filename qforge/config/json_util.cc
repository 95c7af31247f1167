// Helpers for the generic config value model (comparison, Python-style rendering, key paths).
#include "qforge/config/json_util.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace qforge::config {

bool JsonEqual(const Json& a, const Json& b) {
  if (a.is_number() && b.is_number() && !a.is_boolean() && !b.is_boolean()) {
    return a.get<double>() == b.get<double>();
  }
  if (a.type() != b.type()) return false;
  if (a.is_object()) {
    if (a.size() != b.size()) return false;
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto jt = b.find(it.key());
      if (jt == b.end() || !JsonEqual(it.value(), *jt)) return false;
    }
    return true;
  }
  if (a.is_array()) {
    if (a.size() != b.size()) return false;
    for (size_t i = 0; i < a.size(); ++i) {
      if (!JsonEqual(a[i], b[i])) return false;
    }
    return true;
  }
  return a == b;
}

std::string PyRepr(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "None";
    case Json::value_t::boolean: return v.get<bool>() ? "True" : "False";
    case Json::value_t::string: {
      std::string out = "'";
      out += v.get<std::string>();
      out += '\'';
      return out;
    }
    case Json::value_t::array: {
      std::string out = "[";
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += ", ";
        out += PyRepr(v[i]);
      }
      return out + "]";
    }
    case Json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        out += first ? "'" : ", '";
        out += it.key();
        out += "': ";
        out += PyRepr(it.value());
        first = false;
      }
      return out + "}";
    }
    default: return v.dump();
  }
}

std::string Brief(const Json& v, size_t max_len) {
  std::string s = v.dump();
  if (s.size() > max_len) {
    s.resize(max_len - 3);
    s += "...";
  }
  return s;
}

std::string TypeName(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "bool";
    case Json::value_t::string: return "str";
    case Json::value_t::array: return "list";
    case Json::value_t::object: return "dict";
    case Json::value_t::number_float: return "float";
    default: return "int";
  }
}

std::string JoinPath(std::string_view base, std::string_view key) {
  std::string out(base);
  if (!out.empty() && !(!key.empty() && key[0] == '[')) out += '.';
  out += key;
  return out;
}

static size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string ClosestName(std::string_view name, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = 4;
  for (const auto& c : candidates) {
    size_t d = EditDistance(name, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

bool ParseIntKey(const std::string& key, int* out) {
  if (key.empty()) return false;
  const char* b = key.data();
  const char* e = b + key.size();
  if (*b == '+') ++b;
  auto [p, ec] = std::from_chars(b, e, *out);
  return ec == std::errc() && p == e;
}

}  // namespace qforge::config

#include "qforge/base/error.h"
#include "qforge/config/fields.h"

namespace qforge::config {

void RejectUnknownKeys(const Json& obj, const std::vector<std::string>& fields, const std::string& path,
                       const std::string& what, const std::vector<std::string>& extra_allowed) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string& k = it.key();
    if (std::find(fields.begin(), fields.end(), k) != fields.end()) continue;
    if (std::find(extra_allowed.begin(), extra_allowed.end(), k) != extra_allowed.end()) continue;
    std::string hint = ClosestName(k, fields);
    QF_FAIL("{}: unknown key '{}' in {} (extra keys are not permitted){}; valid keys: {}",
            path.empty() ? what : path, k, what, hint.empty() ? "" : fmt::format("; did you mean '{}'?", hint),
            fmt::join(fields, ", "));
  }
}

}  // namespace qforge::config
