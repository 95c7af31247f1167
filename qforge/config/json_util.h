// Generic config values: nlohmann::ordered_json plus helpers shared by every config parser in config/.
//
// Conventions (spec Appendix A): (E,M) tuples are 2-element arrays; integer dict keys of `block_sizes` and
// `bias` are strings such as "-1"; null is Python's None. Key order is kept (legacy flat dicts are ordered).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace qforge::config {

using Json = nlohmann::ordered_json;

// Structural equality in Python's sense: object key order is ignored, 1 == 1.0, true != 1.
bool JsonEqual(const Json& a, const Json& b);

// Python-like repr of a value for error messages: {'enable': True}, [4, 3], None, 'abc'.
std::string PyRepr(const Json& v);

// Short JSON rendering of a value for messages (truncated to `max_len` characters).
std::string Brief(const Json& v, size_t max_len = 120);

// Name of a value's type as a user would say it: "bool", "int", "float", "str", "list", "dict", "null".
std::string TypeName(const Json& v);

// "a.b" joined key path; `key` may be an index ("[3]") or a name.
std::string JoinPath(std::string_view base, std::string_view key);

// Closest candidate by edit distance (<= 3 edits), or "" when none is close: for "did you mean" hints.
std::string ClosestName(std::string_view name, const std::vector<std::string>& candidates);

// Integer value of a dict key written as a string ("-1" -> -1); false if the key is not an integer.
bool ParseIntKey(const std::string& key, int* out);

}  // namespace qforge::config
