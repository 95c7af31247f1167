// `qforge unpack IN OUT`: decodes every packed `P.weight` (with its `P.weight_scale[, _2]`) to float32.
#include <cstdio>
#include <memory>
#include <string>

#include "qforge/base/file.h"
#include "qforge/cli/command.h"
#include "qforge/export/pack.h"

namespace qforge::cli {
namespace {

struct UnpackArgs {
  std::string in;
  std::string out;
  bool overwrite = false;
};

int RunUnpack(const UnpackArgs& a) {
  CheckOutputFile(a.out, "OUT", a.overwrite, {a.in});
  const PackFileSummary s = UnpackSafetensorsFile(a.in, a.out);
  std::printf("unpack: %d weights decoded, %d other tensors copied, into %s\n", s.packed, s.passed_through,
              a.out.c_str());
  return 0;
}

CommandRegistrar reg("unpack", "decode packed weights (as written by pack / HF export) to float32",
                     [](CLI::App& sub) -> RunFn {
                       auto a = std::make_shared<UnpackArgs>();
                       sub.add_option("IN", a->in, "input .safetensors with packed weights")->required();
                       sub.add_option("OUT", a->out, "output .safetensors (float32)")->required();
                       sub.add_flag("--overwrite", a->overwrite, "replace OUT if it exists (never IN)");
                       return [a] { return RunUnpack(*a); };
                     });

}  // namespace
}  // namespace qforge::cli
