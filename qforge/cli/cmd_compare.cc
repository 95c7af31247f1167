// `qforge compare A B [--scale-rtol R]`: two exports of the same model and recipe, tensor by tensor
// (export/compare.h): weights and weight scales must be bit-identical, activation scales within R.
#include <cstdio>

#include "qforge/base/error.h"
#include "qforge/cli/command.h"
#include "qforge/export/compare.h"

namespace qforge::cli {
namespace {

struct CompareArgs {
  std::string a, b;
  double scale_rtol = 0.0;
};

CommandRegistrar reg(
    "compare", "compare two exported checkpoints: weights bit for bit, activation scales within a tolerance",
    [](CLI::App& sub) -> RunFn {
      auto args = std::make_shared<CompareArgs>();
      sub.add_option("a", args->a, "first checkpoint directory")->required();
      sub.add_option("b", args->b, "second checkpoint directory")->required();
      sub.add_option("--scale-rtol", args->scale_rtol,
                     "allowed relative difference of input/output/k/v scales (0: bit-identical)")
          ->capture_default_str();
      return [args] {
        QF_CHECK(args->scale_rtol >= 0, "--scale-rtol must be >= 0, got {}", args->scale_rtol);
        exporter::CompareOptions o;
        o.scale_rtol = args->scale_rtol;
        const exporter::CompareReport r = exporter::CompareCheckpoints(args->a, args->b, o);
        std::fputs(r.ToText().c_str(), stdout);
        return r.ok() ? 0 : 1;
      };
    });

}  // namespace
}  // namespace qforge::cli
