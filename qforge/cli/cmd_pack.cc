// `qforge pack --format FMT IN OUT`: packs every tensor of a safetensors file as ModelOpt's HF export
// would write it (`P.weight`, `P.weight_scale`, `P.weight_scale_2`), amax from each tensor itself.
#include <cstdio>
#include <memory>
#include <string>

#include "qforge/base/error.h"
#include "qforge/base/file.h"
#include "qforge/cli/command.h"
#include "qforge/export/pack.h"
#include "qforge/runtime/cpu/quant_kernels.h"

namespace qforge::cli {
namespace {

struct PackArgs {
  std::string format;
  std::string in;
  std::string out;
  bool overwrite = false;
};

int RunPack(const PackArgs& a) {
  CheckOutputFile(a.out, "OUT", a.overwrite, {a.in});
  const auto format = PackFormatFromName(a.format);
  QF_CHECK(format.has_value(), "--format '{}' is not a pack format (one of: {})", a.format, AllPackFormatNames());
  const PackFileSummary s = PackSafetensorsFile(*format, a.in, a.out, &cpu::HostKernels());
  std::printf("pack: %d tensors packed as %s into %s\n", s.packed, a.format.c_str(), a.out.c_str());
  return 0;
}

CommandRegistrar reg("pack", "pack every tensor of a safetensors file into a ModelOpt export format",
                     [](CLI::App& sub) -> RunFn {
                       auto a = std::make_shared<PackArgs>();
                       sub.add_option("--format", a->format,
                                      "fp8, fp8_pc, fp8_pb, nvfp4, mxfp8, mxfp4, int8 or int4_awq")
                           ->required();
                       sub.add_option("IN", a->in, "input .safetensors (floating tensors)")->required();
                       sub.add_option("OUT", a->out, "output .safetensors (P.weight, P.weight_scale[, _2])")
                           ->required();
                       sub.add_flag("--overwrite", a->overwrite, "replace OUT if it exists (never IN)");
                       return [a] { return RunPack(*a); };
                     });

}  // namespace
}  // namespace qforge::cli
