// libFuzzer harness: config.json text through LoadModelConfig (file read, bounded JSON parse, ParseModelConfig
// with its size limits) and then what is derived from it (module records, rotary tables), as `inspect`,
// `plan` and `quantize` do before they touch any tensor.
#include <cstdint>

#include "qforge/base/error.h"
#include "qforge/model/model_config.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto dir = qforge::fuzz::ScratchDir();
  qforge::fuzz::WriteFile(dir / "config.json", {reinterpret_cast<const char*>(data), size});
  try {
    qforge::ModelConfig c = qforge::LoadModelConfig(dir);
    for (int64_t l = 0; l < c.num_layers; ++l) (void)c.IsMoeLayer(l);
    (void)qforge::ComputeRopeFrequencies(c.rope, c.head_dim, c.max_position_embeddings);
  } catch (const qforge::Error&) {
  }
  return 0;
}
