// `qforge check DIR [--json] [--target vllm|trtllm|any]`: validates an exported checkpoint (export/check.h).
#include <cstdio>
#include <string>

#include "qforge/cli/command.h"
#include "qforge/export/check.h"

namespace qforge::cli {
namespace {

struct CheckArgs {
  std::string dir;
  bool json = false;
  std::string target = "vllm";
  bool no_scan = false;
};

CommandRegistrar reg(
    "check", "validate a quantized checkpoint against the runtime loading contract (exit 1 on errors)",
    [](CLI::App& sub) -> RunFn {
      auto args = std::make_shared<CheckArgs>();
      sub.add_option("dir", args->dir, "checkpoint directory (config.json, hf_quant_config.json, safetensors)")
          ->required();
      sub.add_flag("--json", args->json, "print the report as JSON");
      sub.add_option("--target", args->target, "runtime whose accepted formats are enforced: vllm, trtllm, any")
          ->capture_default_str();
      sub.add_flag("--no-scan", args->no_scan, "skip reading scale and FP8 weight values (NaN / sign checks)");
      return [args] {
        exporter::CheckOptions options;
        options.target = exporter::TargetRuntimeFromName(args->target);
        options.scan_values = !args->no_scan;
        const exporter::CheckReport report = exporter::CheckCheckpoint(args->dir, options);
        if (args->json) {
          std::printf("%s\n", report.ToJson().dump(2).c_str());
        } else {
          std::fputs(report.ToText().c_str(), stdout);
        }
        return report.ok() ? 0 : 1;
      };
    });

}  // namespace
}  // namespace qforge::cli
