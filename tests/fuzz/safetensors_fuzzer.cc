// libFuzzer harness: a safetensors file (8-byte header length, JSON header, data) through SafetensorsFile::Open,
// then every tensor view and the metadata. Invalid files must give qforge::Error; anything else is a bug.
#include <cstdint>

#include "qforge/base/error.h"
#include "qforge/io/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto path = qforge::fuzz::ScratchDir() / "model.safetensors";
  qforge::fuzz::WriteFile(path, {reinterpret_cast<const char*>(data), size});
  try {
    auto f = qforge::SafetensorsFile::Open(path);
    for (const auto& name : f->names()) {
      const qforge::TensorInfo& info = f->Info(name);
      qforge::Tensor t = f->Get(name);
      // The view must cover exactly the bytes the header promised.
      if (t.nbytes() != info.end - info.begin) __builtin_trap();
      volatile uint8_t sink = 0;
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); ++i) sink = sink ^ p[i];
    }
    auto ckpt = qforge::CheckpointTensors::Open(qforge::fuzz::ScratchDir());
    (void)ckpt.total_bytes();
  } catch (const qforge::Error&) {
  }
  return 0;
}
