// `qforge conformance FILE.jsonl`: runs behaviour cases (spec Appendix A) through the library.
#include <iostream>

#include "qforge/calib/layerwise_conformance.h"
#include "qforge/cli/command.h"
#include "qforge/config/conformance.h"
#include "qforge/quant/conformance_ops.h"

namespace qforge::cli {
namespace {
CommandRegistrar reg("conformance", "run ModelOpt behaviour cases (modelopt_cases.jsonl format)", [](CLI::App& sub) -> RunFn {
  auto file = std::make_shared<std::string>();
  auto verbose = std::make_shared<bool>(false);
  sub.add_option("file", *file, "cases, one JSON object per line")->required();
  sub.add_flag("--list-skipped", *verbose, "also print one line per skipped case");
  return [file, verbose] {
    auto& registry = config::DefaultConformanceRegistry();
    RegisterQuantConformanceOps(registry);
    RegisterCalibConformanceOps(registry);
    config::ConformanceSummary s = registry.RunFile(*file, &std::cout);
    if (*verbose) {
      for (const auto& r : s.results) {
        if (r.status == config::ConformanceCaseResult::Status::kSkip) std::cout << "SKIP " << r.name << ": " << r.message << "\n";
      }
    }
    std::cout << s.passed << " passed, " << s.failed << " failed, " << s.skipped << " skipped\n";
    return s.failed > 0 ? 1 : 0;
  };
});
}  // namespace
}  // namespace qforge::cli
