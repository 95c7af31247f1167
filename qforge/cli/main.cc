// qforge command-line entry point: parses the subcommand and maps errors to exit codes.
#include <cstdio>
#include <cstdlib>
#include <memory>

#include "qforge/base/blas_core.h"
#include "qforge/base/error.h"
#include "qforge/base/interrupt.h"
#include "qforge/cli/command.h"
#include "qforge/runtime/backend.h"

namespace qforge::cli {
std::vector<CommandSpec>& CommandRegistry() {
  static std::vector<CommandSpec> registry;
  return registry;
}
}  // namespace qforge::cli

int main(int argc, char** argv) {
  using namespace qforge::cli;
  // OpenBLAS on a CPU model it does not know runs its slowest kernels; run again with the right ones.
  qforge::ReexecForOpenBlasCore(argv, qforge::CpuBlasCoreName());
  // Idle OpenMP threads sleep instead of spinning: on a shared or loaded machine spinning workers steal the
  // cores the busy ones need (measured 2.4x slower forwards on 2 loaded cores). Must precede the first
  // parallel region; a user's explicit setting wins.
  setenv("OMP_WAIT_POLICY", "passive", /*overwrite=*/0);
  // Ctrl-C / SIGTERM remove every temporary file and directory before exiting with 128 + signal.
  qforge::InstallInterruptCleanup();
  CLI::App app{"qforge: post-training quantization for LLMs, writing ModelOpt-format checkpoints"};
  app.require_subcommand(1);
  std::vector<std::pair<CLI::App*, RunFn>> runs;
  auto& registry = CommandRegistry();
  runs.reserve(registry.size());
  for (auto& spec : registry) {
    CLI::App* sub = app.add_subcommand(spec.name, spec.description);
    runs.emplace_back(sub, spec.setup(*sub));
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  try {
    for (auto& [sub, run] : runs) {
      if (sub->parsed()) return run();
    }
  } catch (const qforge::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "error: out of memory\n");
    return 1;
  } catch (const std::exception& e) {
    // Not a qforge::Error: an input reached a library check first (JSON type error, filesystem error).
    // Still an error for the user, never a crash.
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 2;
}
