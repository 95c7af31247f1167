// `qforge inspect --model DIR`: what a checkpoint is (architecture, sizes, dtypes, experts, modules).
#include <cstdio>

#include "qforge/cli/command.h"
#include "qforge/model/inspect.h"
#include "qforge/model/model.h"

namespace qforge::cli {
namespace {

struct InspectArgs {
  std::string model;
};

CommandRegistrar reg(
    "inspect", "describe a HuggingFace checkpoint: architecture, parameters, dtypes, layers, experts",
    [](CLI::App& sub) -> RunFn {
      auto args = std::make_shared<InspectArgs>();
      sub.add_option("--model", args->model, "model directory (config.json + safetensors)")->required();
      return [args] {
        ModelLoadOptions lo;
        lo.load_all_layers = false;
        auto model = Model::Load(args->model, lo);
        std::fputs(DescribeModel(*model).c_str(), stdout);
        return 0;
      };
    });

}  // namespace
}  // namespace qforge::cli
