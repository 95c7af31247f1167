// libFuzzer harness: a quant_cfg value (JSON text, any of the accepted shapes: list of entries, legacy
// single-key dicts, nn.*-scoped dicts, flat mapping) through config::NormalizeQuantCfgList, then the
// normalized list rendered back and normalized again (which must give the same entries).
#include <cstdint>
#include <string_view>

#include "qforge/base/error.h"
#include "qforge/config/quant_cfg.h"
#include "qforge/io/json_limits.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using qforge::config::Json;
  try {
    const Json v = qforge::ParseJsonBounded<Json>({reinterpret_cast<const char*>(data), size}, "fuzz/quant_cfg");
    const qforge::config::QuantCfgList list = qforge::config::NormalizeQuantCfgList(v);
    const Json once = qforge::config::QuantCfgToJson(list);
    const Json twice = qforge::config::QuantCfgToJson(qforge::config::NormalizeQuantCfgList(once));
    if (!qforge::config::JsonEqual(once, twice)) __builtin_trap();  // normalization must be idempotent
  } catch (const qforge::Error&) {
  }
  return 0;
}
