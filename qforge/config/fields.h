// Field visitors: each config declares its fields ONCE and every operation is a visitor over that list.
//
// A config struct `C` provides
//   template <class Self, class V> static void VisitFields(Self& self, V& v) {
//     v.Field("enable", self.enable, true, "doc ...");                       // name, member, default, doc
//     v.Field("effective_bits", self.effective_bits, std::nullopt, "...", CheckEffectiveBits);
//   }
// in declaration order, plus a `std::vector<std::string> fields_set` member (pydantic's model_fields_set).
// Visitors here: DefaultSetter (construction), FieldParser (typed parse + per-field check, in order, so the
// first failing field decides the error, spec §2.4), FieldDumper (full or exclude_unset JSON), FieldNames
// (extra="forbid" key check and "did you mean"), FieldDocs (help text).
//
// Values are converted by the overload set ParseValue(const Json&, T*, path) / DumpValue(const T&), found by
// argument-dependent lookup, so a config-specific type only adds its own two functions.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "qforge/base/error.h"
#include "qforge/config/json_util.h"

namespace qforge::config {

// ---- value codecs for common types ----
inline void ParseValue(const Json& j, bool* out, const std::string& path) {
  QF_CHECK(j.is_boolean(), "{}: expected a bool, got {} {}", path, TypeName(j), Brief(j));
  *out = j.get<bool>();
}
inline void ParseValue(const Json& j, int64_t* out, const std::string& path) {
  if (j.is_number_float()) {
    double d = j.get<double>();
    QF_CHECK(std::floor(d) == d, "{}: expected an int, got {}", path, Brief(j));
    *out = static_cast<int64_t>(d);
    return;
  }
  QF_CHECK(j.is_number_integer(), "{}: expected an int, got {} {}", path, TypeName(j), Brief(j));
  *out = j.get<int64_t>();
}
inline void ParseValue(const Json& j, double* out, const std::string& path) {
  QF_CHECK(j.is_number() && !j.is_boolean(), "{}: expected a number, got {} {}", path, TypeName(j), Brief(j));
  *out = j.get<double>();
}
inline void ParseValue(const Json& j, std::string* out, const std::string& path) {
  QF_CHECK(j.is_string(), "{}: expected a string, got {} {}", path, TypeName(j), Brief(j));
  *out = j.get<std::string>();
}
inline void ParseValue(const Json& j, Json* out, const std::string&) { *out = j; }
inline void ParseValue(const Json& j, std::vector<std::string>* out, const std::string& path) {
  QF_CHECK(j.is_array(), "{}: expected a list of strings, got {} {}", path, TypeName(j), Brief(j));
  out->clear();
  for (size_t i = 0; i < j.size(); ++i) {
    std::string s;
    ParseValue(j[i], &s, path + "[" + std::to_string(i) + "]");
    out->push_back(std::move(s));
  }
}
template <class T>
void ParseValue(const Json& j, std::optional<T>* out, const std::string& path) {
  if (j.is_null()) {
    out->reset();
    return;
  }
  T v{};
  ParseValue(j, &v, path);
  *out = std::move(v);
}

inline Json DumpValue(bool v) { return v; }
inline Json DumpValue(int64_t v) { return v; }
inline Json DumpValue(double v) { return v; }
inline Json DumpValue(const std::string& v) { return v; }
inline Json DumpValue(const Json& v) { return v; }
inline Json DumpValue(const std::vector<std::string>& v) { return Json(v); }
template <class T>
Json DumpValue(const std::optional<T>& v) {
  return v ? DumpValue(*v) : Json(nullptr);
}

// ---- common per-field checks (signature: void(const T&, const std::string& path)) ----
struct NoCheck {
  template <class T>
  void operator()(const T&, const std::string&) const {}
};

// ---- visitors ----
struct DefaultSetter {
  template <class T, class D, class C = NoCheck>
  void Field(const char*, T& member, D&& def, const char*, C = {}) {
    member = T(std::forward<D>(def));
  }
};

struct FieldNames {
  std::vector<std::string> names;
  template <class T, class D, class C = NoCheck>
  void Field(const char* name, const T&, D&&, const char*, C = {}) {
    names.emplace_back(name);
  }
};

struct FieldDoc {
  std::string name, doc;
  Json default_value;
};
struct FieldDocs {
  std::vector<FieldDoc> docs;
  template <class T, class D, class C = NoCheck>
  void Field(const char* name, const T&, D&& def, const char* doc, C = {}) {
    docs.push_back({name, doc, DumpValue(T(std::forward<D>(def)))});
  }
};

// Parses the fields present in `obj`; records them in `*fields_set`. Unknown keys are rejected by the
// caller beforehand (RejectUnknownKeys) so that messages can suggest the closest field name.
struct FieldParser {
  const Json& obj;
  std::string path;
  std::vector<std::string>* fields_set;
  template <class T, class D, class C = NoCheck>
  void Field(const char* name, T& member, D&&, const char*, C check = {}) {
    auto it = obj.find(name);
    if (it == obj.end()) return;
    std::string p = JoinPath(path, name);
    ParseValue(*it, &member, p);
    check(member, p);
    if (std::find(fields_set->begin(), fields_set->end(), name) == fields_set->end()) {
      fields_set->emplace_back(name);
    }
  }
};

// Writes fields to `out`: all of them, or (exclude_unset) only those in `fields_set`.
struct FieldDumper {
  Json* out;
  const std::vector<std::string>* only = nullptr;
  template <class T, class D, class C = NoCheck>
  void Field(const char* name, const T& member, D&&, const char*, C = {}) {
    if (only && std::find(only->begin(), only->end(), name) == only->end()) return;
    (*out)[name] = DumpValue(member);
  }
};

// Throws for keys of `obj` that are not fields (pydantic extra="forbid"); `extra_allowed` lists keys the
// caller handles itself (aliases, legacy spellings).
void RejectUnknownKeys(const Json& obj, const std::vector<std::string>& fields, const std::string& path,
                       const std::string& what, const std::vector<std::string>& extra_allowed = {});

template <class C>
std::vector<std::string> FieldNamesOf() {
  C c;
  FieldNames v;
  C::VisitFields(c, v);
  return v.names;
}

template <class C>
void SetDefaults(C& c) {
  DefaultSetter v;
  C::VisitFields(c, v);
}

template <class C>
Json DumpFields(const C& c, bool exclude_unset) {
  Json out = Json::object();
  FieldDumper v{&out, exclude_unset ? &c.fields_set : nullptr};
  C::VisitFields(c, v);
  return out;
}

inline bool IsSet(const std::vector<std::string>& fields_set, std::string_view name) {
  return std::find(fields_set.begin(), fields_set.end(), name) != fields_set.end();
}

}  // namespace qforge::config
