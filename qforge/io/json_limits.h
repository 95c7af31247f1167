// Parsing JSON that comes from a file (config.json, tokenizer.json, safetensors headers, shard indexes) with
// a bounded nesting depth.
//
// nlohmann's parser itself is iterative, but copying, dumping and our own walkers recurse once per nesting
// level, so a 100 MB header of '[' characters would overflow the stack later on. No file qforge reads needs
// more than a handful of levels (tokenizer.json: normalizer Sequence of Sequence..., about 6), so
// kMaxJsonDepth leaves ample room while keeping every later recursion far from the stack limit.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

#include "qforge/base/error.h"

namespace qforge {

// Deepest nesting (objects and arrays) accepted in a JSON file.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as JSON (Json: nlohmann::json or nlohmann::ordered_json). Throws qforge::Error starting with
// `source` (e.g. "'dir/config.json'") when the text is not JSON or nests deeper than `max_depth` levels.
// Never throws anything but qforge::Error (and std::bad_alloc).
template <class Json>
Json ParseJsonBounded(std::string_view text, const std::string& source, int max_depth = kMaxJsonDepth) {
  bool too_deep = false;
  // `depth` counts the containers already open when a new one starts, so the outermost one starts at 0.
  typename Json::parser_callback_t cb = [&](int depth, typename Json::parse_event_t event, Json&) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= max_depth) {
      too_deep = true;
      throw Error("");  // stops the parser at once; replaced by the message below
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), cb);
  } catch (const Error&) {
    QF_CHECK(!too_deep, "{}: JSON objects/arrays nest deeper than {} levels (corrupt or hostile file?)", source,
             max_depth);
    throw;
  } catch (const nlohmann::json::exception& e) {
    QF_FAIL("{} is not valid JSON: {}", source, e.what());
  }
}

}  // namespace qforge
