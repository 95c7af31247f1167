// libFuzzer harness: a tokenizer.json (Tokenizer::FromJson: bounded JSON parse, component validation,
// vocab / merges / added tokens) and a text encoded with it, then decoded back.
// Input: tokenizer.json [kPartSeparator text]. Without a text part the tokenizer's own JSON is encoded.
#include <cstdint>
#include <string_view>

#include "qforge/base/error.h"
#include "qforge/model/tokenizer.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = qforge::fuzz::SplitParts(data, size, 2);
  try {
    qforge::Tokenizer tok = qforge::Tokenizer::FromJson(parts[0], "fuzz/tokenizer.json");
    const std::string_view text = parts.size() > 1 ? std::string_view(parts[1]) : std::string_view(parts[0]);
    std::vector<int32_t> ids = tok.Encode(text, /*add_bos=*/false);
    for (int32_t id : ids) {
      if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) __builtin_trap();  // ids must be in range
    }
    try {
      (void)tok.Decode(ids);
    } catch (const qforge::Error&) {  // an unsupported decoder only makes Decode throw
    }
  } catch (const qforge::Error&) {
  }
  return 0;
}
