// libFuzzer harness: `qforge check` (exporter::CheckCheckpoint) on a checkpoint directory built from the
// input: config.json [kPartSeparator hf_quant_config.json [kPartSeparator model.safetensors]]; a missing part
// is a missing file. CheckCheckpoint must turn every problem into a finding: any exception escaping it, or a
// finding of rule "internal" (an unexpected exception it had to catch wholesale), is a bug.
#include <cstdint>
#include <cstdio>

#include "qforge/export/check.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace qf = qforge::fuzz;
  const auto dir = qf::ScratchDir() / "ckpt";
  qf::ResetDir(dir);
  const auto parts = qf::SplitParts(data, size, 3);
  const char* names[] = {"config.json", "hf_quant_config.json", "model.safetensors"};
  for (size_t i = 0; i < parts.size(); ++i) qf::WriteFile(dir / names[i], parts[i]);
  qforge::exporter::CheckReport report = qforge::exporter::CheckCheckpoint(dir);
  for (const auto& f : report.findings) {
    if (f.rule == "internal") {
      std::fprintf(stderr, "check hit an unexpected exception: %s\n", f.message.c_str());
      __builtin_trap();
    }
  }
  (void)report.ToText();
  (void)report.ToJson().dump();
  return 0;
}
